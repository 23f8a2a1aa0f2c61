"""The text eval task kinds: held-out perplexity, generative perplexity of unconditional samples, infilling.

They run like the `loss` and `generate` kinds, at every evaluation during training and in `xlm-hf eval`, and
their metrics are logged as `eval_<task>_<metric>`:

```yaml
eval_tasks:
  ppl: {kind: perplexity, split: validation, limit: 200, num_samples: 8}
  samples: {kind: generative_perplexity, num_samples: 64, max_new_tokens: 128, judge: outputs/text_pydoc_arlm}
  infill: {kind: infill, limit: 50, gap_fraction: 0.25}
```

- `perplexity`: `nll`, `perplexity`, `bits_per_token`, `num_tokens`, `is_bound` (see `text_scoring.sequence_nll`);
  with `mask_rate` (MLM, MDLM) the masked-token cross-entropy at that rate instead: `masked_nll`,
  `masked_perplexity`, `masked_num_tokens`.
- `generative_perplexity`: `num_samples` unconditional samples (drawn: `do_sample` is on, the experiment's other
  generation options apply) of `max_new_tokens` tokens, scored by the `judge`
  (`text_generative_perplexity`, `text_entropy`, `text_distinct_n`), and the entropy of the split's own text cut
  to the same length (`reference_entropy`) to compare with. Samples go to `predictions/<task>/step=<S>.jsonl`.
- `infill`: in each example a gap (`gap_fraction` of its tokens, at a seeded random place) is cut out and the model
  fills it: masked families a fixed-length gap of `[MASK]`s, the ILM and FlexMDM a free-length gap (one `[MASK]`
  marks where insertions may go). Metrics `infill_exact_match`, `infill_token_accuracy` (fixed length) and
  `infill_length_ratio` (fill length / gap length); the per-example report (prompt with its gap, fill,
  reference) goes to `predictions/<task>/step=<S>.jsonl`.

Every process computes the same numbers (fixed seeds); only the main process writes the files.
"""

import json
import random
from functools import cache
from pathlib import Path
from typing import Any

import torch

from . import load_metric

TEXT_EVAL_KINDS = ("perplexity", "generative_perplexity", "infill")
# Options of each kind (beyond kind, split, limit, collator), with their types for `xlm_hf.experiment`.
TEXT_EVAL_OPTION_TYPES: dict[str, Any] = {
    "num_samples": int,
    "seed": int,
    "batch_size": int | None,
    "mask_rate": float | None,
    "max_new_tokens": int | None,
    "judge": str | None,
    "judge_max_length": int | None,
    "judge_stride": int | None,
    "judge_batch_size": int,
    "judge_add_bos": bool | None,
    "judge_add_eos": bool,
    "gap_fraction": float,
}
JUDGE_OPTIONS = (
    "judge",
    "judge_max_length",
    "judge_stride",
    "judge_batch_size",
    "judge_add_bos",
    "judge_add_eos",
)
KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    "perplexity": ("num_samples", "seed", "batch_size", "mask_rate"),
    "generative_perplexity": ("num_samples", "seed", "batch_size", "max_new_tokens", *JUDGE_OPTIONS),
    "infill": ("seed", "batch_size", "max_new_tokens", "gap_fraction"),
}
DEFAULTS = {"num_samples": 8, "seed": 0, "judge_batch_size": 8, "judge_add_eos": False, "gap_fraction": 0.25}
POSITIVE = (
    "num_samples",
    "batch_size",
    "max_new_tokens",
    "judge_max_length",
    "judge_stride",
    "judge_batch_size",
)


def validate_text_eval_task(name: str, spec: dict[str, Any]) -> None:
    """One clear error for an option that a task's kind does not take or a value out of range (types are checked
    by the experiment's loader). Options of the text kinds on a `loss`/`generate` task are errors too."""
    kind = spec.get("kind", "loss")
    allowed = KIND_OPTIONS.get(kind, ())
    for option in TEXT_EVAL_OPTION_TYPES:
        if option in spec and option not in allowed:
            takers = [k for k, options in KIND_OPTIONS.items() if option in options]
            raise ValueError(
                f"eval_tasks.{name}.{option} is an option of kind {' / '.join(takers)}, not of kind {kind}; "
                f"remove it{f' (kind {kind} takes: ' + ', '.join(allowed) + ')' if allowed else ''}."
            )
    if kind not in TEXT_EVAL_KINDS:
        return
    if spec.get("metrics"):
        raise ValueError(
            f"eval_tasks.{name}: kind {kind} computes its own metrics; remove `metrics` (it is for kind generate)."
        )
    for option in POSITIVE:
        if spec.get(option) is not None and spec[option] < 1:
            raise ValueError(f"eval_tasks.{name}.{option} must be at least 1, got {spec[option]}.")
    mask_rate = spec.get("mask_rate")
    if mask_rate is not None and not 0 < mask_rate <= 1:
        raise ValueError(f"eval_tasks.{name}.mask_rate must be in (0, 1], got {mask_rate}.")
    gap_fraction = spec.get("gap_fraction")
    if gap_fraction is not None and not 0 < gap_fraction < 1:
        raise ValueError(f"eval_tasks.{name}.gap_fraction must be in (0, 1), got {gap_fraction}.")
    max_length, stride = spec.get("judge_max_length"), spec.get("judge_stride")
    if max_length is not None and max_length < 2:
        raise ValueError(f"eval_tasks.{name}.judge_max_length must be at least 2, got {max_length}.")
    if max_length is not None and stride is not None and stride >= max_length:
        raise ValueError(
            f"eval_tasks.{name}.judge_stride ({stride}) must be smaller than judge_max_length ({max_length}): "
            "each window keeps judge_max_length - judge_stride tokens of context."
        )


def task_options(spec: dict[str, Any]) -> dict[str, Any]:
    """The kind's options of an eval-task spec, with their defaults."""
    kind = spec.get("kind", "loss")
    return {option: spec.get(option, DEFAULTS.get(option)) for option in KIND_OPTIONS.get(kind, ())}


def check_judge(judge: str) -> None:
    """Before training: the judge must be a causal LM whose configuration loads (a local folder, or a Hub id in
    the cache or reachable); its weights are loaded at the first evaluation."""
    from transformers import AutoConfig

    try:
        AutoConfig.from_pretrained(judge, trust_remote_code=True)
    except (OSError, ValueError) as error:
        raise ValueError(
            f"The judge {judge!r} is not a model folder or a reachable Hub id ({str(error).splitlines()[0]}): "
            "train and export the ARLM first (`xlm-hf train text_<corpus>_arlm`), or set the eval task's `judge:` "
            "to a causal LM folder or Hub id."
        ) from None


def default_judge(experiment: dict[str, Any]) -> str:
    """The project's own ARLM trained on the same corpus: `outputs/<task>_arlm`, where the built-in text
    experiments `<task>_arlm` export it."""
    return f"outputs/{experiment.get('data', {}).get('task', 'text')}_arlm"


def text_eval_task_parts(
    name: str, spec: dict[str, Any], family, experiment: dict[str, Any], tokenizer, task_info, block_size: int
) -> tuple[Any, dict[str, Any]]:
    """`(collator, options)` of a text eval task (for `EvalTask`), checked before anything is trained: the family
    can compute it, the judge loads, and the perplexity kind gets the family's language-model collator (the text
    task's, for text; the others need none)."""
    kind = spec["kind"]
    options = task_options(spec)
    collator = None
    if kind == "perplexity":
        from .text_scoring import IS_BOUND

        if family.name not in IS_BOUND:
            raise ValueError(
                f"Eval task {name!r}: held-out perplexity is defined for {', '.join(IS_BOUND)}, not for "
                f"{family.name}."
            )
        if options.get("mask_rate") is not None and family.name not in ("mlm", "mdlm"):
            raise ValueError(f"Eval task {name!r}: mask_rate is for the masked families (mlm, mdlm).")
        if hasattr(task_info, "lm_collator"):  # a text task lays out its rows (packing, padding) itself
            collator = task_info.lm_collator(family, tokenizer, **experiment.get("collator", {}))
        else:
            collator = family.collators["lm"](tokenizer=tokenizer, block_size=block_size)
    elif kind == "generative_perplexity":
        options["judge"] = options.get("judge") or default_judge(experiment)
        check_judge(options["judge"])
    elif not family.infills:
        raise ValueError(f"Eval task {name!r}: family {family.name} does not infill.")
    return collator, options


def example_tokens(example: dict[str, Any]) -> list[int]:
    """A text example's token ids: `input_ids` (language-modelling tasks), else prompt then target."""
    if "input_ids" in example:
        return list(example["input_ids"])
    return [*example.get("prompt_ids", []), *example.get("target_ids", [])]


def run_text_eval(trainer, task, prefix: str) -> dict[str, float]:
    """Runs a text eval task for `XLMTrainer.evaluate`; logs and returns `<prefix>_<metric>` values."""
    from ..families import family_for_model_type

    model = trainer.accelerator.unwrap_model(trainer.model)
    family = family_for_model_type(model.config.model_type)
    options = dict(task.options)
    if options.get("batch_size") is None:
        options["batch_size"] = trainer.args.per_device_eval_batch_size
    was_training = model.training
    model.eval()
    rng_devices = [model.device] if model.device.type == "cuda" else []
    try:
        # fixed seeds for every evaluation, and the training's random state left as it was
        with torch.random.fork_rng(devices=rng_devices):
            torch.manual_seed(options["seed"])
            if task.kind == "perplexity":
                metrics, rows = _perplexity(model, family, task, options), None
            elif task.kind == "generative_perplexity":
                metrics, rows = _generative_perplexity(model, family, task, options, trainer)
            else:
                metrics, rows = _infill(model, family, task, options, trainer)
    finally:
        model.train(was_training)
    metrics = {f"{prefix}_{key}": float(value) for key, value in metrics.items()}
    if rows is not None and trainer.is_world_process_zero():
        from ..atomic_io import atomic_open

        out_dir = Path(trainer.args.output_dir) / "predictions" / task.name
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(out_dir / f"step={trainer.state.global_step}.jsonl") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    trainer.log(metrics)
    trainer.control = trainer.callback_handler.on_evaluate(
        trainer.args, trainer.state, trainer.control, metrics
    )
    return metrics


# ----- perplexity --------------------------------------------------------------------------------------------


def _perplexity(model, family, task, options) -> dict[str, float]:
    from .text_scoring import IS_BOUND, sequence_nll

    texts = [example_tokens(example) for example in task.dataset]
    scores = sequence_nll(
        model,
        family.name,
        texts,
        task.collator,
        num_samples=options["num_samples"],
        seed=options["seed"],
        batch_size=options["batch_size"],
        mask_rate=options.get("mask_rate"),
    )
    result = load_metric("text_perplexity").compute(
        nll=[nll for nll, _ in scores], num_tokens=[count for _, count in scores]
    )
    if options.get("mask_rate") is not None:
        return {f"masked_{key}": value for key, value in result.items() if key != "bits_per_token"}
    return {**result, "is_bound": float(IS_BOUND[family.name])}


# ----- generative perplexity ---------------------------------------------------------------------------------


@cache
def _judge(name_or_path: str, device: str):
    from .text_scoring import load_judge

    return load_judge(name_or_path, device)


def _text_ids(sequence: torch.Tensor, is_new: torch.Tensor, special: torch.Tensor) -> list[int]:
    return sequence[is_new & ~torch.isin(sequence, special)].tolist()


def length_matched_references(
    documents: list[list[int]], sample_lengths: list[int], default_length: int
) -> list[list[int]]:
    """The split's documents, the j-th cut to the length of the j-th non-empty sample (cycling through them).

    Unigram entropy grows with length (at most log n for n tokens), so samples that stop early must be compared
    with text of the same lengths: cutting every document to the longest sample made short samples look
    repetitive."""
    lengths = [length for length in sample_lengths if length > 0] or [default_length]
    return [document[: lengths[index % len(lengths)]] for index, document in enumerate(documents)]


def _generative_perplexity(model, family, task, options, trainer) -> tuple[dict[str, float], list[dict]]:
    from ..modeling.generation_utils import new_token_mask
    from .text_scoring import judge_nll

    tokenizer = trainer.processing_class
    special = torch.tensor(tokenizer.all_special_ids, device=model.device)
    # unconditional samples are drawn (greedy decoding would give one text); the experiment's other generation
    # options (temperature, top_p, steps, ...) apply
    generation = {**trainer.generation_kwargs, "do_sample": True}
    if options.get("max_new_tokens") is not None:
        generation["max_new_tokens"] = options["max_new_tokens"]
    samples: list[list[int]] = []
    remaining, batch_index = options["num_samples"], 0
    while remaining > 0:
        size = min(options["batch_size"], remaining)
        torch.manual_seed(
            options["seed"] + batch_index
        )  # each batch its own seed: sizes do not change samples
        with torch.no_grad():
            output = model.generate(
                input_ids=None, num_return_sequences=size, return_dict_in_generate=True, **generation
            )
        sequences = output.sequences if hasattr(output, "sequences") else output
        new = new_token_mask(output, None)
        samples.extend(_text_ids(sequences[row], new[row], special) for row in range(size))
        remaining -= size
        batch_index += 1
    texts = [tokenizer.decode(ids, skip_special_tokens=True) for ids in samples]

    judge_model, judge_tokenizer = _judge(options["judge"], str(model.device))
    scores = judge_nll(
        texts,
        judge_model,
        judge_tokenizer,
        max_length=options.get("judge_max_length"),
        stride=options.get("judge_stride"),
        batch_size=options["judge_batch_size"],
        add_bos=options.get("judge_add_bos"),
        add_eos=options["judge_add_eos"],
    )
    metrics = load_metric("text_generative_perplexity").compute(
        nll=[nll for nll, _ in scores], length=[length for _, length in scores]
    )
    if any(samples):
        metrics.update(load_metric("text_entropy").compute(predictions=samples))
        metrics.update(load_metric("text_distinct_n").compute(predictions=samples))
    # the split's own text, cut to the samples' lengths: what the entropy of good samples is close to
    references = length_matched_references(
        [example_tokens(example) for example in task.dataset],
        [len(ids) for ids in samples],
        default_length=generation.get("max_new_tokens") or 1,
    )
    if any(references):
        metrics["reference_entropy"] = load_metric("text_entropy").compute(predictions=references)["entropy"]
    rows = []
    from .text_entropy.text_entropy import unigram_entropy

    for ids, text, (nll, length) in zip(samples, texts, scores):
        rows.append(
            {
                "text": text,
                "num_tokens": len(ids),
                "judge_nll": nll,
                "judge_length": length,
                "judge_perplexity": float(torch.tensor(nll / length).exp()) if length else None,
                "entropy": unigram_entropy(ids) if ids else None,
            }
        )
    return metrics, rows


# ----- infilling -----------------------------------------------------------------------------------------------


def _infill(model, family, task, options, trainer) -> tuple[dict[str, float], list[dict]]:
    from ..modeling.generation_utils import new_token_mask

    tokenizer = trainer.processing_class
    mask_id = tokenizer.mask_token_id
    special = torch.tensor(tokenizer.all_special_ids, device=model.device)
    layout_ids = (
        special[special.ne(tokenizer.eos_token_id)] if tokenizer.eos_token_id is not None else special
    )
    # the ILM and FlexMDM insert any number of tokens into a gap
    free_length = family.name in ("ilm", "flexmdm")
    chooser = random.Random(options["seed"])
    cases = []  # (text, start, end) per example with at least two tokens
    for example in task.dataset:
        text = example_tokens(example)
        if len(text) < 2:
            continue
        gap = max(1, min(len(text) - 1, round(options["gap_fraction"] * len(text))))
        start = chooser.randrange(0, len(text) - gap + 1)
        cases.append((text, start, start + gap))
    if not cases:
        raise ValueError(f"Eval task {task.name!r}: no example has the two tokens an infilling case needs.")
    generation = dict(trainer.generation_kwargs)
    if free_length:
        if options.get("max_new_tokens") is not None:
            generation["max_new_tokens"] = options["max_new_tokens"]
    else:
        generation["max_new_tokens"] = 0  # fill the [MASK]s, append nothing
    pad = tokenizer.pad_token_id
    rows, exact, accuracy, ratios = [], [], [], []
    for batch_start in range(0, len(cases), options["batch_size"]):
        batch = cases[batch_start : batch_start + options["batch_size"]]
        prompts = [
            [*text[:start], *([mask_id] if free_length else [mask_id] * (end - start)), *text[end:]]
            for text, start, end in batch
        ]
        width = max(len(p) for p in prompts)
        input_ids = torch.full((len(prompts), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(input_ids)
        for row, prompt in enumerate(prompts):  # left padding: the layout every family's generate takes
            input_ids[row, width - len(prompt) :] = torch.tensor(prompt)
            attention_mask[row, width - len(prompt) :] = 1
        input_ids, attention_mask = input_ids.to(model.device), attention_mask.to(model.device)
        torch.manual_seed(options["seed"] + batch_start)
        with torch.no_grad():
            output = model.generate(
                input_ids=input_ids, attention_mask=attention_mask, return_dict_in_generate=True, **generation
            )
        sequences = output.sequences if hasattr(output, "sequences") else output
        new = new_token_mask(output, input_ids)
        for row, (text, start, end) in enumerate(batch):
            fill = _text_ids(sequences[row], new[row], special)
            reference = text[start:end]
            exact.append(float(fill == reference))
            ratios.append(len(fill) / len(reference))
            if not free_length:
                accuracy.append(sum(a == b for a, b in zip(fill, reference)) / len(reference))
            gap_text = (
                tokenizer.mask_token if free_length else " ".join([tokenizer.mask_token] * (end - start))
            )
            rows.append(
                {
                    "prompt": " ".join(
                        part
                        for part in (tokenizer.decode(text[:start]), gap_text, tokenizer.decode(text[end:]))
                        if part
                    ),
                    "fill": tokenizer.decode(fill),
                    "reference": tokenizer.decode(reference),
                    # the whole infilled row; [EOS]s between packed documents stay visible
                    "text": tokenizer.decode(
                        _text_ids(sequences[row], torch.ones_like(new[row]), layout_ids)
                    ),
                    "fill_length": len(fill),
                    "reference_length": len(reference),
                    "exact_match": exact[-1],
                }
            )
    metrics = {
        "infill_exact_match": sum(exact) / len(exact),
        "infill_length_ratio": sum(ratios) / len(ratios),
        "infill_examples": len(rows),
    }
    if accuracy:
        metrics["infill_token_accuracy"] = sum(accuracy) / len(accuracy)
    return metrics, rows


__all__ = [
    "TEXT_EVAL_KINDS",
    "TEXT_EVAL_OPTION_TYPES",
    "KIND_OPTIONS",
    "validate_text_eval_task",
    "task_options",
    "check_judge",
    "default_judge",
    "text_eval_task_parts",
    "run_text_eval",
]
