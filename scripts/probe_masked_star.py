"""Probes of a trained masked model (MLM or MDLM) on a star-graph task: where does it fail?

Teacher-forced probes give the model a canvas `prompt [BOS] slot` where some target positions are `[MASK]` and the
others hold the reference, and report the argmax accuracy at the masked inner-node positions:

- `all masked`: the whole slot is masked (the first denoising step);
- `1 hop <node>`: only the two copies of one inner node are masked; it is the predecessor of the next node on the
  path (and the successor of the previous one), so one look-up in the edge list gives it;
- `inner masked`: every inner node is masked, source, goal, `[EOS]` and padding are shown; the node before the goal
  is one look-up away, the one before it two, and so on.

Decoding probes run `generate` on the same prompts with several samplers and orders (plus a right-to-left order
written here, as an upper bound on what a decoder that plans backwards from the goal gets) and report exact match.

    python scripts/probe_masked_star.py outputs/star_easy_mdlm --limit 500

`--oracle` needs no model either: it runs the real samplers with the one-hop oracle of
tests/test_masked_star_decoding.py on `--limit` graphs of `--task` (numpy seed 1), in both answer layouts
(`target_alignment` left and right), and prints the exact match of each (and on the graphs whose walk back from the
goal meets no fork):

    python scripts/probe_masked_star.py --oracle --task star_medium --limit 300

A model trained with `collator.target_alignment: right` is probed in that layout (read from its experiment file, or
`--target-alignment right`).

`--simulate` needs no model: it plays the decoding orders against an idealised star_easy denoiser that knows every
one-hop look-up (a node next to a correct node, and the node before the goal) and guesses the first inner node
among the source's three successors otherwise, and prints the exact match each order would reach.
"""

import argparse
import json
import random
import sys
from pathlib import Path

import torch
from datasets import load_from_disk

from xlm_hf.collator_utils import pad_slots
from xlm_hf.export import load_model_and_tokenizer, read_experiment_file
from xlm_hf.tasks import default_cache_dir


def load_examples(task: str, split: str, limit: int, tokenizer) -> tuple[list[list[int]], list[list[int]]]:
    dataset = load_from_disk(str(default_cache_dir() / task))[split]
    dataset = dataset.select(range(min(limit, len(dataset))))
    prompts = tokenizer(list(dataset["prompt"]), add_special_tokens=False)["input_ids"]
    targets = tokenizer(list(dataset["target"]), add_special_tokens=False)["input_ids"]
    return prompts, targets


def teacher_forced_canvas(
    model, prompts, targets, block_size: int, target_alignment: str = "left"
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """`prompt [BOS] target [EOS] [PAD]...` per row (or `[PAD]... target [EOS]` right-aligned; all prompts of a
    star task have the same length) and the column where the slot starts."""
    config = model.config
    answers = [[*target, config.eos_token_id] for target in targets]
    slots, _ = pad_slots(answers, block_size, config.pad_token_id, target_alignment)
    canvas = torch.tensor(
        [[*prompt, config.bos_token_id, *slot] for prompt, slot in zip(prompts, slots.tolist())]
    )
    return canvas, torch.ones_like(canvas), len(prompts[0]) + 1


@torch.no_grad()
def masked_accuracy(model, canvas, attention_mask, start: int, masked_columns: list[int]) -> list[float]:
    """Argmax accuracy at each of `masked_columns` (slot indices) when exactly those are `[MASK]`."""
    noisy = canvas.clone()
    columns = [start + c for c in masked_columns]
    noisy[:, columns] = model.config.mask_token_id
    logits = model(input_ids=noisy, attention_mask=attention_mask).logits
    logits[..., model.config.mask_token_id] = float("-inf")
    predictions = logits[:, columns].argmax(-1)
    return (predictions == canvas[:, columns]).float().mean(0).tolist()


@torch.no_grad()
@torch.no_grad()
def attention_to_lookup(
    model, canvas, attention_mask, start: int, inner: int, answer: int | None = None
) -> dict[str, list]:
    """Mean attention, per layer and head, of the node before the goal (its second copy, every inner node masked)
    to the goal in the prompt, the goal in the slot, and the two tokens of the edge `(node, goal)` in the edge list
    (the look-up's target); uniform attention would give 1 / length to each. `start` is the slot's first column,
    `answer` the answer's (after the padding of a right-aligned slot; `start` by default)."""
    prompt_end, start = start, start if answer is None else answer
    noisy = canvas.clone()
    noisy[:, start + 1 : start + inner + 1] = model.config.mask_token_id
    implementation = model.config._attn_implementation
    model.config._attn_implementation = "eager"  # only eager returns attention weights
    try:
        attentions = model(input_ids=noisy, attention_mask=attention_mask, output_attentions=True).attentions
    finally:
        model.config._attn_implementation = implementation
    query, goal_column = start + inner, prompt_end - 2  # prompt: edges, source, goal, [BOS]
    goal = canvas[:, goal_column]
    rows = torch.arange(len(canvas))
    # the edge (node, goal): the goal in a second slot of the edge list
    second = (canvas[:, 1 : goal_column - 1 : 2] == goal[:, None]).float().argmax(-1) * 2 + 1

    def mean(values: torch.Tensor) -> list[float]:
        return [round(v, 3) for v in values.mean(0).tolist()]

    result = {}
    for layer, weights in enumerate(attentions):
        row = weights[:, :, query]  # (batch, heads, keys)
        result[f"layer {layer}"] = {
            "to goal in prompt": mean(row[:, :, goal_column]),
            "to goal in slot": mean(row[:, :, start + inner + 1]),
            "to edge's goal": mean(row[rows, :, second]),
            "to edge's node (the answer)": mean(row[rows, :, second - 1]),
        }
    return result


def right_to_left(model, prompts, block_size: int) -> torch.Tensor:
    """Greedy decoding that commits one slot position per step from the last to the first."""
    config = model.config
    canvas = torch.tensor([[*p, config.bos_token_id, *[config.mask_token_id] * block_size] for p in prompts])
    mask = torch.ones_like(canvas)
    start = canvas.shape[1] - block_size
    for column in range(canvas.shape[1] - 1, start - 1, -1):
        logits = model(input_ids=canvas, attention_mask=mask).logits[:, column]
        logits[:, config.mask_token_id] = float("-inf")
        canvas[:, column] = logits.argmax(-1)
    return canvas[:, start:]


@torch.no_grad()
def decode(model, prompts, slot_width: int, batch_size: int = 250, **generation_kwargs) -> torch.Tensor:
    config = model.config
    outputs = []
    for first in range(0, len(prompts), batch_size):
        chunk = prompts[first : first + batch_size]
        if generation_kwargs.get("sampler") == "right_to_left":
            outputs.append(right_to_left(model, chunk, slot_width))
            continue
        input_ids = torch.tensor([[*p, config.bos_token_id] for p in chunk])
        kwargs = dict(generation_kwargs)
        if "num_steps" in kwargs and kwargs["num_steps"] is None:
            kwargs["num_steps"] = slot_width  # one position per step
        output = model.generate(
            input_ids=input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=slot_width,
            **kwargs,
        )
        outputs.append(output.sequences[:, -slot_width:])
    return torch.cat(outputs)


def simulated_exact_match(order: str, trials: int = 100_000, num_steps: int = 14, seed: int = 0) -> float:
    """Exact match of an idealised star_easy denoiser (see the module docstring) under a decoding order over the six
    inner slots `a a b b c c`: `random` (one per step), `ancestral` (MDLM's reverse process with `num_steps`
    steps: each masked slot unmasks with probability dt / t, so some steps commit several slots that then do not
    see each other), or `confidence` (the idealised model is sure exactly where a look-up applies, so a
    confidence order commits `c` first and walks back from the goal)."""
    rng = random.Random(seed)

    def groups() -> list[list[int]]:
        if order == "confidence":
            return [[5], [4], [3], [2], [1], [0]]
        if order == "random":
            slots = list(range(6))
            rng.shuffle(slots)
            return [[slot] for slot in slots]
        masked, t, dt, result = set(range(6)), 1.0, (1 - 1e-5) / num_steps, []
        for step in range(num_steps):
            chosen = (
                sorted(masked)
                if step == num_steps - 1
                else [s for s in sorted(masked) if rng.random() < dt / t]
            )
            masked -= set(chosen)
            t -= dt
            if chosen:
                result.append(chosen)
        return result

    hits = 0
    for _ in range(trials):
        known: dict[int, bool] = {}  # node (0 = a, 1 = b, 2 = c) -> whether its committed value is right
        right = True
        for group in groups():
            values = {}
            for slot in group:
                node = slot // 2
                if node in known:  # its twin is visible: copy it
                    values[slot] = known[node]
                elif node == 2 or known.get(node + 1) or known.get(node - 1):
                    values[slot] = True  # one look-up from the goal or from a correct neighbour
                else:
                    values[slot] = node == 0 and rng.random() < 1 / 3  # a: one of the source's successors
            for slot, value in values.items():
                known[slot // 2] = known.get(slot // 2, value) and value
                right = right and value
        hits += right
    return hits / trials


DECODERS = {
    "recipe (saved generation config)": {},
    "unmask top_prob, 1 token/step": {"sampler": "unmask", "unmasking_order": "top_prob", "num_steps": None},
    "unmask prob_diff (margin), 1 token/step": {
        "sampler": "unmask",
        "unmasking_order": "prob_diff",
        "num_steps": None,
    },
    "unmask entropy, 1 token/step": {"sampler": "unmask", "unmasking_order": "entropy", "num_steps": None},
    "unmask random, 1 token/step": {"sampler": "unmask", "unmasking_order": "random", "num_steps": None},
    "left to right (block_size 1)": {"sampler": "unmask", "num_steps": None, "block_size": 1},
    "right to left": {"sampler": "right_to_left"},
}


def oracle_exact_match(task: str, limit: int) -> dict[str, object]:
    """Exact match of the one-hop oracle (tests/test_masked_star_decoding.py) under the real samplers, in both
    answer layouts, on `limit` graphs of `task` (numpy seed 1)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from test_masked_star_decoding import AnswerSlot, oracle_model, solved, star_graphs, walk_back_forks

    tokenizer, prompts, examples, answers = star_graphs(task, limit, seed=1)
    forks = torch.tensor([walk_back_forks(example) for example in examples])
    results: dict[str, object] = {
        "task": task,
        "graphs": limit,
        "no fork walking back": round(1 - forks.float().mean().item(), 3),
    }
    decoders = {
        "top_prob, 1/step": {"sampler": "unmask", "unmasking_order": "top_prob"},
        "prob_diff, 1/step": {"sampler": "unmask", "unmasking_order": "prob_diff"},
        "ancestral": {"sampler": "ancestral", "num_steps": None},
        "random, 1/step": {"sampler": "unmask", "unmasking_order": "random"},
    }
    for alignment in ("left", "right"):
        layout = AnswerSlot(task, alignment)
        model = oracle_model("mdlm", tokenizer, layout)
        for name, generation in decoders.items():
            generation = {**generation, "num_steps": layout.width}
            hits = solved(model, tokenizer, prompts, answers, layout, **generation)
            results[f"{alignment}: {name}"] = round(hits.float().mean().item(), 3)
            if not bool(forks.all()):
                results[f"{alignment}: {name}, no fork"] = round(hits[~forks].float().mean().item(), 3)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", nargs="?")
    parser.add_argument("--simulate", action="store_true", help="decoding orders against an idealised model")
    parser.add_argument("--oracle", action="store_true", help="the one-hop oracle under the real samplers")
    parser.add_argument(
        "--target-alignment",
        choices=["left", "right"],
        default=None,
        help="the answer's place in its slot (default: the model's experiment file, else left)",
    )
    parser.add_argument("--task", default="star_easy")
    parser.add_argument("--split", default="validation")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--block-size", type=int, default=14)
    parser.add_argument("--decoders", default="all", help="comma-separated names (prefixes) or 'all'")
    parser.add_argument("--attention", action="store_true", help="attention of the look-up query, per head")
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    torch.manual_seed(0)
    if args.simulate:
        for order in ("confidence", "random", "ancestral"):
            print(f"{order}: exact match {simulated_exact_match(order):.3f}")
        return
    if args.oracle:
        print(json.dumps(oracle_exact_match(args.task, args.limit), indent=1))
        return
    if args.model_dir is None:
        parser.error("give a model folder (or --simulate, or --oracle)")

    model, tokenizer, _, model_dir = load_model_and_tokenizer(args.model_dir)
    model.eval()
    alignment = args.target_alignment
    if alignment is None:
        experiment = read_experiment_file(model_dir) or {}
        alignment = (experiment.get("collator") or {}).get("target_alignment", "left")
    prompts, targets = load_examples(args.task, args.split, args.limit, tokenizer)
    canvas, attention_mask, start = teacher_forced_canvas(model, prompts, targets, args.block_size, alignment)
    inner = len(targets[0]) - 2  # slot indices 1 .. inner hold the doubled inner nodes
    # the inner-node probes assume star_easy's fixed path length; right-aligned, the answer starts after the padding
    answer = start + (args.block_size - len(targets[0]) - 1 if alignment == "right" else 0)
    results: dict[str, object] = {
        "model_dir": args.model_dir,
        "split": args.split,
        "examples": len(prompts),
        "target_alignment": alignment,
    }

    all_masked = masked_accuracy(model, canvas, attention_mask, start, list(range(args.block_size)))
    results["all masked, per slot index"] = [round(a, 3) for a in all_masked]
    inner_masked = masked_accuracy(model, canvas, attention_mask, answer, list(range(1, inner + 1)))
    results["inner masked, per inner index"] = [round(a, 3) for a in inner_masked]
    for node in range(inner // 2):
        columns = [1 + 2 * node, 2 + 2 * node]
        results[f"1 hop, inner node {node + 1}"] = round(
            sum(masked_accuracy(model, canvas, attention_mask, answer, columns)) / 2, 3
        )

    if args.attention:
        results["attention of the node before the goal"] = attention_to_lookup(
            model, canvas, attention_mask, start, inner, answer
        )
    reference = canvas[:, start:]
    wanted = args.decoders.split(",") if args.decoders != "all" else list(DECODERS)
    for name, kwargs in DECODERS.items():
        if not any(name.startswith(w) for w in wanted):
            continue
        predictions = decode(model, prompts, args.block_size, **kwargs)
        results[f"EM {name}"] = round((predictions == reference).all(-1).float().mean().item(), 4)
    print(json.dumps(results, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
