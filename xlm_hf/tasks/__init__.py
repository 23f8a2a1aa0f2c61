"""Tasks: datasets with a `prompt` and a `target` text column, a tokenizer, and the block sizes they need.

A task is prepared once (generated or downloaded, then saved with `datasets.save_to_disk`) into a cache folder
outside the repository: `$XLM_HF_DATA_DIR`, or `~/.cache/xlm_hf/data` by default. Loading a prepared task
never touches the network.
"""

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from datasets import Dataset, DatasetDict, load_from_disk
from transformers import PreTrainedTokenizerBase

from ..tokenization import build_number_tokenizer
from .star import SPLIT_SIZES, STAR_VARIANTS, generate_star_splits


def default_cache_dir() -> Path:
    return Path(os.environ.get("XLM_HF_DATA_DIR", Path.home() / ".cache" / "xlm_hf" / "data"))


@dataclass(frozen=True)
class TaskInfo:
    name: str
    input_block_size: int
    block_size: int
    num_numbers: int  # size of the closed number vocabulary

    def build_tokenizer(self) -> PreTrainedTokenizerBase:
        return build_number_tokenizer(self.num_numbers, model_max_length=self.input_block_size + self.block_size)


TASKS: dict[str, TaskInfo] = {
    name: TaskInfo(name, spec.input_block_size, spec.block_size, spec.num_nodes) for name, spec in STAR_VARIANTS.items()
}


def get_task(name: str) -> TaskInfo:
    if name not in TASKS:
        raise ValueError(f"Unknown task {name!r}. Known tasks: {', '.join(sorted(TASKS))}.")
    return TASKS[name]


def prepare_task(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    split_sizes: dict[str, int] | None = None,
) -> Path:
    """Generates a task into `cache_dir/<name>` (atomically: a half-written folder is never left behind)."""
    get_task(name)
    target = Path(cache_dir or default_cache_dir()) / name
    if split_sizes is not None and split_sizes != SPLIT_SIZES:
        target = target.with_name(name + "-" + "-".join(f"{k}{v}" for k, v in split_sizes.items()))
    if target.exists() and not overwrite:
        return target
    splits = generate_star_splits(name, split_sizes)
    dataset = DatasetDict({split: Dataset.from_list(rows) for split, rows in splits.items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = tempfile.mkdtemp(dir=target.parent, prefix=f".{name}-")
    try:
        dataset.save_to_disk(scratch)
        if target.exists():
            shutil.rmtree(target)
        os.replace(scratch, target)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return target


def load_task(
    name: str, cache_dir: str | os.PathLike | None = None, split_sizes: dict[str, int] | None = None
) -> DatasetDict:
    """The task's splits, generated first if they are not in the cache yet."""
    return load_from_disk(str(prepare_task(name, cache_dir, split_sizes=split_sizes)))


def tokenize_seq2seq(dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
    """Adds `prompt_ids` and `target_ids` (token-id lists, no special tokens) for the collators."""
    if len(dataset) == 0:
        raise ValueError("The dataset is empty: there is nothing to train or evaluate on.")
    for column in ("prompt", "target"):
        if column not in dataset.column_names:
            raise ValueError(f"The dataset needs a {column!r} column; it has {dataset.column_names}.")

    def encode(batch):
        prompts = tokenizer(batch["prompt"], add_special_tokens=False)["input_ids"]
        targets = tokenizer(batch["target"], add_special_tokens=False)["input_ids"]
        return {"prompt_ids": prompts, "target_ids": targets}

    return dataset.map(encode, batched=True, desc="Tokenizing")


__all__ = ["TASKS", "TaskInfo", "get_task", "prepare_task", "load_task", "tokenize_seq2seq", "default_cache_dir"]
