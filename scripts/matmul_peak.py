#!/usr/bin/env python
"""The float32 matmul peak of this machine: GFLOP/s of a large sgemm, one thread by default.

    python scripts/matmul_peak.py                  # 2048^3, 1 thread
    python scripts/matmul_peak.py --size 4096 --threads 2

Prints the best of several timed rounds (a shared machine only ever makes a round slower), then one JSON line.
This is the denominator of the "fraction of peak" that scripts/bench.py and docs/benchmarks.md report.
"""

import argparse
import json
import sys
import time

import torch


def sgemm_gflops(size: int, rounds: int, seconds_per_round: float = 0.5) -> list[float]:
    a, b = torch.randn(size, size), torch.randn(size, size)
    out = torch.empty(size, size)
    torch.mm(a, b, out=out)  # warm-up: threads, caches, the BLAS kernel choice
    flop = 2 * size**3
    rates = []
    for _ in range(rounds):
        count, start = 0, time.perf_counter()
        while (elapsed := time.perf_counter() - start) < seconds_per_round or count == 0:
            torch.mm(a, b, out=out)
            count += 1
        rates.append(flop * count / elapsed / 1e9)
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    rates = sgemm_gflops(args.size, args.rounds)
    best = max(rates)
    print(f"float32 {args.size}^3 matmul, {args.threads} thread(s): best {best:.1f} GFLOP/s")
    print(f"rounds: {', '.join(f'{r:.1f}' for r in rates)}")
    print(
        json.dumps(
            {"size": args.size, "threads": args.threads, "peak_gflops": round(best, 2), "rounds": rates}
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
