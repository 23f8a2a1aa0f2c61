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

import numpy as np
from datasets import Dataset, DatasetDict, concatenate_datasets, load_from_disk
from transformers import PreTrainedTokenizerBase

from ..tokenization import build_number_tokenizer
from .cache import _check_writable_cache_dir, default_cache_dir
from .star import SPLIT_SIZES, STAR_VARIANTS, generate_star_splits
from .sudoku import SUDOKU_VARIANTS, sudoku_splits
from .text import TextTask, get_text_task, is_text_task


@dataclass(frozen=True)
class TaskInfo:
    name: str
    input_block_size: int
    block_size: int
    num_numbers: int  # size of the closed number vocabulary

    def build_tokenizer(self) -> PreTrainedTokenizerBase:
        return build_number_tokenizer(
            self.num_numbers, model_max_length=self.input_block_size + self.block_size
        )

    def tokenize(self, dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
        return tokenize_seq2seq(dataset, tokenizer)


TASKS: dict[str, TaskInfo] = {
    name: TaskInfo(name, spec.input_block_size, spec.block_size, spec.num_nodes)
    for name, spec in STAR_VARIANTS.items()
}
# Sudoku cells are the digits 0-9 (0 = blank in the prompt).
TASKS.update(
    {
        name: TaskInfo(name, spec.input_block_size, spec.block_size, 10)
        for name, spec in SUDOKU_VARIANTS.items()
    }
)


def get_task(name: str) -> TaskInfo | TextTask:
    """A task by name: a star-graph variant, or a text task (`text_pydoc`, `text_lm1b[:<source>]`, ...; see
    `xlm_hf/tasks/text.py`)."""
    if is_text_task(name):
        return get_text_task(name)
    if name not in TASKS:
        raise ValueError(
            f"Unknown task {name!r}. Known tasks: {', '.join(sorted(TASKS))}, and the text tasks "
            "text_pydoc, text_lm1b, text_owt, text_wikitext103, text_tinystories, text:<file, folder or dataset>."
        )
    return TASKS[name]


def resolve_task(data_args) -> TaskInfo | TextTask:
    """The experiment's task with its `data` options applied (`tokenizer`, `packing` and `cache_dir` for text)."""
    task = get_task(data_args.task)
    tokenizer, packing = getattr(data_args, "tokenizer", None), getattr(data_args, "packing", None)
    if isinstance(task, TextTask):
        return task.configured(
            tokenizer=tokenizer,
            layout=packing,
            cache_dir=data_args.cache_dir,
            block_size=data_args.block_size,
            input_block_size=data_args.input_block_size,
        )
    if tokenizer is not None or packing is not None:
        raise ValueError(
            f"data.tokenizer and data.packing are options of text tasks; {task.name} has its own."
        )
    return task


def prepare_task(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    overwrite: bool = False,
    split_sizes: dict[str, int] | None = None,
) -> Path:
    """Generates a task into `cache_dir/<name>` (atomically: a half-written folder is never left behind)."""
    task = get_task(name)
    if isinstance(task, TextTask):
        if split_sizes is not None:
            raise ValueError(
                f"Text task {name!r} has the splits of its corpus; split sizes cannot be chosen."
            )
        return task.prepare(cache_dir, overwrite=overwrite)
    target = Path(cache_dir or default_cache_dir()) / name
    if split_sizes is not None and split_sizes != SPLIT_SIZES:
        target = target.with_name(name + "-" + "-".join(f"{k}{v}" for k, v in split_sizes.items()))
    if target.exists() and not overwrite:
        return target
    if split_sizes is not None and any(
        not isinstance(size, int) or size < 1 for size in split_sizes.values()
    ):
        raise ValueError(f"Every split of task {name!r} needs at least one example, got sizes {split_sizes}.")
    _check_writable_cache_dir(target.parent)
    if name in SUDOKU_VARIANTS:
        splits = sudoku_splits(name, target.parent, split_sizes)
    else:
        splits = generate_star_splits(name, split_sizes)
    dataset = DatasetDict({split: Dataset.from_list(rows) for split, rows in splits.items()})
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
    path = prepare_task(name, cache_dir, split_sizes=split_sizes)
    try:
        splits = load_from_disk(str(path))
    except (OSError, ValueError, KeyError, IndexError) as error:  # datasets' messages do not name the folder
        raise ValueError(
            f"The prepared task in {path} cannot be read ({type(error).__name__}: {error}). It is probably "
            f"damaged: prepare it again with `xlm-hf prepare-data {name} --overwrite` (or delete the folder)."
        ) from None
    if not isinstance(splits, DatasetDict):
        raise ValueError(f"{path} holds a single dataset, not the splits of task {name!r}. Prepare it again.")
    empty = [split for split, dataset in splits.items() if len(dataset) == 0]
    if empty:
        raise ValueError(
            f"The prepared task in {path} has empty split(s) {empty}: there is nothing to train or evaluate on. "
            f"Prepare it again with `xlm-hf prepare-data {name} --overwrite`."
        )
    return splits


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


def mix_in_tasks(
    train_dataset: Dataset,
    task: "TaskInfo | TextTask",
    tokenizer: PreTrainedTokenizerBase,
    mixture: dict[str, float],
    input_block_size: int,
    block_size: int,
    cache_dir: str | os.PathLike | None = None,
    seed: int = 0,
) -> Dataset:
    """The tokenized `train_dataset` with other tasks' training examples mixed in (`data.train_mixture`).

    `mixture` maps a task to its share of the result: `{"star_medium": 0.5}` makes half of the training examples
    star_medium's (drawn without replacement while they last). They are tokenized with this task's tokenizer, so
    their tokens must be in its vocabulary and their rows must fit its blocks; the Trainer shuffles the result.
    Evaluation stays on this task's own splits.
    """
    if isinstance(task, TextTask):
        raise ValueError("data.train_mixture mixes prompt/target tasks; a text task cannot take one.")
    if not isinstance(mixture, dict) or not mixture:
        raise ValueError(
            f"data.train_mixture must map task names to shares, e.g. {{star_medium: 0.5}}; got {mixture!r}."
        )
    for name, share in mixture.items():
        if isinstance(share, bool) or not isinstance(share, (int, float)) or not 0 < share < 1:
            raise ValueError(
                f"data.train_mixture[{name!r}] must be a share between 0 and 1 (exclusive), got {share!r}."
            )
        if name == task.name:
            raise ValueError(f"data.train_mixture names the experiment's own task {name!r}.")
        if is_text_task(name):
            raise ValueError(f"data.train_mixture: {name!r} is a text task; mix in prompt/target tasks only.")
        get_task(name)  # an unknown name: the error lists the known tasks
    own_share = 1 - sum(mixture.values())
    if own_share <= 0:
        raise ValueError(
            f"data.train_mixture's shares add up to {1 - own_share:g}: they must leave a share for {task.name} itself."
        )

    rng = np.random.default_rng(seed)
    parts = [train_dataset]
    for name, share in mixture.items():
        other = tokenize_seq2seq(load_task(name, cache_dir)["train"], tokenizer)
        missing = [column for column in train_dataset.column_names if column not in other.column_names]
        if missing:
            raise ValueError(
                f"data.train_mixture: {name}'s rows have no {missing} column(s), which {task.name}'s have."
            )
        for row, (prompt_ids, target_ids) in enumerate(zip(other["prompt_ids"], other["target_ids"])):
            if tokenizer.unk_token_id in prompt_ids or tokenizer.unk_token_id in target_ids:
                raise ValueError(
                    f"data.train_mixture: {name}'s train row {row} has tokens outside {task.name}'s vocabulary "
                    f"({other[row]['prompt']!r} -> {other[row]['target']!r}); mix in a task whose tokens it knows."
                )
            # checked here, before training: the collators cut a target to its block without a word (right for
            # the experiment's own task, whose blocks are sized for it) and check a prompt only per batch
            if len(prompt_ids) > input_block_size or len(target_ids) > block_size:
                raise ValueError(
                    f"data.train_mixture: {name}'s train row {row} ({len(prompt_ids)} prompt and {len(target_ids)} "
                    f"target tokens) does not fit {task.name}'s blocks ({input_block_size} and {block_size})."
                )
        count = round(share / own_share * len(train_dataset))
        indices = draw_in_random_order(rng, len(other), count)
        parts.append(other.select(indices).select_columns(train_dataset.column_names))
    return concatenate_datasets(parts)


def draw_in_random_order(rng: np.random.Generator, size: int, count: int) -> np.ndarray:
    """`count` indices into `size` rows in a random order, every row once before any twice."""
    repeats = max(1, -(-count // size))
    return np.concatenate([rng.permutation(size) for _ in range(repeats)])[:count]


def mixture_then_task(
    mixed_dataset: Dataset, train_dataset: Dataset, mixed_examples: int, own_examples: int, seed: int = 0
) -> Dataset:
    """A curriculum's training set, in the order it is trained (`data.train_mixture_steps`): first `mixed_examples`
    drawn from `mixed_dataset` (the task with the others mixed in, from `mix_in_tasks`), then `own_examples` of the
    task's own `train_dataset`. Each part is shuffled with `seed`, every row of a part used once before any twice;
    the Trainer must read the result in order (`train_sampling_strategy="sequential"`).
    """
    if mixed_examples < 1 or own_examples < 1:
        raise ValueError(
            f"A curriculum needs examples in both parts, got {mixed_examples} mixed and {own_examples} of the task's own."
        )
    rng = np.random.default_rng(seed)
    first = mixed_dataset.select(draw_in_random_order(rng, len(mixed_dataset), mixed_examples))
    then = train_dataset.select(draw_in_random_order(rng, len(train_dataset), own_examples))
    return concatenate_datasets([first, then])


__all__ = [
    "TASKS",
    "mix_in_tasks",
    "mixture_then_task",
    "TaskInfo",
    "TextTask",
    "get_task",
    "resolve_task",
    "is_text_task",
    "prepare_task",
    "load_task",
    "tokenize_seq2seq",
    "default_cache_dir",
]
