"""Probe of a trained ILM's stopping head on a star-graph task: does it know when an answer is complete?

For each graph the model reads `[CLS] prompt [BOS] answer` with four answers and reports p("complete") from its
stopping head (the number `generate` compares with `stopping_threshold`):

- `complete`: the reference answer (should be high);
- `one missing`: the reference with one random token deleted (should be low);
- `extra last`: the reference with its last node written once more (not the reference, so low);
- `extra inner`: the reference with one inner token written once more, a node three times in a row (low).

High on `complete` and low on `one missing` means the head is not why generation runs long: the wrong insertions
come first, and the head then rightly keeps going.

    python scripts/probe_ilm_stopping.py outputs/star_hard_ilm --task star_hard --split test --limit 300
"""

import argparse
import json
import random

import torch
from probe_masked_star import load_examples

from xlm_hf.export import load_model_and_tokenizer

VARIANTS = ("complete", "one missing", "extra last", "extra inner")


def answer_variants(target: list[int], rng: random.Random) -> dict[str, list[int]]:
    """The four answers of the probe for one reference `target` (at least three tokens)."""
    if len(target) < 3:
        raise ValueError(f"The probe needs answers of at least 3 tokens, got {len(target)}.")
    missing = rng.randrange(len(target))
    inner = rng.randrange(1, len(target) - 1)
    return {
        "complete": list(target),
        "one missing": target[:missing] + target[missing + 1 :],
        "extra last": [*target, target[-1]],
        "extra inner": target[:inner] + [target[inner]] + target[inner:],
    }


@torch.no_grad()
def complete_probability(model, prompt: list[int], answer: list[int]) -> float:
    """p("complete") of the stopping head for `[CLS] prompt [BOS] answer`."""
    config = model.config
    input_ids = torch.tensor([[config.cls_token_id, *prompt, config.bos_token_id, *answer]])
    output = model(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        cls_position=torch.zeros(1, dtype=torch.long),
    )
    return output.stopping_logits.float().softmax(dim=-1)[0, 0].item()


def probe(model, prompts: list[list[int]], targets: list[list[int]], seed: int = 0) -> dict[str, list[float]]:
    rng = random.Random(seed)
    probabilities = {name: [] for name in VARIANTS}
    for prompt, target in zip(prompts, targets):
        for name, answer in answer_variants(target, rng).items():
            probabilities[name].append(complete_probability(model, prompt, answer))
    return probabilities


def summarize(probabilities: dict[str, list[float]], thresholds=(0.3, 0.5)) -> dict[str, dict[str, float]]:
    summary = {}
    for name, values in probabilities.items():
        values = torch.tensor(values)
        summary[name] = {"mean": values.mean().item(), "median": values.median().item()}
        for threshold in thresholds:
            summary[name][f"at_least_{threshold}"] = (values >= threshold).float().mean().item()
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("model_dir")
    parser.add_argument("--task", default="star_hard")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0, help="which token is deleted or repeated")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.set_num_threads(1)

    model, tokenizer, family, _ = load_model_and_tokenizer(args.model_dir)
    if family.name != "ilm":
        raise SystemExit(
            f"{args.model_dir} is a {family.name} model; this probe reads an ILM's stopping head."
        )
    model.eval()
    prompts, targets = load_examples(args.task, args.split, args.limit, tokenizer)
    summary = summarize(probe(model, prompts, targets, args.seed))

    print(f"p(complete) of the stopping head, {len(prompts)} {args.task} {args.split} graphs")
    print(f"{'answer':<12} {'mean':>6} {'median':>7} {'>= 0.3':>7} {'>= 0.5':>7}")
    for name, row in summary.items():
        print(
            f"{name:<12} {row['mean']:6.3f} {row['median']:7.3f} {row['at_least_0.3']:7.3f} {row['at_least_0.5']:7.3f}"
        )
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(
                {"model": args.model_dir, "task": args.task, "split": args.split, **summary}, handle, indent=2
            )


if __name__ == "__main__":
    main()
