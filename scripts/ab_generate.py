#!/usr/bin/env python
"""Side-by-side generation speed of two exported model folders, alternating A/B in one process.

    python scripts/ab_generate.py OLD_FOLDER NEW_FOLDER --set do_sample=true --set top_p=0.95

Each folder loads with its own code (`trust_remote_code=True`), so a folder exported before a change to a family's
generation code and a copy of it with the changed `generation_*.py` files compare the two versions of the code
on the same weights. Unconditional samples (`--samples` rows of `--max-new-tokens`), one torch thread, the same
seed on both sides; after a warm-up call each, the rounds run A B, B A, A B, ... Prints each side's median
seconds and new tokens per second, the median per-round ratio A / B (above 1: B is faster), then one JSON line.
"""

import argparse
import json
import statistics
import time

import torch
import yaml
from transformers import AutoModel, AutoTokenizer

from xlm_hf.compare import count_new_tokens


def timed_generate(model, special_ids: torch.Tensor, options: dict, seed: int) -> tuple[float, int]:
    """Seconds of one `generate` call and the new non-special tokens it wrote (as `xlm-hf compare` counts them)."""
    torch.manual_seed(seed)
    start = time.perf_counter()
    with torch.no_grad():
        output = model.generate(input_ids=None, return_dict_in_generate=True, **options)
    seconds = time.perf_counter() - start
    return seconds, count_new_tokens(output, None, special_ids)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("folder_a")
    parser.add_argument("folder_b")
    parser.add_argument("--samples", type=int, default=64)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="a generation option")
    args = parser.parse_args()

    options = {"num_return_sequences": args.samples, "max_new_tokens": args.max_new_tokens}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--set wants KEY=VALUE, got {item!r}")
        options[key] = yaml.safe_load(value)  # numbers and booleans as YAML reads them

    torch.set_num_threads(1)
    folders = {"A": args.folder_a, "B": args.folder_b}
    models = {
        side: AutoModel.from_pretrained(folder, trust_remote_code=True).eval()
        for side, folder in folders.items()
    }
    special_ids = {
        side: torch.tensor(AutoTokenizer.from_pretrained(folder, trust_remote_code=True).all_special_ids)
        for side, folder in folders.items()
    }
    for side, model in models.items():
        timed_generate(model, special_ids[side], options, args.seed)  # warm-up

    seconds: dict[str, list[float]] = {"A": [], "B": []}
    tokens: dict[str, int] = {}
    for round_index in range(args.rounds):
        order = ("A", "B") if round_index % 2 == 0 else ("B", "A")
        for side in order:
            elapsed, new_tokens = timed_generate(models[side], special_ids[side], options, args.seed)
            seconds[side].append(elapsed)
            tokens[side] = new_tokens

    result = {"options": options, "rounds": args.rounds}
    for side, folder in folders.items():
        median = statistics.median(seconds[side])
        result[side] = {
            "folder": folder,
            "median_seconds": median,
            "new_tokens_per_second": tokens[side] / median,
        }
        print(f"{side} {folder}: {median:.2f} s, {tokens[side] / median:.0f} new tokens/s")
    ratio = statistics.median(a / b for a, b in zip(seconds["A"], seconds["B"]))
    result["ratio_a_over_b"] = ratio
    print(f"A / B per round (median): {ratio:.2f}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
