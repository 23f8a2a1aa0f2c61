"""ILM collators: the drop process (spec §1.3 a), language-model pretraining, seq2seq training and prediction.

Training batches hold:
- `input_ids`, `attention_mask`: what is left after deleting tokens, laid out `[CLS] [BOS] kept…` (LM) or
  `[CLS] prompt [BOS] kept…` (seq2seq), padded to the longest row of the batch (positions come from the padding
  mask, so the amount of padding changes nothing but speed);
- `cls_position` `(batch,)`: column of `[CLS]`;
- `target_positions`, `target_tokens` `(batch, max_deleted)`: one entry per deleted token — the column of the
  kept token whose right-hand gap it was deleted from, and its id; -100 pads the rows. This is the sparse form
  of the original's `(batch, length, vocab)` count tensor: a gap that lost two copies of v has two entries;
- `labels` `(batch,)`: the number of deleted tokens per row. It is never -100, so transformers' Trainer counts
  `num_items_in_batch` = rows of the whole accumulated batch, and `ILMTrainer`'s loss is the mean over rows
  (the original's normalisation) exactly, also under gradient accumulation and DDP.
"""

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from ..collator_utils import batch_generator, pad_left, pad_right, require_token_id


def attribute_deletions(tokens: list[int], deleted_positions) -> tuple[list[int], list[int], list[int]]:
    """Splits `tokens` into the kept ones and the deleted ones (at `deleted_positions`), each deleted token with
    its gap: the number of kept tokens to its left, so 0 is the gap anchored by `[BOS]` and k the gap right
    after the k-th kept token.

    Example: `[a b c d e]` with positions 1 and 4 (b, e) deleted -> kept `[a c d]`, gaps `[1, 3]`, deleted `[b, e]`.
    """
    deleted_positions = set(deleted_positions)
    kept, gaps, deleted = [], [], []
    for index, token in enumerate(tokens):
        if index in deleted_positions:
            gaps.append(len(kept))
            deleted.append(token)
        else:
            kept.append(token)
    return kept, gaps, deleted


def ilm_drop(
    tokens: list[int], generator: torch.Generator | None = None
) -> tuple[list[int], list[int], list[int]]:
    """The ILM drop process: deletes `n ~ Uniform{0, …, L}` tokens at uniformly random positions of `tokens`
    (length L); returns `attribute_deletions`' `(kept, gaps, deleted)`."""
    length = len(tokens)
    num_deleted = int(torch.randint(0, length + 1, (1,), generator=generator))
    return attribute_deletions(tokens, torch.randperm(length, generator=generator)[:num_deleted].tolist())


def _targets(rows: list[tuple[list[int], list[int]]]) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, tokens) per row -> two `(batch, max_deleted)` tensors padded with -100 (width >= 1)."""
    width = max([1] + [len(positions) for positions, _ in rows])
    positions = torch.full((len(rows), width), -100, dtype=torch.long)
    tokens = torch.full((len(rows), width), -100, dtype=torch.long)
    for row, (row_positions, row_tokens) in enumerate(rows):
        if row_positions:
            positions[row, : len(row_positions)] = torch.tensor(row_positions, dtype=torch.long)
            tokens[row, : len(row_tokens)] = torch.tensor(row_tokens, dtype=torch.long)
    return positions, tokens


@dataclass
class ILMCollatorForLM:
    """Pretraining: `[CLS] [BOS] kept…` right-padded; every deleted token is a target.

    Sequences are cut to `block_size - 2` tokens *before* deleting, so `[CLS]`, `[BOS]` and every target fit the
    block (the original cut after deleting, which could push targets past the padded width).
    `input_block_size` is accepted (every ILM collator is built with the same arguments) and unused.

    Example (deleting b and e from `[a b c d e]`): `input_ids [CLS BOS a c d]`, targets `(2, b)`, `(4, e)`
    (the columns of a and d), `labels [2]`.
    """

    tokenizer: PreTrainedTokenizerBase | None = None
    block_size: int = 128
    input_block_size: int | None = None
    pad_to_block_size: bool = False
    seed: int | None = None  # per-batch generators (Trainer's seed when None): see `xlm_hf.collator_utils`

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        return self.collate([list(example["input_ids"]) for example in examples], batch_generator(self))

    def collate(self, texts: list[list[int]], generator: torch.Generator | None) -> dict[str, torch.Tensor]:
        cls, bos, pad = (require_token_id(self.tokenizer, n) for n in ("cls_token", "bos_token", "pad_token"))
        if self.block_size < 3:
            raise ValueError(
                f"block_size must leave room for [CLS], [BOS] and a token, got {self.block_size}."
            )
        sequences, targets = [], []
        for text in texts:
            kept, gaps, deleted = ilm_drop(text[: self.block_size - 2], generator)
            sequences.append([cls, bos, *kept])
            targets.append(([1 + gap for gap in gaps], deleted))  # [BOS] is column 1
        width = self.block_size if self.pad_to_block_size else max(len(s) for s in sequences)
        input_ids, attention_mask = pad_right(sequences, width, pad)
        target_positions, target_tokens = _targets(targets)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "cls_position": torch.zeros(len(texts), dtype=torch.long),
            "target_positions": target_positions,
            "target_tokens": target_tokens,
            "labels": torch.tensor([len(d) for _, d in targets], dtype=torch.long),
        }


@dataclass
class ILMCollatorForSeq2Seq:
    """Seq2seq training: `[CLS] prompt` left-padded, then `[BOS] kept(target)` right-padded; deletions only in
    the target, each attributed to the gap of the kept target token to its left (`[BOS]` if none).

    Prefixes are padded to the longest of the batch (or `input_block_size` with `pad_to_block_size`), so all of
    them end in the same column; the same for suffixes and `block_size`.

    `layout="lm"` trains on the joined text instead: `[CLS] [BOS] prompt target`, deletions anywhere in it (the
    pretraining objective on prompt + target), for models that infill text (see
    `ILMCollatorForInfillPrediction`).
    """

    tokenizer: PreTrainedTokenizerBase | None = None
    input_block_size: int = 64
    block_size: int = 64
    pad_to_block_size: bool = False
    layout: str = "seq2seq"
    seed: int | None = None  # per-batch generators (Trainer's seed when None): see `xlm_hf.collator_utils`

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        if self.layout not in ("seq2seq", "lm"):
            raise ValueError(f"layout must be 'seq2seq' or 'lm', got {self.layout!r}.")
        if self.layout == "lm":
            for example in examples:
                _check_fits(
                    list(example["prompt_ids"]),
                    list(example["target_ids"]),
                    self.input_block_size,
                    self.block_size,
                )
            joined = ILMCollatorForLM(
                tokenizer=self.tokenizer,
                block_size=self.input_block_size + self.block_size,
                pad_to_block_size=self.pad_to_block_size,
            )
            return joined.collate(
                [[*ex["prompt_ids"], *ex["target_ids"]] for ex in examples], batch_generator(self)
            )
        cls, bos, pad = (require_token_id(self.tokenizer, n) for n in ("cls_token", "bos_token", "pad_token"))
        generator = batch_generator(self)
        prefixes, suffixes, deletions = [], [], []
        for example in examples:
            prompt, target = list(example["prompt_ids"]), list(example["target_ids"])
            _check_fits(prompt, target, self.input_block_size, self.block_size)
            kept, gaps, deleted = ilm_drop(target, generator)
            prefixes.append([cls, *prompt])
            suffixes.append([bos, *kept])
            deletions.append((gaps, deleted))
        prefix_width = self.input_block_size if self.pad_to_block_size else max(len(p) for p in prefixes)
        suffix_width = self.block_size if self.pad_to_block_size else max(len(s) for s in suffixes)
        prefix_ids, prefix_mask = pad_left(prefixes, prefix_width, pad)
        suffix_ids, suffix_mask = pad_right(suffixes, suffix_width, pad)
        # [BOS] sits in column prefix_width; the k-th kept target token in column prefix_width + k.
        target_positions, target_tokens = _targets(
            [([prefix_width + g for g in gaps], d) for gaps, d in deletions]
        )
        return {
            "input_ids": torch.cat([prefix_ids, suffix_ids], dim=1),
            "attention_mask": torch.cat([prefix_mask, suffix_mask], dim=1),
            "cls_position": torch.tensor([prefix_width - len(p) for p in prefixes], dtype=torch.long),
            "target_positions": target_positions,
            "target_tokens": target_tokens,
            "labels": torch.tensor([len(d) for _, d in deletions], dtype=torch.long),
        }


@dataclass
class ILMCollatorForSeq2SeqPrediction:
    """Prompts to generate from and targets to score.

    `input_ids`/`attention_mask`: `[CLS] prompt [BOS]` left-padded to `input_block_size` (the layout
    `ILMModelForInsertionLM.generate` recognises as laid out: it inserts after `[BOS]` only);
    `cls_position`; `target_start` (tokens before the generated part: `len(prompt) + 2`); `target_ids`: the
    target right-padded with `[PAD]` to `block_size` (ILM uses no `[EOS]`).
    """

    tokenizer: PreTrainedTokenizerBase | None = None
    input_block_size: int = 64
    block_size: int = 64

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        cls, bos, pad = (require_token_id(self.tokenizer, n) for n in ("cls_token", "bos_token", "pad_token"))
        for example in examples:
            _check_fits(
                list(example["prompt_ids"]),
                list(example.get("target_ids", [])),
                self.input_block_size,
                self.block_size,
            )
        prompts = [[cls, *example["prompt_ids"], bos] for example in examples]
        input_ids, attention_mask = pad_left(prompts, self.input_block_size, pad)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "cls_position": torch.tensor([self.input_block_size - len(p) for p in prompts], dtype=torch.long),
            "target_start": torch.tensor([len(p) for p in prompts], dtype=torch.long),
        }
        if all("target_ids" in example for example in examples):
            batch["target_ids"], _ = pad_right(
                [list(ex["target_ids"]) for ex in examples], self.block_size, pad
            )
        return batch


@dataclass
class ILMCollatorForInfillPrediction:
    """Infilling prompts for a model trained with `layout="lm"`: `[CLS] [BOS] prompt target`, where runs of
    target tokens are replaced by one `[MASK]` each (every target token is masked with probability
    `mask_probability`, drawn from a generator seeded with `seed` and the example, so an example always gets
    the same gaps; at least one token is masked).

    `generate` inserts only into the masked gaps; `target_start` (the number of tokens before the target in the
    generated sequence, `len(prompt) + 2`) lets `ILMTrainer.predict_targets` cut the predicted target, which is
    compared with `target_ids` (the whole target, right-padded with `[PAD]` to `block_size`).
    """

    tokenizer: PreTrainedTokenizerBase | None = None
    input_block_size: int = 64
    block_size: int = 64
    mask_probability: float = 0.5
    seed: int = 0

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        cls, bos, pad, mask = (
            require_token_id(self.tokenizer, n) for n in ("cls_token", "bos_token", "pad_token", "mask_token")
        )
        rows = []
        for example in examples:
            prompt, target = list(example["prompt_ids"]), list(example["target_ids"])
            _check_fits(prompt, target, self.input_block_size, self.block_size)
            # the gaps depend only on the example and the seed, so every evaluation sees the same ones
            generator = torch.Generator().manual_seed(
                (self.seed * 1_000_003 + hash(tuple(prompt + target))) % 2**62
            )
            masked = torch.rand(len(target), generator=generator) < self.mask_probability
            if len(target) and not bool(masked.any()):
                masked[int(torch.randint(len(target), (1,), generator=generator))] = True
            gapped = []
            for token, is_masked in zip(target, masked.tolist()):
                if not is_masked:
                    gapped.append(token)
                elif not gapped or gapped[-1] != mask:
                    gapped.append(mask)
            rows.append([cls, bos, *prompt, *gapped])
        width = self.input_block_size + self.block_size
        input_ids, attention_mask = pad_left(rows, width, pad)
        batch = {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "cls_position": torch.tensor([width - len(r) for r in rows], dtype=torch.long),
            "target_start": torch.tensor([len(ex["prompt_ids"]) + 2 for ex in examples], dtype=torch.long),
        }
        if all("target_ids" in example for example in examples):
            batch["target_ids"], _ = pad_right(
                [list(ex["target_ids"]) for ex in examples], self.block_size, pad
            )
        return batch


def _check_fits(prompt: list[int], target: list[int], input_block_size: int, block_size: int) -> None:
    if len(prompt) + 2 > input_block_size:
        raise ValueError(
            f"A prompt of {len(prompt)} tokens does not fit input_block_size={input_block_size} with [CLS] and "
            "[BOS]; raise data.input_block_size."
        )
    if len(target) > block_size:
        raise ValueError(
            f"A target of {len(target)} tokens does not fit block_size={block_size}; raise data.block_size."
        )


__all__ = [
    "attribute_deletions",
    "ilm_drop",
    "ILMCollatorForLM",
    "ILMCollatorForSeq2Seq",
    "ILMCollatorForSeq2SeqPrediction",
    "ILMCollatorForInfillPrediction",
]
