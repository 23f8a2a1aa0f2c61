"""MLM collators (spec §1.2 a): language-model pretraining, seq2seq training and prediction, infilling, and
unconditional prediction.

Masking: every example draws its own rate `t ~ U(0, 1)` and each maskable position is replaced by `[MASK]`
independently with probability `t` (`MDLM` changes only the probability, see `xlm_hf/mdlm/collator_mdlm.py`).
`labels` holds the clean id at the positions whose loss counts and -100 elsewhere, so Trainer counts
`num_items_in_batch` from it; for the MLM those are the masked positions.

`loss_on_padding=True` (the original default) lets padding inside the block be masked and predicted, so the model
learns where a text ends (a variable-length answer in a fixed-width slot); with `False`, padding gets attention 0
and is never masked.

`target_alignment` places a seq2seq answer in its slot: `"left"` (the original layout) `target [EOS] [PAD]...`,
`"right"` `[PAD]... target [EOS]`. Right-aligned, the answer's end sits at a fixed position whatever its length
(on a star graph the goal is always the slot's second-to-last token), so a model that unmasks the most confident
position first can work backwards from it; the padding in front then carries the length (`loss_on_padding`).
Predictions are read back in the left-aligned layout of the references (`masked_predict_targets`).
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from ..collator_utils import (
    batch_generator,
    check_prompt_fits,
    check_target_alignment,
    pad_left,
    pad_right,
    pad_slots,
    require_token_id,
)


def mask_tokens(
    clean: torch.Tensor,
    maskable: torch.Tensor,
    probability: torch.Tensor,
    mask_id: int,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Replaces each `maskable` position of `clean` `(batch, length)` by `mask_id` with its row's `probability`
    `(batch,)`. Returns the noisy ids and the boolean mask of masked positions."""
    draws = torch.rand(clean.shape, generator=generator)
    masked = maskable & (draws < probability[:, None])
    return clean.masked_fill(masked, mask_id), masked


@dataclass
class _MaskingCollator:
    """What every MLM training collator shares: the per-example rate, the masking, the labels.

    The MDLM collators override `_sample_t`, `_mask_probability`, `_time_fields` and `_label_positions`.
    """

    # Each batch draws from its own generator, seeded from this seed (Trainer's `seed` when None) and the batch's
    # position in training: see `xlm_hf.collator_utils`.
    seed: int | None = field(default=None, kw_only=True)

    def _sample_t(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(batch_size, generator=generator)

    def _mask_probability(self, t: torch.Tensor) -> torch.Tensor:
        return t

    def _time_fields(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"t": t}

    def _label_positions(self, masked: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
        """Where `labels` holds the clean id: for the MLM loss, the masked positions."""
        return masked

    def _noise(
        self, clean: torch.Tensor, attention_mask: torch.Tensor, maskable: torch.Tensor
    ) -> dict[str, Any]:
        mask_id = require_token_id(self.tokenizer, "mask_token")
        generator = batch_generator(self)
        t = self._sample_t(clean.shape[0], generator)
        input_ids, masked = mask_tokens(clean, maskable, self._mask_probability(t), mask_id, generator)
        labels = clean.masked_fill(~self._label_positions(masked, maskable), -100)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "labels": labels,
            **self._time_fields(t),
        }


@dataclass
class MLMCollatorForLM(_MaskingCollator):
    """Pretraining: `[BOS]? tokens [EOS]?` right-padded to `block_size` (tokens truncated to fit), every real
    position except `[BOS]` maskable (and padding too with `loss_on_padding`). Examples: `{"input_ids": [...]}`.

    Example (block 6, add_eos, t large): clean `[a b c EOS PAD PAD]` -> input `[a MASK c MASK MASK PAD]`, labels
    `[-100 b -100 EOS PAD -100]`.
    """

    tokenizer: PreTrainedTokenizerBase
    block_size: int
    input_block_size: int | None = None  # accepted for a uniform signature; unused
    add_bos: bool = False
    add_eos: bool = True
    loss_on_padding: bool = True

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = require_token_id(self.tokenizer, "pad_token")
        head = [require_token_id(self.tokenizer, "bos_token")] if self.add_bos else []
        tail = [require_token_id(self.tokenizer, "eos_token")] if self.add_eos else []
        room = self.block_size - len(head) - len(tail)
        if room <= 0:
            raise ValueError(f"block_size={self.block_size} leaves no room for tokens besides [BOS]/[EOS].")
        rows = [[*head, *list(example["input_ids"])[:room], *tail] for example in examples]
        clean, real = pad_right(rows, self.block_size, pad)
        maskable = torch.ones_like(real, dtype=torch.bool) if self.loss_on_padding else real.bool()
        if self.add_bos:
            maskable[:, 0] = False
        attention_mask = torch.ones_like(real) if self.loss_on_padding else real
        return self._noise(clean, attention_mask, maskable)


@dataclass
class MLMCollatorForSeq2Seq(_MaskingCollator):
    """Seq2seq training (xlm-core HEAD layout): `prompt [BOS]? slot`, where the slot is `target [EOS]` padded or
    truncated to exactly `block_size` (padding after the answer, or before it with `target_alignment="right"`); the
    row is right-padded to `input_block_size + block_size`. Only the slot is ever masked (prompt and `[BOS]` never
    are); with `loss_on_padding` the slot's padding is visible and maskable.
    Examples: `{"prompt_ids": [...], "target_ids": [...]}`.

    Example (block 5, target `a b`): `left` slot `[a b EOS PAD PAD]`, `right` slot `[PAD PAD a b EOS]`.
    """

    tokenizer: PreTrainedTokenizerBase
    input_block_size: int
    block_size: int
    add_bos: bool = True
    loss_on_padding: bool = True
    target_alignment: str = "left"  # "left" | "right": where the answer sits in its slot (module docstring)

    def __post_init__(self):
        check_target_alignment(self.target_alignment, self.loss_on_padding)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = require_token_id(self.tokenizer, "pad_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        head = [require_token_id(self.tokenizer, "bos_token")] if self.add_bos else []
        check_prompt_fits(examples, self.input_block_size, len(head), "input_block_size")
        slots, slot_real = pad_slots(
            [[*ex["target_ids"], eos] for ex in examples], self.block_size, pad, self.target_alignment
        )
        width = self.input_block_size + self.block_size
        clean = torch.full((len(examples), width), pad, dtype=torch.long)
        attention_mask = torch.zeros_like(clean)
        maskable = torch.zeros_like(clean, dtype=torch.bool)
        for row, example in enumerate(examples):
            prefix = torch.tensor([*example["prompt_ids"], *head], dtype=torch.long)
            n = len(prefix)
            clean[row, :n] = prefix
            clean[row, n : n + self.block_size] = slots[row]
            visible = (
                torch.ones(self.block_size, dtype=torch.long) if self.loss_on_padding else slot_real[row]
            )
            attention_mask[row, :n] = 1
            attention_mask[row, n : n + self.block_size] = visible
            maskable[row, n : n + self.block_size] = visible.bool()
        return self._noise(clean, attention_mask, maskable)


@dataclass
class MLMCollatorForSeq2SeqPrediction:
    """Prompts for generation and targets for scoring: `input_ids` = `prompt [BOS]?` left-padded to
    `input_block_size` (all prompts end in the same column); `target_ids` = `target [EOS]` right-padded with
    `[PAD]` to `block_size` (an error if longer), omitted when no example has a target.

    `target_ids` stay left-aligned whatever `target_alignment` the model was trained with; a right-aligned
    batch says so (`target_alignment="right"`) and `masked_predict_targets` moves the padding that the model
    generates before its answer behind it, so predictions and references compare position by position."""

    tokenizer: PreTrainedTokenizerBase
    input_block_size: int
    block_size: int
    add_bos: bool = True
    target_alignment: str = "left"  # the training collator's: where the model puts the answer in its slot

    def __post_init__(self):
        check_target_alignment(self.target_alignment)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = require_token_id(self.tokenizer, "pad_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        head = [require_token_id(self.tokenizer, "bos_token")] if self.add_bos else []
        check_prompt_fits(examples, self.input_block_size, len(head), "input_block_size")
        input_ids, attention_mask = pad_left(
            [[*ex["prompt_ids"], *head] for ex in examples], self.input_block_size, pad
        )
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if self.target_alignment == "right":
            batch["target_alignment"] = "right"
        if any(ex.get("target_ids") for ex in examples):
            for ex in examples:
                if len(ex["target_ids"]) + 1 > self.block_size:
                    raise ValueError(
                        f"A target of {len(ex['target_ids'])} tokens (+[EOS]) does not fit block_size={self.block_size}."
                    )
            batch["target_ids"], _ = pad_right(
                [[*ex["target_ids"], eos] for ex in examples], self.block_size, pad
            )
        return batch


@dataclass
class MLMCollatorForInfill(_MaskingCollator):
    """Infilling training (sudoku-style): the row is the solution `target_ids`; only positions where
    `prompt_ids` holds `[MASK]` may be masked (each with the example's rate). Right-padded to `block_size`; padding
    is never attended nor masked. Prompt and target must have the same length."""

    tokenizer: PreTrainedTokenizerBase
    block_size: int
    input_block_size: int | None = None  # accepted for a uniform signature; unused

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = require_token_id(self.tokenizer, "pad_token")
        mask_id = require_token_id(self.tokenizer, "mask_token")
        _check_infill_examples(examples, self.block_size)
        clean, real = pad_right([ex["target_ids"] for ex in examples], self.block_size, pad)
        holes, _ = pad_right([ex["prompt_ids"] for ex in examples], self.block_size, pad)
        return self._noise(clean, real, holes.eq(mask_id) & real.bool())


@dataclass
class MLMCollatorForInfillPrediction:
    """Infilling prediction: `input_ids` = the prompt with its `[MASK]`s, `target_ids` = the solution, both
    left-padded to `block_size` so that they align column by column with the generated canvas. `infill=True` tells
    `predict_targets` to fill the masks and add nothing."""

    tokenizer: PreTrainedTokenizerBase
    block_size: int
    input_block_size: int | None = None  # accepted for a uniform signature; unused

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        pad = require_token_id(self.tokenizer, "pad_token")
        _check_infill_examples(examples, self.block_size)
        input_ids, attention_mask = pad_left([ex["prompt_ids"] for ex in examples], self.block_size, pad)
        target_ids, _ = pad_left([ex["target_ids"] for ex in examples], self.block_size, pad)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "target_ids": target_ids,
            "infill": True,
        }


def _check_infill_examples(examples: list[dict[str, Any]], width: int) -> None:
    for example in examples:
        if len(example["prompt_ids"]) != len(example["target_ids"]):
            raise ValueError(
                "Infilling examples need a prompt (with [MASK]s) and a solution of the same length; got "
                f"{len(example['prompt_ids'])} and {len(example['target_ids'])} tokens."
            )
        if len(example["prompt_ids"]) > width:
            raise ValueError(
                f"An infilling example of {len(example['prompt_ids'])} tokens exceeds block_size={width}."
            )


@dataclass
class MLMCollatorForUnconditionalPrediction:
    """Unconditional generation: no prompt at all (`input_ids` of width 0), one row per example; `target_ids` is the
    example's `target [EOS]` right-padded to `block_size` when present, so the generation eval machinery can run
    and write the samples (agreement with a random reference is not a quality measure)."""

    tokenizer: PreTrainedTokenizerBase
    block_size: int
    input_block_size: int | None = None  # accepted for a uniform signature; unused

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        pad = require_token_id(self.tokenizer, "pad_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        batch_size = len(examples)
        targets = [[*list(ex.get("target_ids") or [])[: self.block_size - 1], eos] for ex in examples]
        target_ids, _ = pad_right(targets, self.block_size, pad)
        return {
            "input_ids": torch.zeros((batch_size, 0), dtype=torch.long),
            "attention_mask": torch.zeros((batch_size, 0), dtype=torch.long),
            "target_ids": target_ids,
            "unconditional": True,
        }


__all__ = [
    "mask_tokens",
    "MLMCollatorForLM",
    "MLMCollatorForSeq2Seq",
    "MLMCollatorForSeq2SeqPrediction",
    "MLMCollatorForInfill",
    "MLMCollatorForInfillPrediction",
    "MLMCollatorForUnconditionalPrediction",
]
