"""FlexMDM collators (spec §1.5 a): language-model pretraining, seq2seq training and prediction, infilling, and
unconditional prediction.

Training rows hold the *clean* sequence, `[BOS]` before and `[EOS]` after what is to be generated, right-padded:
`[BOS] text [EOS]` (lm), `prompt [BOS] target [EOS]` (seq2seq), `[BOS] solution [EOS]` (infill). `labels` holds the
ids of the tokens to generate and -100 elsewhere (prompt, `[BOS]`, `[EOS]`, given tokens, padding): those are
fixed, never deleted nor masked. The noise itself (deleting, masking) is applied by the loss
(`xlm_hf.modeling.modeling_flexmdm.flexmdm_noise`); the collators draw its random numbers: one time per row,
stratified over the batch (`t_b = (b + u_b) / B`), and two uniforms per token (insertion and unmasking times), from
the batch's own generator (see `xlm_hf.collator_utils`).
"""

from dataclasses import dataclass, field
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from ..collator_utils import batch_generator, check_prompt_fits, pad_left, pad_right, require_token_id
from ..mlm.collator_mlm import MLMCollatorForUnconditionalPrediction
from ..modeling.modeling_flexmdm import stratified_times


@dataclass
class _FlexMDMNoise:
    """Draws the noise of a training batch: `t`, `insertion_noise`, `unmasking_noise`."""

    # Each batch draws from its own generator, seeded from this seed (Trainer's `seed` when None) and the batch's
    # position in training: see `xlm_hf.collator_utils`.
    seed: int | None = field(default=None, kw_only=True)

    def _batch(
        self, clean: torch.Tensor, real: torch.Tensor, generate: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        generator = batch_generator(self)
        rows, width = clean.shape
        t = stratified_times(rows, torch.rand(rows, generator=generator))
        return {
            "input_ids": clean,
            "attention_mask": real,
            "labels": clean.masked_fill(~generate, -100),
            "t": t,
            "insertion_noise": torch.rand((rows, width), generator=generator),
            "unmasking_noise": torch.rand((rows, width), generator=generator),
        }


@dataclass
class FlexMDMCollatorForLM(_FlexMDMNoise):
    """Pretraining: `[BOS] tokens [EOS]` right-padded to `block_size` (tokens truncated to fit); every token
    between `[BOS]` and `[EOS]` is to be generated. Examples: `{"input_ids": [...]}`.

    Example (block 6): `[BOS a b c EOS PAD]`, labels `[-100 a b c -100 -100]`.
    """

    tokenizer: PreTrainedTokenizerBase
    block_size: int
    input_block_size: int | None = None  # accepted for a uniform signature; unused

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = require_token_id(self.tokenizer, "pad_token")
        bos = require_token_id(self.tokenizer, "bos_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        room = self.block_size - 2
        if room <= 0:
            raise ValueError(
                f"block_size={self.block_size} leaves no room for tokens besides [BOS] and [EOS]."
            )
        texts = [list(example["input_ids"])[:room] for example in examples]
        clean, real = pad_right([[bos, *text, eos] for text in texts], self.block_size, pad)
        columns = torch.arange(self.block_size)[None, :]
        lengths = torch.tensor([len(text) for text in texts])[:, None]
        generate = (columns >= 1) & (columns <= lengths)
        return self._batch(clean, real, generate)


@dataclass
class FlexMDMCollatorForSeq2Seq(_FlexMDMNoise):
    """Seq2seq training: `prompt [BOS] target [EOS]` right-padded to `input_block_size + block_size` (the target
    truncated so that `[EOS]` fits); only the target is to be generated. Examples:
    `{"prompt_ids": [...], "target_ids": [...]}`."""

    tokenizer: PreTrainedTokenizerBase
    input_block_size: int
    block_size: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = require_token_id(self.tokenizer, "pad_token")
        bos = require_token_id(self.tokenizer, "bos_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        check_prompt_fits(examples, self.input_block_size, 1, "input_block_size")
        width = self.input_block_size + self.block_size
        rows, spans = [], []
        for example in examples:
            head = [*example["prompt_ids"], bos]
            target = list(example["target_ids"])[: width - len(head) - 1]
            rows.append([*head, *target, eos])
            spans.append((len(head), len(head) + len(target)))
        clean, real = pad_right(rows, width, pad)
        columns = torch.arange(width)[None, :]
        starts, ends = (torch.tensor(values)[:, None] for values in zip(*spans))
        return self._batch(clean, real, (columns >= starts) & (columns < ends))


@dataclass
class FlexMDMCollatorForSeq2SeqPrediction:
    """Prompts for generation and targets for scoring: `input_ids` = the plain prompt left-padded to
    `input_block_size` (`generate` adds `[BOS] [EOS]`); `target_ids` = `target [EOS]` right-padded with `[PAD]` to
    `block_size`, omitted when no example has a target. The prediction compared with it is what follows the first
    `[BOS]` of the generated row, `[EOS]` included, padding removed (spec §1.5 f)."""

    tokenizer: PreTrainedTokenizerBase
    input_block_size: int
    block_size: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = require_token_id(self.tokenizer, "pad_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        check_prompt_fits(examples, self.input_block_size, 0, "input_block_size")
        input_ids, attention_mask = pad_left(
            [ex["prompt_ids"] for ex in examples], self.input_block_size, pad
        )
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
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


def _check_infill_examples(examples: list[dict[str, Any]], width: int) -> None:
    for example in examples:
        if len(example["prompt_ids"]) != len(example["target_ids"]):
            raise ValueError(
                "FlexMDM infilling examples need a prompt (with [MASK] where tokens are to be generated) and a "
                f"solution of the same length; got {len(example['prompt_ids'])} and {len(example['target_ids'])} tokens."
            )
        if len(example["prompt_ids"]) + 2 > width:
            raise ValueError(
                f"An infilling example of {len(example['prompt_ids'])} tokens (+[BOS] [EOS]) exceeds block_size={width}."
            )


@dataclass
class FlexMDMCollatorForInfill(_FlexMDMNoise):
    """Infilling training: `[BOS] solution [EOS]` right-padded to `block_size`; the solution's tokens where the
    prompt holds `[MASK]` are to be generated (deleted and masked by the noise), the others are given and fixed.
    At generation each run of `[MASK]` becomes a gap whose length the model chooses."""

    tokenizer: PreTrainedTokenizerBase
    block_size: int
    input_block_size: int | None = None  # accepted for a uniform signature; unused

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        pad = require_token_id(self.tokenizer, "pad_token")
        bos = require_token_id(self.tokenizer, "bos_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        mask_id = require_token_id(self.tokenizer, "mask_token")
        _check_infill_examples(examples, self.block_size)
        clean, real = pad_right([[bos, *ex["target_ids"], eos] for ex in examples], self.block_size, pad)
        holes, _ = pad_right([[pad, *ex["prompt_ids"], pad] for ex in examples], self.block_size, pad)
        return self._batch(clean, real, holes.eq(mask_id) & real.bool())


@dataclass
class FlexMDMCollatorForInfillPrediction:
    """Infilling prediction: `input_ids` = the prompt with its `[MASK]` runs (gaps of unknown length), left-padded
    to `block_size`; `target_ids` = `solution [EOS]` right-padded to `block_size` (what follows `[BOS]`).
    `infill=True` tells `predict_targets` that the prediction is the whole text."""

    tokenizer: PreTrainedTokenizerBase
    block_size: int
    input_block_size: int | None = None  # accepted for a uniform signature; unused

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, Any]:
        pad = require_token_id(self.tokenizer, "pad_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        _check_infill_examples(examples, self.block_size)
        input_ids, attention_mask = pad_left([ex["prompt_ids"] for ex in examples], self.block_size, pad)
        target_ids, _ = pad_right([[*ex["target_ids"], eos] for ex in examples], self.block_size, pad)
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "target_ids": target_ids,
            "infill": True,
        }


class FlexMDMCollatorForUnconditionalPrediction(MLMCollatorForUnconditionalPrediction):
    """Unconditional generation: no prompt, one row per example (the layout is MLM's: `generate` starts from
    `[BOS] [EOS]` and inserts the sample)."""


__all__ = [
    "FlexMDMCollatorForLM",
    "FlexMDMCollatorForSeq2Seq",
    "FlexMDMCollatorForSeq2SeqPrediction",
    "FlexMDMCollatorForInfill",
    "FlexMDMCollatorForInfillPrediction",
    "FlexMDMCollatorForUnconditionalPrediction",
]
