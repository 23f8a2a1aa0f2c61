"""Can the GEMMs of a star_easy training step get faster at equal configuration? Prints three A/B measurements,
one torch thread, alternating A and B every round so that both see the same machine load:

1. three q/k/v projections against one fused projection (forward and backward, the star_easy batch: 64 rows x 42
   positions, d_model 128);
2. the fp32 and bf16 GEMM rates (GFLOP/s) at the step's shapes and at 2048^3;
3. with `--step` (needs `bash scripts/compare_speed.sh` run once, for its star_easy examples): a whole ARLM training
   step of the speed comparison's configuration in fp32 and under `torch.autocast("cpu", torch.bfloat16)`.

    python scripts/gemm_options.py [--rounds 15] [--step]
"""

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

ROWS, WIDTH = 64 * 42, 128


def alternate(
    first: Callable[[], None], second: Callable[[], None], rounds: int, repeats: int
) -> list[float]:
    """Per-round time ratios first / second, the order flipped every round."""
    for function in (first, second):  # warm-up
        function()
    ratios = []
    for round_index in range(rounds):
        times = {}
        order = (first, second) if round_index % 2 == 0 else (second, first)
        for function in order:
            start = time.perf_counter()
            for _ in range(repeats):
                function()
            times[function] = time.perf_counter() - start
        ratios.append(times[first] / times[second])
    return ratios


def summary(ratios: list[float]) -> str:
    quartiles = statistics.quantiles(ratios, n=4)
    return f"median {statistics.median(ratios):.3f} [quartiles {quartiles[0]:.3f}, {quartiles[2]:.3f}]"


def fused_projection(rounds: int) -> None:
    inputs = torch.randn(ROWS, WIDTH, requires_grad=True)
    separate_weights = [torch.randn(WIDTH, WIDTH, requires_grad=True) for _ in range(3)]
    fused_weight = torch.randn(3 * WIDTH, WIDTH, requires_grad=True)

    def separate() -> None:
        sum((inputs @ weight.t()).sum() for weight in separate_weights).backward()

    def fused() -> None:
        query, key, value = (inputs @ fused_weight.t()).split(WIDTH, dim=-1)
        (query.sum() + key.sum() + value.sum()).backward()

    print(f"q/k/v: separate / fused time, {rounds} rounds: {summary(alternate(separate, fused, rounds, 50))}")


def gemm_rates() -> None:
    for m, k, n in ((ROWS, WIDTH, 4 * WIDTH), (ROWS, 4 * WIDTH, WIDTH), (2048, 2048, 2048)):
        rates = {}
        for dtype in (torch.float32, torch.bfloat16):
            a, b = torch.randn(m, k, dtype=dtype), torch.randn(k, n, dtype=dtype)
            repeats = max(3, int(2e9 / (2 * m * k * n)))
            best = float("inf")
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(repeats):
                    a @ b
                best = min(best, (time.perf_counter() - start) / repeats)
            rates[dtype] = 2 * m * k * n / best / 1e9
        print(
            f"GEMM {m}x{k}x{n}: fp32 {rates[torch.float32]:.1f} GFLOP/s, bf16 {rates[torch.bfloat16]:.1f} GFLOP/s "
            f"({rates[torch.bfloat16] / rates[torch.float32]:.2f}x)"
        )


def autocast_step(rounds: int) -> None:
    sys.path.insert(0, str(Path(__file__).parent))
    import compare_speed_worker as worker

    examples_path = Path(__file__).parent.parent / ".cache" / "compare_speed" / "star_easy.jsonl"
    if not examples_path.exists():
        raise SystemExit(
            f"error: {examples_path} is missing: run `bash scripts/compare_speed.sh` once first."
        )
    train_step, _ = worker.build_xlm_hf("arlm", worker.read_examples(str(examples_path)), [])
    offsets = iter(range(10**9))

    def fp32() -> None:
        train_step((next(offsets) % 15) * 64)

    def bf16() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            train_step((next(offsets) % 15) * 64)

    print(
        f"ARLM step: fp32 / bf16-autocast time, {rounds} rounds: {summary(alternate(fp32, bf16, rounds, 2))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=15)
    parser.add_argument(
        "--step", action="store_true", help="also time a whole ARLM step in fp32 and bf16 autocast"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    fused_projection(args.rounds)
    gemm_rates()
    if args.step:
        autocast_step(args.rounds)


if __name__ == "__main__":
    main()
