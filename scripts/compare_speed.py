#!/usr/bin/env python
"""Side-by-side speed of xlm_hf and the original xlm-core 0.3.1 at the same configuration, alternating A/B.

    python scripts/compare_speed.py --reference-python .cache/xlm_core_venv/bin/python
    bash scripts/compare_speed.sh          # makes that environment first

For each family, one worker process per system (`scripts/compare_speed_worker.py`, one torch thread each) is
started and kept; the driver then asks them in turn, A B B A A B ..., for a few training steps (the same 64
examples per step on both sides) and, for ILM and MDLM, a greedy generation of 64 prompts. It prints, per family,
the median and spread of each system's seconds per step and of the per-round ratio original / xlm_hf (above 1:
xlm_hf is faster), and the same for new tokens per second, then one JSON line.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WORKER = ROOT / "scripts" / "compare_speed_worker.py"


class Worker:
    def __init__(self, python: str, system: str, family: str, data: Path, overrides: list[str]):
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        if system == "xlm_core":
            env.pop("PYTHONPATH", None)
        command = [python, str(WORKER), "--system", system, "--family", family, "--data", str(data)]
        self.process = subprocess.Popen(
            [*command, *(overrides if system == "xlm_hf" else [])],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.system = system
        self.ask(None)  # wait for "ready"

    def ask(self, command: str | None) -> dict:
        if command is not None:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"the {self.system} worker stopped; run it by hand to see why: {WORKER}")
        answer = json.loads(line)
        if "error" in answer:
            raise RuntimeError(f"{self.system}: {answer['error']}")
        return answer

    def close(self) -> None:
        self.process.stdin.write("quit\n")
        self.process.stdin.flush()
        self.process.wait(timeout=60)


def spread(values: list[float]) -> str:
    return f"{statistics.median(values):.4g} [{min(values):.4g}, {max(values):.4g}]"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference-python", required=True, help="python of the xlm-core 0.3.1 environment")
    parser.add_argument(
        "--families", nargs="+", default=["arlm", "mdlm", "ilm"], choices=["arlm", "mdlm", "ilm"]
    )
    parser.add_argument("--rounds", type=int, default=int(os.environ.get("ROUNDS", 5)))
    parser.add_argument("--steps", type=int, default=5, help="training steps per round and system")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--no-generation", action="store_true")
    parser.add_argument("--data", type=Path, default=ROOT / ".cache" / "compare_speed" / "star_easy.jsonl")
    parser.add_argument(
        "overrides", nargs="*", help="xlm_hf experiment overrides, e.g. training.optim=adamw_torch"
    )
    args = parser.parse_args()

    if not args.data.exists():
        args.data.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [args.reference_python, str(WORKER), "--system", "xlm_core", "--family", "ilm", "--data", str(args.data),
             "--make-data", "1024"],
            check=True,
        )  # fmt: skip
    pythons = {"xlm_hf": sys.executable, "xlm_core": args.reference_python}
    results = {}
    for family in args.families:
        workers = {
            s: Worker(pythons[s], s, family, args.data, args.overrides) for s in ("xlm_hf", "xlm_core")
        }
        generates = family in ("ilm", "mdlm") and not args.no_generation
        step = {s: [] for s in workers}
        rate = {s: [] for s in workers}
        for worker in workers.values():
            worker.ask(f"train {args.warmup}")
            if generates:
                worker.ask("generate")
        for round_ in range(args.rounds):
            order = ("xlm_hf", "xlm_core") if round_ % 2 == 0 else ("xlm_core", "xlm_hf")
            for system in order:
                step[system].append(workers[system].ask(f"train {args.steps}")["seconds_per_step"])
                if generates:
                    answer = workers[system].ask("generate")
                    rate[system].append(answer["new_tokens"] / answer["seconds"])
        for worker in workers.values():
            worker.close()
        step_ratio = [c / h for c, h in zip(step["xlm_core"], step["xlm_hf"])]
        results[family] = {
            "seconds_per_step": {s: statistics.median(v) for s, v in step.items()},
            "speedup_median": statistics.median(step_ratio),
            "speedup_range": [min(step_ratio), max(step_ratio)],
        }
        print(f"== {family}: training, {args.rounds} rounds x {args.steps} steps of 64 examples")
        for system in ("xlm_core", "xlm_hf"):
            print(f"   {system:<9} s/step {spread(step[system])}")
        print(f"   original / xlm_hf per round: {spread(step_ratio)}")
        if generates:
            rate_ratio = [h / c for c, h in zip(rate["xlm_core"], rate["xlm_hf"])]
            results[family]["generation_new_tokens_per_s"] = {
                s: statistics.median(v) for s, v in rate.items()
            }
            results[family]["generation_speedup_median"] = statistics.median(rate_ratio)
            results[family]["generation_speedup_range"] = [min(rate_ratio), max(rate_ratio)]
            for system in ("xlm_core", "xlm_hf"):
                print(f"   {system:<9} generation new tokens/s {spread(rate[system])}")
            print(f"   xlm_hf / original generation rate per round: {spread(rate_ratio)}")
        sys.stdout.flush()
    print(json.dumps({"overrides": args.overrides, "rounds": args.rounds, "steps": args.steps, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
