"""ARLM collators: language-model pretraining, seq2seq training and seq2seq prediction (spec §1.1).

Labels follow transformers' causal-LM convention: `labels` is aligned with `input_ids` (not shifted), the model
shifts it, and −100 marks positions without loss. Trainer then counts `num_items_in_batch` over
`labels[..., 1:]` for `ARLMForCausalLM`, which is exactly the number of predicted tokens.
"""

from dataclasses import dataclass
from typing import Any

import torch
from transformers import PreTrainedTokenizerBase

from ..collator_utils import pad_left, pad_right, require_token_id, trim_padding_columns


@dataclass
class ARLMCollatorForLM:
    """`[BOS] tokens [EOS]?`, right-padded to `block_size`; every real token after `[BOS]` is a target.

    Example (block 6, add_eos): input `[BOS a b c EOS PAD]`, labels `[-100 a b c EOS -100]`.
    """

    tokenizer: PreTrainedTokenizerBase
    block_size: int
    add_eos: bool = True

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        bos = require_token_id(self.tokenizer, "bos_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        pad = require_token_id(self.tokenizer, "pad_token")
        sequences = [[bos, *example["input_ids"], *([eos] if self.add_eos else [])] for example in examples]
        input_ids, attention_mask = pad_right(sequences, self.block_size, pad)
        labels = input_ids.masked_fill(attention_mask == 0, -100)
        labels[:, 0] = -100  # nothing predicts the first token
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@dataclass
class ARLMCollatorForSeq2Seq:
    """`prompt [BOS]` left-padded to `input_block_size`, then `target [EOS]` right-padded to `block_size`.

    By default only the target and `[EOS]` carry loss. The original also trained on the prompt tokens (and gave
    the padding position before the prompt a target) — `loss_on_prompt=True` brings the prompt loss back,
    without the padding-position quirk.
    """

    tokenizer: PreTrainedTokenizerBase
    input_block_size: int
    block_size: int
    loss_on_prompt: bool = False
    # Drop the columns that are padding in every row (same loss, less work; see `trim_padding_columns`).
    trim_padding: bool = False

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        bos = require_token_id(self.tokenizer, "bos_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        pad = require_token_id(self.tokenizer, "pad_token")
        prefix_ids, prefix_mask = pad_left(
            [[*ex["prompt_ids"], bos] for ex in examples], self.input_block_size, pad
        )
        suffix_ids, suffix_mask = pad_right(
            [[*ex["target_ids"], eos] for ex in examples], self.block_size, pad
        )
        input_ids = torch.cat([prefix_ids, suffix_ids], dim=1)
        attention_mask = torch.cat([prefix_mask, suffix_mask], dim=1)

        label_mask = torch.cat([torch.zeros_like(prefix_mask), suffix_mask], dim=1).bool()
        if self.loss_on_prompt:
            # every real prefix token except the first one of each row (nothing precedes it)
            first_real = prefix_mask.argmax(dim=1)
            prompt_mask = prefix_mask.bool().clone()
            prompt_mask[torch.arange(len(examples)), first_real] = False
            label_mask[:, : self.input_block_size] = prompt_mask
        labels = input_ids.masked_fill(~label_mask, -100)
        batch = {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
        return trim_padding_columns(batch) if self.trim_padding else batch


@dataclass
class ARLMCollatorForSeq2SeqPrediction:
    """Prompts for generation and targets for scoring.

    `input_ids` / `attention_mask`: `prompt [BOS]` left-padded to `input_block_size` (all prompts end in the same
    column). `target_ids`: `target [EOS]` right-padded with `[PAD]` to `block_size`, as generation lays it out.
    """

    tokenizer: PreTrainedTokenizerBase
    input_block_size: int
    block_size: int

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        bos = require_token_id(self.tokenizer, "bos_token")
        eos = require_token_id(self.tokenizer, "eos_token")
        pad = require_token_id(self.tokenizer, "pad_token")
        for ex in examples:
            if len(ex["prompt_ids"]) + 1 > self.input_block_size:
                raise ValueError(
                    f"A prompt of {len(ex['prompt_ids'])} tokens (+[BOS]) does not fit input_block_size="
                    f"{self.input_block_size}; raise data.input_block_size."
                )
        input_ids, attention_mask = pad_left(
            [[*ex["prompt_ids"], bos] for ex in examples], self.input_block_size, pad
        )
        batch = {"input_ids": input_ids, "attention_mask": attention_mask}
        if all("target_ids" in ex for ex in examples):
            batch["target_ids"], _ = pad_right(
                [[*ex["target_ids"], eos] for ex in examples], self.block_size, pad
            )
        return batch


__all__ = ["ARLMCollatorForLM", "ARLMCollatorForSeq2Seq", "ARLMCollatorForSeq2SeqPrediction"]
