#!/usr/bin/env python
"""Fine-tune an xlm_hf checkpoint (any family) with its own collators and Trainer, optionally with LoRA.

In the style of transformers' `examples/pytorch/language-modeling` scripts: three argument dataclasses (model, data,
`TrainingArguments`) parsed by `HfArgumentParser`, then `main()` from top to bottom.

    # full fine-tuning of a local folder (or a Hub id) on prompt/target pairs
    python scripts/finetune.py --model_name_or_path outputs/star_easy_arlm --train_file data.jsonl \
        --output_dir outputs/finetuned --max_steps 500 --learning_rate 3e-4

    # LoRA on the attention projections, merged into a Hub-ready folder at the end; several processes
    accelerate launch scripts/finetune.py --model_name_or_path my-org/star-easy-mdlm --train_file data.parquet \
        --output_dir outputs/lora --max_steps 500 --lora_r 8 --lora_target_modules q_proj,v_proj --merge_lora

Data: `--train_file` / `--validation_file` (`.jsonl`/`.json`, `.csv`, `.parquet`, `.txt`) or `--dataset_name` (a
`datasets` name or folder). Rows with `prompt` and `target` columns train the family's seq2seq collator (the model
learns target given prompt); rows with only a `text` column train its language-modelling collator. Column names are
options.

Output (`--output_dir`), ready for `xlm-hf push`:
- without LoRA, or with `--merge_lora`: a Hub-ready folder (weights, config with `auto_map`, modeling files,
  tokenizer, generation config, card, `experiment.yaml`), the same as `xlm-hf train` writes;
- with LoRA and without `--merge_lora`: the adapter (`adapter_config.json`, `adapter_model.safetensors`, the
  tokenizer, card, `experiment.yaml`). Its config names transformers' auto class and the base's Hub id, so it loads
  where xlm_hf is not installed: `PeftModel.from_pretrained(AutoModel.from_pretrained(base, trust_remote_code=True),
  dir)` (every family), or `AutoPeftModelForCausalLM.from_pretrained(dir, trust_remote_code=True)` (ARLM) /
  `AutoPeftModel.from_pretrained(dir, trust_remote_code=True)` (every family).

The card's `base_model` (and the adapter's `base_model_name_or_path`) is the base's Hub id when it is known: the
`--model_name_or_path` Hub id, else `--base_model_id`, else the `card.hub_model_id` of the base folder's
`experiment.yaml` (set in every pushed copy). Otherwise the adapter keeps the local path and the card says so.

Trainer's checkpoints (`--save_strategy`, `--save_steps`) go to `OUTPUT_DIR/training/checkpoint-*` and are removed
once training has ended well, so the output holds no optimizer state; `--keep_checkpoints` keeps them (resume with
`--resume_from_checkpoint OUTPUT_DIR/training/checkpoint-N`). `xlm-hf push` never uploads them.

Saving goes through `Trainer.save_model` or happens on the main process only after every process finished, so the
script runs unchanged under `accelerate launch` / `torchrun`.
"""

import dataclasses
import json
import logging
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import transformers
from transformers import HfArgumentParser, TrainingArguments, set_seed

from xlm_hf.experiment import dump_experiment
from xlm_hf.export import EXPERIMENT_FILE, export_model, load_model_and_tokenizer, read_experiment_file
from xlm_hf.families import Family
from xlm_hf.hub import check_repo_id
from xlm_hf.model_card import DEFAULT_LICENSE, write_model_card
from xlm_hf.trainer import EvalTask

logger = logging.getLogger(__name__)

FILE_BUILDERS = {".jsonl": "json", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "text"}
# Trainer's checkpoints (with optimizer state) live here, under the output folder, and go once training ended well.
CHECKPOINTS_SUBDIR = "training"


@dataclass
class ModelArguments:
    """Which checkpoint to start from, and LoRA."""

    model_name_or_path: str = field(metadata={"help": "An xlm_hf model folder or a Hub id (any family)."})
    model_revision: str | None = field(
        default=None, metadata={"help": "Hub revision (branch, tag or commit)."}
    )
    lora_r: int = field(default=0, metadata={"help": "LoRA rank; 0 trains every weight (no LoRA)."})
    lora_alpha: int = field(default=16, metadata={"help": "LoRA scaling numerator (alpha / r)."})
    lora_dropout: float = field(default=0.0)
    lora_target_modules: str = field(
        default="q_proj,v_proj",
        metadata={
            "help": "Comma-separated Linear names to adapt (q_proj,k_proj,v_proj,o_proj,...) or 'all-linear'."
        },
    )
    lora_modules_to_save: str | None = field(
        default=None,
        metadata={
            "help": "Comma-separated modules trained in full next to LoRA (new heads). Default: the model class's "
            "`peft_modules_to_save` (e.g. ILM's lm_head,stopping_head), else none. 'none' for none."
        },
    )
    merge_lora: bool = field(
        default=False, metadata={"help": "Merge LoRA into the weights and save a full model."}
    )
    base_model_id: str | None = field(
        default=None,
        metadata={
            "help": "The base's Hub id (ORG/NAME) for the card and the adapter config, when --model_name_or_path "
            "is a local copy of it."
        },
    )
    license: str | None = field(
        default=None,
        metadata={
            "help": f"License of the result; default: the base's (card.license), else {DEFAULT_LICENSE}."
        },
    )
    keep_checkpoints: bool = field(
        default=False,
        metadata={"help": f"Keep Trainer's checkpoints in OUTPUT_DIR/{CHECKPOINTS_SUBDIR}/ after training."},
    )


@dataclass
class DataArguments:
    """What to train on."""

    train_file: str | None = field(default=None, metadata={"help": ".jsonl/.json, .csv, .parquet or .txt"})
    validation_file: str | None = field(default=None)
    dataset_name: str | None = field(
        default=None, metadata={"help": "A `datasets` name (or folder) instead of files."}
    )
    dataset_config_name: str | None = field(default=None)
    train_split: str = field(default="train")
    validation_split: str | None = field(
        default=None, metadata={"help": "Split of --dataset_name to evaluate on."}
    )
    prompt_column: str = field(default="prompt")
    target_column: str = field(default="target")
    text_column: str = field(default="text")
    input_block_size: int | None = field(
        default=None,
        metadata={"help": "Prompt block; default: the checkpoint's experiment, else the longest prompt."},
    )
    block_size: int | None = field(
        default=None,
        metadata={"help": "Target (or text) block; default: the checkpoint's experiment, else the longest."},
    )
    max_train_samples: int | None = field(default=None)
    max_eval_samples: int | None = field(default=None)
    collator_options: str | None = field(
        default=None,
        metadata={"help": "JSON options of the family collator, e.g. '{\"loss_on_prompt\": true}'."},
    )


def load_raw_datasets(data_args: DataArguments) -> datasets.DatasetDict:
    if data_args.dataset_name:
        if (
            Path(data_args.dataset_name).is_dir()
            and (Path(data_args.dataset_name) / "dataset_dict.json").is_file()
        ):
            raw = datasets.load_from_disk(data_args.dataset_name)
        else:
            raw = datasets.load_dataset(data_args.dataset_name, data_args.dataset_config_name)
        splits = {"train": raw[data_args.train_split]}
        if data_args.validation_split:
            splits["validation"] = raw[data_args.validation_split]
        return datasets.DatasetDict(splits)
    if not data_args.train_file:
        raise ValueError("Give --train_file (jsonl/json/csv/parquet/txt) or --dataset_name.")
    files = {"train": data_args.train_file}
    if data_args.validation_file:
        files["validation"] = data_args.validation_file
    builders = set()
    for path in files.values():
        suffix = Path(path).suffix.lower()
        if suffix not in FILE_BUILDERS:
            raise ValueError(
                f"{path}: unsupported file type {suffix!r}; use one of {', '.join(FILE_BUILDERS)}."
            )
        if not Path(path).is_file():
            raise ValueError(f"{path} does not exist.")
        if Path(path).stat().st_size == 0:  # `datasets` fails on it with a bare StopIteration
            raise ValueError(f"{path} is empty: give a file with at least one row.")
        builders.add(FILE_BUILDERS[suffix])
    if len(builders) != 1:
        raise ValueError("--train_file and --validation_file must have the same type.")
    try:
        raw = datasets.load_dataset(builders.pop(), data_files=files)
    except (
        StopIteration,
        ValueError,
    ) as error:  # e.g. a file of blank lines: no rows, or a bare StopIteration
        reason = " ".join(str(error).split()) or "no rows"
        raise ValueError(f"Could not read rows from {', '.join(files.values())} ({reason}).") from error
    for split, dataset in raw.items():
        if len(dataset) == 0:
            raise ValueError(f"{files[split]} has no rows: give a file with at least one row.")
    return raw


def base_model_hub_id(model_args: ModelArguments, base_experiment: dict) -> str | None:
    """The base's Hub id when it is known (see the module docstring), else None."""
    if model_args.base_model_id:
        return check_repo_id(model_args.base_model_id)
    if not Path(model_args.model_name_or_path).is_dir():
        return model_args.model_name_or_path  # fetched from the Hub by this id
    return (base_experiment.get("card") or {}).get("hub_model_id")


def describe_training_data(data_args: DataArguments, raw: datasets.DatasetDict) -> dict:
    """The `card` entries that say what the model was tuned on: a Hub dataset id goes in `datasets`, anything
    else (local files and folders) is described by name."""
    rows = f"{len(raw['train'])} rows"
    name = data_args.dataset_name
    if name and not Path(name).exists():
        return {"datasets": [name]}
    source = Path(name or data_args.train_file).name
    return {"training_data": f"{source} ({rows})"}


def finish_adapter(adapter_dir: Path, family: Family, base_model: str | None, revision: str | None) -> None:
    """Makes the adapter config load where the adapter is used, not only here.

    peft records the class of the model it wrapped with its module (`xlm_hf.modeling...`), which AutoPeftModel
    refuses to import (outside its allowlist) and which is absent where xlm_hf is not installed: name transformers'
    auto class instead, which loads the base's own code with `trust_remote_code=True`. peft also records the folder
    the base was loaded from (a snapshot path for a Hub model; `get_peft_model` overrides a configured value): name
    the base's Hub id when it is known."""
    path = adapter_dir / "adapter_config.json"
    config = json.loads(path.read_text())
    auto_class = "AutoModelForCausalLM" if "AutoModelForCausalLM" in family.auto_map else "AutoModel"
    config["auto_mapping"] = {"base_model_class": auto_class, "parent_library": "transformers"}
    if base_model:
        config["base_model_name_or_path"] = base_model
        config["revision"] = revision
    path.write_text(json.dumps(config, indent=2, sort_keys=True))
    # Trainer.save_model also pickles the training arguments next to the adapter: not something to share
    (adapter_dir / "training_args.bin").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> dict:
    parser = HfArgumentParser((ModelArguments, DataArguments, TrainingArguments))
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) == 1 and argv[0].endswith(".json"):
        model_args, data_args, training_args = parser.parse_json_file(json_file=os.path.abspath(argv[0]))
    else:
        model_args, data_args, training_args = parser.parse_args_into_dataclasses(args=argv)
    # the collators need the raw columns, and every training batch carries `labels`
    training_args.remove_unused_columns = False
    if training_args.label_names is None:
        training_args.label_names = ["labels"]
    if not torch.cuda.is_available():
        training_args.dataloader_pin_memory = False
    # The output folder gets the result only; Trainer's checkpoints (and logs) go to a subfolder of it.
    output_dir = Path(training_args.output_dir)
    checkpoints_dir = output_dir / CHECKPOINTS_SUBDIR
    training_args.output_dir = str(checkpoints_dir)

    logging.basicConfig(
        format="%(asctime)s - %(levelname)s - %(name)s - %(message)s",
        datefmt="%m/%d/%Y %H:%M:%S",
        handlers=[logging.StreamHandler(sys.stdout)],
    )
    log_level = training_args.get_process_log_level()
    logger.setLevel(log_level)
    datasets.utils.logging.set_verbosity(log_level)
    transformers.utils.logging.set_verbosity(log_level)
    logger.info(f"Training/evaluation parameters {training_args}")
    set_seed(training_args.seed)

    # ---- the checkpoint -------------------------------------------------------------------------------------
    model, tokenizer, family, model_dir = load_model_and_tokenizer(
        model_args.model_name_or_path, model_args.model_revision
    )
    model.train()
    base_experiment = read_experiment_file(model_dir) or {}
    base_model = base_model_hub_id(model_args, base_experiment)
    if base_model is None:
        logger.warning(
            f"{model_args.model_name_or_path} is a local folder with no known Hub id: the card has no base_model and "
            "an adapter records the local path. Pass --base_model_id ORG/NAME if the base is on the Hub."
        )

    # ---- the data -------------------------------------------------------------------------------------------
    raw = load_raw_datasets(data_args)
    columns = raw["train"].column_names
    if data_args.prompt_column in columns and data_args.target_column in columns:
        mode = "seq2seq"
    elif data_args.text_column in columns:
        mode = "lm"
    else:
        raise ValueError(
            f"The data has columns {columns}: give {data_args.prompt_column!r} and {data_args.target_column!r} "
            f"(prompt -> target) or {data_args.text_column!r} (language modelling), or name yours with "
            "--prompt_column/--target_column/--text_column."
        )
    if data_args.max_train_samples is not None:
        raw["train"] = raw["train"].select(range(min(data_args.max_train_samples, len(raw["train"]))))
    if "validation" in raw and data_args.max_eval_samples is not None:
        raw["validation"] = raw["validation"].select(
            range(min(data_args.max_eval_samples, len(raw["validation"])))
        )

    def tokenize(batch):
        def ids(texts):
            return tokenizer([str(t) for t in texts], add_special_tokens=False)["input_ids"]

        if mode == "seq2seq":
            return {
                "prompt_ids": ids(batch[data_args.prompt_column]),
                "target_ids": ids(batch[data_args.target_column]),
            }
        return {"input_ids": ids(batch[data_args.text_column])}

    with training_args.main_process_first(desc="tokenizing"):
        tokenized = raw.map(tokenize, batched=True, remove_columns=columns, desc="Tokenizing")
    unk = tokenizer.unk_token_id
    if unk is not None:
        id_columns = ["prompt_ids", "target_ids"] if mode == "seq2seq" else ["input_ids"]
        unknown = sum(row.count(unk) for column in id_columns for row in tokenized["train"][column])
        if unknown:
            logger.warning(
                f"{unknown} tokens of the training data are outside the model's vocabulary ([UNK])."
            )

    base_data = base_experiment.get("data") or {}
    longest = lambda column: max(len(row) for split in tokenized.values() for row in split[column])  # noqa: E731
    if mode == "seq2seq":
        input_block_size = (
            data_args.input_block_size or base_data.get("input_block_size") or longest("prompt_ids") + 2
        )
        block_size = data_args.block_size or base_data.get("block_size") or longest("target_ids") + 1
    else:
        input_block_size = data_args.input_block_size or 0
        block_size = data_args.block_size or longest("input_ids") + 2
    if input_block_size + block_size > model.config.max_position_embeddings:
        raise ValueError(
            f"input_block_size={input_block_size} + block_size={block_size} exceed the model's "
            f"max_position_embeddings={model.config.max_position_embeddings}; shorten the data or set the blocks."
        )

    def collator(kind: str, extra: dict | None = None):
        cls = family.collators[kind]
        names = {f.name for f in dataclasses.fields(cls)}
        options = {
            "tokenizer": tokenizer,
            "input_block_size": input_block_size,
            "block_size": block_size,
            **(extra or {}),
        }
        return cls(**{k: v for k, v in options.items() if k in names})

    collator_options = json.loads(data_args.collator_options) if data_args.collator_options else {}
    train_collator = collator(mode, collator_options)
    eval_tasks = {}
    if "validation" in tokenized:
        eval_tasks["lm"] = EvalTask(
            "lm", tokenized["validation"], collator(mode, collator_options), kind="loss"
        )

    # ---- LoRA -----------------------------------------------------------------------------------------------
    if model_args.lora_r > 0:
        from peft import LoraConfig, get_peft_model

        targets = model_args.lora_target_modules.strip()
        target_modules = (
            targets if targets == "all-linear" else [t.strip() for t in targets.split(",") if t.strip()]
        )
        if model_args.lora_modules_to_save is None:
            # The class lists every head it can have; save those this checkpoint was built with.
            present = {name for name, _ in model.named_modules()}
            modules_to_save = [m for m in getattr(model, "peft_modules_to_save", None) or [] if m in present]
        elif model_args.lora_modules_to_save.strip().lower() == "none":
            modules_to_save = []
        else:
            modules_to_save = [m.strip() for m in model_args.lora_modules_to_save.split(",") if m.strip()]
        lora_config = LoraConfig(
            r=model_args.lora_r,
            lora_alpha=model_args.lora_alpha,
            lora_dropout=model_args.lora_dropout,
            target_modules=target_modules,
            modules_to_save=modules_to_save or None,
            task_type=None,  # our classes are not PEFT's task models; the generic PeftModel forwards everything
        )
        model = get_peft_model(model, lora_config)
        model.print_trainable_parameters()

    # ---- train ----------------------------------------------------------------------------------------------
    trainer = family.trainer_class(
        model=model,
        args=training_args,
        train_dataset=tokenized["train"],
        data_collator=train_collator,
        processing_class=tokenizer,
        eval_tasks=eval_tasks,
    )
    train_result = trainer.train(resume_from_checkpoint=training_args.resume_from_checkpoint)
    metrics = dict(train_result.metrics)
    trainer.log_metrics("train", metrics)
    if eval_tasks:
        eval_metrics = trainer.final_evaluation()  # Trainer's evaluation at the last step, not a second one
        trainer.log_metrics("eval", eval_metrics)
        metrics.update(eval_metrics)

    # ---- save -----------------------------------------------------------------------------------------------
    base_name = base_model or model_dir.resolve().name
    data_card = describe_training_data(data_args, raw)
    data_name = data_card.get("training_data") or data_card["datasets"][0]
    lora = (
        f" with LoRA (r={model_args.lora_r}, {model_args.lora_target_modules})"
        if model_args.lora_r > 0
        else ""
    )
    experiment = {
        **{k: v for k, v in base_experiment.items() if k in ("family", "model", "generation")},
        "description": f"Fine-tuned from {base_name} on {data_name}{lora} with scripts/finetune.py.",
        "family": family.name,
        "data": {
            **({"task": base_data["task"]} if base_data.get("task") else {}),
            "input_block_size": input_block_size,
            "block_size": block_size,
        },
        "training": {
            k: v
            for k, v in training_args.to_dict().items()
            if k in ("max_steps", "num_train_epochs", "learning_rate", "per_device_train_batch_size", "seed")
        },
        "card": {
            "license": model_args.license
            or (base_experiment.get("card") or {}).get("license")
            or DEFAULT_LICENSE,
            **({"base_model": base_model} if base_model else {}),
            **data_card,
        },
    }
    saved = "adapter" if model_args.lora_r > 0 and not model_args.merge_lora else "model"
    if saved == "adapter":
        trainer.save_model(str(output_dir))  # the adapter (and the tokenizer), from the main process only
        if trainer.is_world_process_zero():
            finish_adapter(output_dir, family, base_model, model_args.model_revision)
            dump_experiment(experiment, output_dir / EXPERIMENT_FILE)
            write_model_card(output_dir)  # replaces the card peft wrote (local paths, no license, no data)
    else:
        trainer.accelerator.wait_for_everyone()
        if trainer.is_world_process_zero():
            final = trainer.accelerator.unwrap_model(trainer.model)
            if model_args.lora_r > 0:
                final = final.merge_and_unload()
            final.eval()
            export_model(final, tokenizer, output_dir, family, experiment=experiment)
    trainer.accelerator.wait_for_everyone()
    # Training ended well: the checkpoints (optimizer, scheduler and RNG states) have nothing left to resume.
    if trainer.is_world_process_zero() and not model_args.keep_checkpoints:
        for checkpoint in checkpoints_dir.glob("checkpoint-*"):
            shutil.rmtree(checkpoint)
        if checkpoints_dir.is_dir() and not any(checkpoints_dir.iterdir()):
            checkpoints_dir.rmdir()

    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    summary = {
        "output_dir": str(output_dir),
        "saved": saved,
        "family": family.name,
        "global_step": trainer.state.global_step,
        "first_logged_loss": losses[0] if losses else None,
        "last_logged_loss": losses[-1] if losses else None,
        **{k: v for k, v in metrics.items() if isinstance(v, (int, float))},
    }
    if trainer.is_world_process_zero():
        with open(output_dir / "finetune_results.json", "w") as handle:
            json.dump(summary, handle, indent=2)
        print(json.dumps(summary))
    return summary


if __name__ == "__main__":
    from xlm_hf.trainer import TrainingInterrupted

    try:
        main()
    except ValueError as error:  # what to fix, in one line (as the xlm-hf CLI reports it)
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except TrainingInterrupted as interrupted:  # Ctrl-C / SIGTERM: a resumable checkpoint was saved
        print(f"interrupted: {interrupted}", file=sys.stderr)
        sys.exit(interrupted.exit_code)
    except KeyboardInterrupt:
        print("interrupted: stopped before the run finished.", file=sys.stderr)
        sys.exit(130)
