"""The jobs behind the CLI: train an experiment, evaluate a saved model, generate from a saved model.

`train` and `evaluate` run under a multi-process launcher as well (`torchrun --nproc_per_node N`,
`accelerate launch --multi_gpu --num_processes N`): data-parallel training (gloo on CPU, NCCL on GPUs), generation
evaluated in shards and gathered, and one export, written by the main process. `check_launch` refuses the launches
that would otherwise go wrong without a word.

The jobs sit on top of the one-way chain export -> model card, hub -> export: they hold the model in memory, so
they are where the card's widget outputs are generated (`widget_examples`) and handed to the export or the card.
"""

import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from transformers import TrainingArguments, set_seed
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from .atomic_io import atomic_write_text
from .ema import EMACallback, ema_weights
from .experiment import DataArguments, ExperimentError, data_arguments, load_experiment, validate_experiment
from .export import RESULTS_FILE, export_model, load_model_and_tokenizer, read_experiment_file
from .families import Family, get_family
from .hub import push_after_training, take_push_settings
from .metrics.text_eval import TEXT_EVAL_KINDS, text_eval_task_parts
from .model_card import MAX_WIDGET_EXAMPLES, example_rows, write_model_card
from .tasks import TextTask, get_task, load_task, mix_in_tasks, mixture_then_task, resolve_task
from .trainer import EvalTask, TrainingInterrupted, find_checkpoint

DEBUG_MODES = ("overfit", "small_data")
# Where launchers put the number of processes: torchrun / accelerate (WORLD_SIZE), MPI (the others).
WORLD_SIZE_VARIABLES = ("WORLD_SIZE", "PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "MV2_COMM_WORLD_SIZE")
NO_DATA_NOTE = "(No examples: the task's data was not available when this card was written.)"
DEFAULT_EVAL_TASKS = {
    "lm": {"kind": "loss", "split": "validation"},
    "prediction": {"kind": "generate", "split": "validation", "metrics": ["exact_match", "token_accuracy"]},
}


def debug_overrides(mode: str, experiment: dict[str, Any]) -> list[str]:
    """Debug presets (applied before the command line's own overrides, which win).

    - `overfit`: one batch, repeated; the loss must fall near zero (checks that the family can learn at all).
    - `small_data`: 1 000 training and 50 evaluation examples, 100 steps (checks the whole loop quickly).
    """
    batch_size = experiment.get("training", {}).get("per_device_train_batch_size", 8)
    if mode == "overfit":
        return [
            f"data.max_train_samples={batch_size}",
            f"data.max_eval_samples={batch_size}",
            "training.max_steps=300",
            "training.learning_rate=0.001",
            "training.lr_scheduler_type=constant",
            "training.warmup_steps=0",
            "training.weight_decay=0.0",
            "training.eval_strategy=no",
            "training.logging_steps=25",
            "model.hidden_dropout=0.0",
            "model.attention_dropout=0.0",
        ]
    if mode == "small_data":
        return [
            "data.max_train_samples=1000",
            "data.max_eval_samples=50",
            "training.max_steps=100",
            "training.eval_steps=50",
            "training.logging_steps=10",
        ]
    raise ExperimentError(f"Unknown debug mode {mode!r}; choose one of {DEBUG_MODES}.")


def prepare_experiment(
    name_or_path: str, overrides: list[str] | None = None, debug: str | None = None
) -> dict:
    overrides = list(overrides or [])
    if debug:
        preview = load_experiment(name_or_path, overrides)
        overrides = debug_overrides(debug, preview) + overrides
    experiment = load_experiment(name_or_path, overrides)
    experiment["debug"] = debug
    return experiment


def block_sizes(data_args: DataArguments) -> tuple[int, int]:
    task = get_task(data_args.task)
    return data_args.input_block_size or task.input_block_size, data_args.block_size or task.block_size


def build_eval_tasks(
    family: Family,
    experiment: dict[str, Any],
    tokenizer,
    splits,
    split: str | None = None,
    limit: int | None = None,
) -> dict[str, EvalTask]:
    """The experiment's eval tasks (or the defaults), each over its split with its own collator."""
    data_args = data_arguments(experiment)
    input_block_size, block_size = block_sizes(data_args)
    task = resolve_task(data_args)
    specs = experiment.get("eval_tasks") or DEFAULT_EVAL_TASKS
    limit = limit if limit is not None else data_args.max_eval_samples
    tasks = {}
    for name, spec in specs.items():
        kind = spec.get("kind", "loss")
        task_split = split or spec.get("split", "validation")
        if task_split not in splits:
            raise ExperimentError(
                f"Eval task {name!r} asks for split {task_split!r}; the task has {list(splits)}."
            )
        dataset = splits[task_split]
        task_limit = spec.get("limit") if spec.get("limit") is not None else limit
        if task_limit is not None:
            dataset = dataset.select(range(min(task_limit, len(dataset))))
        if kind in TEXT_EVAL_KINDS:  # perplexity, generative_perplexity, infill: xlm_hf/metrics/text_eval.py
            collator, options = text_eval_task_parts(
                name, spec, family, experiment, tokenizer, task, block_size
            )
            tasks[name] = EvalTask(name, dataset, collator, kind=kind, options=options)
            continue
        collator_kind = spec.get("collator") or ("seq2seq" if kind == "loss" else "seq2seq_pred")
        if collator_kind not in family.collators:
            raise ExperimentError(
                f"Eval task {name!r} asks for collator {collator_kind!r}; family {family.name!r} has "
                f"{sorted(family.collators)}."
            )
        collator_options = experiment.get("collator", {}) if collator_kind == "seq2seq" else {}
        if collator_kind == "seq2seq_pred" and "target_alignment" in experiment.get("collator", {}):
            # where the model puts the answer in its slot (MLM, MDLM): predictions are read back from there
            collator_options = {"target_alignment": experiment["collator"]["target_alignment"]}
        if isinstance(task, TextTask) and collator_kind == "seq2seq":  # text: the family's LM collator
            collator = task.lm_collator(family, tokenizer, **collator_options)
        else:
            collator = family.collators[collator_kind](
                tokenizer=tokenizer,
                input_block_size=input_block_size,
                block_size=block_size,
                **collator_options,
            )
        tasks[name] = EvalTask(name, dataset, collator, kind=kind, metrics=list(spec.get("metrics", [])))
    return tasks


class LaunchError(ValueError):
    """A multi-process launch that would not run what was asked (one process, or several that ignore each
    other); the same on every process, so the CLI reports it once."""


def launched_world_size() -> int:
    """How many processes the launcher started (1 without a launcher)."""
    for name in WORLD_SIZE_VARIABLES:
        if os.environ.get(name):
            return int(os.environ[name])
    return 1


def _ddp_device_available() -> bool:
    """Whether accelerate can run data parallelism on an accelerator here (MPS has no process-group backend)."""
    accelerator = getattr(torch, "accelerator", None)  # torch >= 2.6
    if accelerator is None:
        return torch.cuda.is_available()
    device = accelerator.current_accelerator() if accelerator.is_available() else None
    return device is not None and device.type != "mps"


def check_launch(options: dict[str, Any]) -> None:
    """Makes `options` (TrainingArguments keywords) run the launch that was asked for, or stops with one error.

    - `accelerate launch --num_processes N` without `--multi_gpu` on a machine without several GPUs (with or
      without `--cpu`) starts ONE process; it exports MASTER_ADDR for the N it was asked for, which is how this
      shows.
    - `torchrun` (or `accelerate launch --multi_gpu`) on a machine without GPUs: accelerate finds no
      process-group backend unless `use_cpu` is set, so every process would train alone (and all would write to
      one output folder). `use_cpu` is set here: gloo data parallelism on the CPUs, as asked.
    """
    world_size = launched_world_size()
    if "ACCELERATE_USE_CPU" in os.environ and "MASTER_ADDR" in os.environ and world_size == 1:
        raise LaunchError(
            "`accelerate launch` started 1 process although several were asked (MASTER_ADDR is set, WORLD_SIZE is "
            "not): it starts several only with --multi_gpu, on CPUs too. Run `accelerate launch --multi_gpu "
            "--num_processes N $(which xlm-hf) ...` or `torchrun --nproc_per_node N $(which xlm-hf) ...`."
        )
    if world_size > 1 and not options.get("use_cpu") and not _ddp_device_available():
        options["use_cpu"] = True


def _check_world_size(args: TrainingArguments) -> None:
    """After TrainingArguments set up the processes: every launched process must be part of one group."""
    world_size = launched_world_size()
    if args.world_size != world_size:
        raise LaunchError(
            f"The launcher started {world_size} processes but each would run alone (world size "
            f"{args.world_size}), all writing to {args.output_dir}: this device has no process-group backend; "
            "add training.use_cpu=true to train on the CPUs with gloo, or launch one process."
        )


def training_arguments(experiment: dict[str, Any]) -> TrainingArguments:
    options = dict(experiment.get("training", {}))
    options.setdefault("output_dir", f"outputs/{experiment.get('name', 'experiment')}")
    options.setdefault("report_to", "none")
    # Collators need the raw token-id columns; every training batch carries `labels`.
    options["remove_unused_columns"] = False
    options.setdefault("label_names", ["labels"])
    options.setdefault("dataloader_pin_memory", torch.cuda.is_available())
    if experiment.get("data", {}).get("train_mixture_steps") is not None:
        # the curriculum's training set is built in the order it is to be trained (mixture_then_task)
        options["train_sampling_strategy"] = "sequential"
    if not experiment.get("eval_tasks") and options.get("eval_strategy", "no") != "no":
        experiment["eval_tasks"] = dict(DEFAULT_EVAL_TASKS)
    check_launch(options)
    args = TrainingArguments(**options)
    _check_world_size(args)
    return args


def train(experiment: dict[str, Any], callbacks: list | None = None) -> dict[str, Any]:
    """Trains the experiment, evaluates it on its eval tasks, and exports a Hub-ready folder to `output_dir`.

    `training.resume_from_checkpoint` (a checkpoint folder, absolute or relative to `output_dir`, or true for the
    latest one) continues a run exactly where it stopped. SIGINT / SIGTERM stop training with a resumable
    checkpoint and raise `TrainingInterrupted` (no evaluation, no export). `callbacks` go to the Trainer (e.g. the
    time budget of `xlm-hf compare`).
    """
    family = get_family(experiment["family"])
    hub_push = take_push_settings(
        experiment
    )  # Trainer must not push output_dir itself (checkpoints); see hub.py
    data_args = data_arguments(experiment)
    input_block_size, block_size = block_sizes(data_args)
    args = training_arguments(experiment)
    # a checkpoint that is not there is an error now, not after the data is prepared
    resume = experiment.get("training", {}).get("resume_from_checkpoint")
    checkpoint = find_checkpoint(resume, args.output_dir) if resume else None
    set_seed(args.seed)

    task = resolve_task(data_args)
    tokenizer = task.build_tokenizer()
    model_options = dict(experiment.get("model", {}))
    model_options.setdefault("max_position_embeddings", input_block_size + block_size)
    model = family.build_model(tokenizer, **model_options)
    generation = dict(experiment.get("generation", {}))
    generation.setdefault("max_new_tokens", block_size)
    model.generation_config.update(**generation)

    # One process generates (or reads) the task and tokenizes it; the others then read the cache it wrote.
    with args.main_process_first(desc=f"preparing {data_args.task}"):
        splits = load_task(data_args.task, data_args.cache_dir)
        splits = {name: task.tokenize(split, tokenizer) for name, split in splits.items()}
    if data_args.train_split not in splits:
        raise ExperimentError(
            f"data.train_split={data_args.train_split!r} is not a split of {data_args.task}."
        )
    train_dataset = splits[data_args.train_split]
    if data_args.max_train_samples is not None:
        train_dataset = train_dataset.select(range(min(data_args.max_train_samples, len(train_dataset))))
    if data_args.train_mixture is not None:
        with args.main_process_first(desc="preparing data.train_mixture"):
            mixed_dataset = mix_in_tasks(
                train_dataset,
                task,
                tokenizer,
                data_args.train_mixture,
                input_block_size,
                block_size,
                cache_dir=data_args.cache_dir,
                seed=args.seed,
            )
            if data_args.train_mixture_steps is None:
                train_dataset = mixed_dataset
            else:
                # a curriculum: the mixture for the first steps, then the task alone, read in this order; every
                # process takes its share of each optimizer step's examples from it
                examples_per_step = args.train_batch_size * args.gradient_accumulation_steps * args.world_size
                train_dataset = mixture_then_task(
                    mixed_dataset,
                    train_dataset,
                    data_args.train_mixture_steps * examples_per_step,
                    (args.max_steps - data_args.train_mixture_steps) * examples_per_step,
                    seed=args.seed,
                )
    if experiment.get("debug") == "overfit":
        splits = {"validation": train_dataset, "test": train_dataset}

    if isinstance(task, TextTask):  # text: the family's LM collator over packed or padded rows
        train_collator = task.lm_collator(family, tokenizer, **experiment.get("collator", {}))
    else:
        train_collator = family.collators["seq2seq"](
            tokenizer=tokenizer,
            input_block_size=input_block_size,
            block_size=block_size,
            **experiment.get("collator", {}),
        )
    eval_tasks = build_eval_tasks(family, experiment, tokenizer, splits) if args.eval_strategy != "no" else {}
    trainer = family.trainer_class(
        model=model,
        args=args,
        train_dataset=train_dataset,
        data_collator=train_collator,
        processing_class=tokenizer,
        eval_tasks=eval_tasks,
        generation_kwargs=generation,
        callbacks=[
            *(callbacks or []),
            *([EMACallback(**experiment["ema"])] if experiment.get("ema") else []),
        ],
    )
    train_output = trainer.train(resume_from_checkpoint=checkpoint)
    # Trainer evaluated at the last step already: its metrics, not a second evaluation.
    final_metrics = trainer.final_evaluation() if eval_tasks else {}
    trainer.save_state()  # output_dir/trainer_state.json: the log history (never pushed)

    # One process writes the folder; the others wait, so none exits before the export is complete.
    if trainer.is_world_process_zero():
        _export_trained_model(trainer, tokenizer, family, experiment)
    trainer.accelerator.wait_for_everyone()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "output_dir": str(args.output_dir),
        "world_size": args.world_size,
        "global_step": trainer.state.global_step,
        "train_loss": train_output.training_loss,
        "final_logged_loss": losses[-1] if losses else None,
        "train_runtime": train_output.metrics.get("train_runtime"),
        **final_metrics,
    }
    # training.push_to_hub: the exported folder (not Trainer's output_dir), once
    if hub_push and trainer.is_world_process_zero():
        summary["hub"] = push_after_training(hub_push, args.output_dir)
    return summary


def _export_trained_model(trainer, tokenizer, family: Family, experiment: dict[str, Any]) -> None:
    """Exports the trained model to `output_dir`. Training ended with a checkpoint of its last step (see
    `XLMTrainer`), so a failed export (a full disk) loses nothing: the error says where the weights are and how to
    export them. With `save_strategy: no` that checkpoint was only this safety net and goes after the export."""
    args = trainer.args
    last_checkpoint = Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{trainer.state.global_step}"
    # the card's widget outputs come from the model in memory (the export itself never generates)
    rows = example_rows(Path(args.output_dir), experiment, MAX_WIDGET_EXAMPLES)
    try:
        with ema_weights(trainer):  # the moving average of the weights, when the experiment keeps one
            examples, _ = widget_examples(trainer.model, tokenizer, family, rows)
            export_model(
                trainer.model,
                tokenizer,
                args.output_dir,
                family,
                experiment=experiment,
                widget_examples=examples,
            )
    except (OSError, ValueError) as error:
        if not last_checkpoint.is_dir():
            raise
        raise ValueError(
            f"exporting the trained model to {args.output_dir} failed ({error}); the trained weights are safe in "
            f"{last_checkpoint}: fix the cause (e.g. free disk space) and run the same command with "
            "training.resume_from_checkpoint=true to export them without training again."
        ) from error
    if args.save_strategy == "no":
        shutil.rmtree(last_checkpoint, ignore_errors=True)


def evaluate(
    model_path: str,
    task: str | None = None,
    split: str = "test",
    limit: int | None = None,
    revision: str | None = None,
    batch_size: int | None = None,
    cache_dir: str | None = None,
    eval_tasks: dict[str, dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Runs a saved model's eval tasks on `split` (or `eval_tasks`, e.g. `{"ppl": {"kind": "perplexity"}}`,
    instead of the experiment's); writes `results.json` next to the weights."""
    # bool is an int: `limit=True` is a mistake, not "1 example"
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ValueError(f"--limit must be a positive number of examples, got {limit!r}.")
    if batch_size is not None and (
        not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1
    ):
        raise ValueError(f"--batch-size must be a positive integer, got {batch_size!r}.")
    model, tokenizer, family, model_dir = load_model_and_tokenizer(model_path, revision)
    experiment = read_experiment_file(model_dir)
    if experiment is None:
        experiment = {"family": family.name, "data": {}}
    experiment.setdefault("data", {})
    if task is not None:
        trained_on = experiment["data"].get("task")
        if trained_on not in (None, task):
            # a different task: its own block sizes
            experiment["data"].pop("input_block_size", None)
            experiment["data"].pop("block_size", None)
        experiment["data"]["task"] = task
    if cache_dir is not None:
        experiment["data"]["cache_dir"] = cache_dir
    if eval_tasks is not None:  # `xlm-hf eval --eval-task NAME=SPEC`: checked like an experiment's
        validate_experiment({"family": family.name, "eval_tasks": eval_tasks})
        experiment["eval_tasks"] = eval_tasks
    data_args = data_arguments(experiment)
    task_info = resolve_task(data_args)
    if not isinstance(task_info, TextTask) and len(tokenizer) != len(task_info.build_tokenizer()):
        raise ValueError(
            f"The model's tokenizer ({len(tokenizer)} tokens) does not match task {data_args.task!r}'s vocabulary."
        )
    # results and predictions go next to the model only when it is a local folder of ours: a Hub id resolves to
    # a snapshot in the shared Hub cache, which must stay a pristine copy of the repo
    writable = Path(model_path).is_dir() and os.access(model_dir, os.W_OK)
    with tempfile.TemporaryDirectory() as scratch:
        # predictions/<task>/*.jsonl go next to the model when the folder is ours (not a read-only Hub cache)
        options = {
            "output_dir": str(model_dir) if writable else scratch,
            "per_device_eval_batch_size": batch_size
            or experiment.get("training", {}).get("per_device_eval_batch_size", 64),
            "report_to": "none",
            "remove_unused_columns": False,
            "label_names": ["labels"],
            "dataloader_pin_memory": torch.cuda.is_available(),
        }
        check_launch(options)
        args = TrainingArguments(**options)
        _check_world_size(args)
        with args.main_process_first(desc=f"preparing {data_args.task}"):
            splits = load_task(data_args.task, data_args.cache_dir)
            if split not in splits:
                raise ValueError(f"Task {data_args.task!r} has no split {split!r}; it has {list(splits)}.")
            splits = {split: task_info.tokenize(splits[split], tokenizer)}
        eval_tasks = build_eval_tasks(family, experiment, tokenizer, splits, split=split, limit=limit)
        trainer = family.trainer_class(
            model=model,
            args=args,
            processing_class=tokenizer,
            eval_tasks=eval_tasks,
            generation_kwargs=experiment.get("generation", {}),
        )
        metrics = trainer.evaluate()
    results = {
        "task": data_args.task,
        "split": split,
        "num_examples": len(splits[split]) if limit is None else min(limit, len(splits[split])),
        "split_size": len(splits[split]),  # the card tells a `--limit` run from the whole split
        "metrics": {k: v for k, v in metrics.items() if isinstance(v, (int, float)) and math.isfinite(v)},
    }
    if writable and trainer.is_world_process_zero():
        # a unique temporary name per writer: concurrent evals of one folder each replace the file whole
        atomic_write_text(model_dir / RESULTS_FILE, json.dumps(results, indent=2))
    return results


def generate(
    model_path: str,
    prompts: list[str],
    revision: str | None = None,
    **generation_kwargs,
) -> list[str]:
    """Generates from plain text prompts; returns, per generated sequence, the continuation when the model kept
    the prompt as a prefix and only added tokens after it, and the whole text otherwise (infilled `[MASK]`s,
    insertions inside the prompt). Which tokens are new comes from the model's output, not from the text.

    Prompts are plain text: `[MASK]` marks a gap to fill for the families that infill (MLM, MDLM, ILM); every
    other special token (`[PAD]`, `[BOS]`, `[EOS]`, `[CLS]`, ...) belongs to the layout `generate` adds itself,
    and a prompt that types one is refused."""
    model, tokenizer, family, _ = load_model_and_tokenizer(model_path, revision)
    return generate_texts(model, tokenizer, family, prompts, **generation_kwargs)


def generate_texts(model, tokenizer, family: Family, prompts: list[str], **generation_kwargs) -> list[str]:
    """`generate` with a model (on the CPU) and tokenizer in memory; sets the tokenizer's padding side to left."""
    from .modeling.generation_utils import new_token_mask

    tokenizer.padding_side = "left"
    encoded = tokenizer(prompts, return_tensors="pt", padding=True, add_special_tokens=False)
    ids, attention_mask = encoded["input_ids"], encoded["attention_mask"]
    if tokenizer.unk_token_id is not None and bool((ids == tokenizer.unk_token_id).any()):
        unknown = [
            w
            for p in prompts
            for w in p.split()
            if tokenizer.convert_tokens_to_ids(w) == tokenizer.unk_token_id
        ]
        raise ValueError(f"The prompt has words outside the model's vocabulary: {sorted(set(unknown))}.")
    allowed = {tokenizer.mask_token_id} if family.infills else set()
    typed = sorted(
        {int(i) for i in ids[attention_mask.bool()].tolist()} & (set(tokenizer.all_special_ids) - allowed)
    )
    if typed:
        names = ", ".join(tokenizer.convert_ids_to_tokens(typed))
        infill = " ([MASK] marks a gap to fill)" if allowed else ""
        raise ValueError(
            f"The prompt holds the special token(s) {names}: {family.name.upper()} prompts are plain text{infill}; "
            "generate adds the layout tokens itself. Remove them from the prompt."
        )
    if ids.shape[1] == 0:  # no prompt at all: unconditional generation
        ids = attention_mask = None
    # the output dict says which tokens are new (`new_token_mask`; autoregressive: the columns after the prompt)
    generation_kwargs = {**generation_kwargs, "return_dict_in_generate": True}
    with torch.no_grad():
        output = model.generate(input_ids=ids, attention_mask=attention_mask, **generation_kwargs)
    sequences = output.sequences if hasattr(output, "sequences") else output
    new = new_token_mask(output, ids)
    special = torch.tensor(tokenizer.all_special_ids)
    texts = []
    for row in range(sequences.shape[0]):
        sequence, is_new = sequences[row], new[row]
        is_text = ~torch.isin(sequence, special)
        kept_positions = (is_text & ~is_new).nonzero().flatten()
        new_positions = (is_text & is_new).nonzero().flatten()
        prompt_index = row * len(prompts) // sequences.shape[0]  # rows come num_return_sequences per prompt
        prompt_text = tokenizer.decode(encoded["input_ids"][prompt_index], skip_special_tokens=True).strip()
        kept_text = tokenizer.decode(sequence[kept_positions], skip_special_tokens=True).strip()
        # a continuation: the prompt's tokens unchanged, and every new position after them (a special token the
        # model wrote into a gap of the prompt still makes it an infill, printed whole)
        any_new_positions = is_new.nonzero().flatten()
        appended = (
            len(any_new_positions) == 0
            or len(kept_positions) == 0
            or kept_positions[-1] < any_new_positions[0]
        )
        if kept_text == prompt_text and appended:
            texts.append(tokenizer.decode(sequence[new_positions], skip_special_tokens=True).strip())
        else:
            texts.append(tokenizer.decode(sequence, skip_special_tokens=True).strip())
    return texts


def widget_examples(
    model, tokenizer, family: Family, rows: list[dict[str, str]]
) -> tuple[list[dict[str, Any]], str]:
    """The card's widget entries with the outputs `model` gives (seed 0), and, when there are none, why.

    Text generation: the continuation of each prompt of `rows` (`model_card.example_rows`), as `xlm-hf generate`
    prints it; fill-mask: the top 3 tokens for one masked target token. The model runs on the CPU, in eval mode,
    and is put back as it was (device, mode, the tokenizer's padding side)."""
    if not rows:
        return [], NO_DATA_NOTE
    device, training, padding_side = model.device, model.training, tokenizer.padding_side
    model.to("cpu").eval()
    torch.manual_seed(0)
    try:
        with torch.no_grad():
            if family.pipeline_tag == "fill-mask":
                return _fill_mask_examples(model, tokenizer, rows), ""
            continuations = generate_texts(model, tokenizer, family, [row["prompt"] for row in rows])
    except Exception as error:  # a card must render even when the checkpoint cannot generate here
        return [], f"(Examples could not be generated when this card was written: {error}.)"
    finally:
        model.to(device).train(training)
        tokenizer.padding_side = padding_side
    examples = [
        {
            "text": row["prompt"],
            "example_title": f"Example {index}",
            "output": {"text": f"{row['prompt']} {text}".strip()},
        }
        for index, (row, text) in enumerate(zip(rows, continuations), 1)
    ]
    return examples, ""


def _fill_mask_examples(model, tokenizer, rows: list[dict[str, str]]) -> list[dict[str, Any]]:
    from transformers import FillMaskPipeline

    fill = FillMaskPipeline(model=model, tokenizer=tokenizer)
    examples = []
    for index, row in enumerate(rows, 1):
        target = row["target"].split()
        if not target:
            continue
        target[len(target) // 2] = tokenizer.mask_token
        text = f"{row['prompt']} {tokenizer.bos_token} {' '.join(target)}".strip()
        output = [
            {"label": p["token_str"].strip(), "score": round(float(p["score"]), 4)}
            for p in fill(text, top_k=3)
        ]
        examples.append({"text": text, "example_title": f"Example {index}", "output": output})
    return examples


def write_card(model_path: str | os.PathLike, repo_id: str | None = None, widget: bool = True) -> Path:
    """`xlm-hf card`: re-renders a model folder's `README.md` (after a new `xlm-hf eval`). With `widget`, the folder's
    model is loaded and generates the widget outputs (the export and the push never do)."""
    model_dir = Path(model_path)
    if not model_dir.is_dir():
        raise ValueError(f"{model_dir} is not a model folder.")
    if not widget or not (model_dir / "config.json").is_file():  # an adapter folder's card has no widget
        return write_model_card(model_dir, repo_id=repo_id, widget=widget)
    experiment = read_experiment_file(model_dir) or {}
    rows = example_rows(model_dir, experiment, MAX_WIDGET_EXAMPLES)
    examples, note = [], NO_DATA_NOTE
    if rows:
        try:
            model, tokenizer, family, _ = load_model_and_tokenizer(model_dir)
        except ValueError as error:  # the card still renders: it says why there are no examples
            note = f"(Examples could not be generated when this card was written: {error}.)"
        else:
            examples, note = widget_examples(model, tokenizer, family, rows)
    return write_model_card(model_dir, repo_id=repo_id, examples=examples, widget_note=note)


__all__ = [
    "train",
    "TrainingInterrupted",
    "evaluate",
    "generate",
    "generate_texts",
    "widget_examples",
    "write_card",
    "prepare_experiment",
    "build_eval_tasks",
    "check_launch",
    "launched_world_size",
    "LaunchError",
    "DEBUG_MODES",
]
