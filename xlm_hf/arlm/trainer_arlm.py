"""ARLM loss and prediction: next-token cross-entropy, and transformers' `generate` for scoring."""

from typing import Any

import torch

from ..modeling.generation_utils import generated_tokens
from ..trainer import XLMTrainer


class ARLMTrainer(XLMTrainer):
    """Cross-entropy of every target token given the tokens before it (spec §1.1 c): `arlm_loss`, computed by the
    model's `forward`.

    The loss is the sum over the batch's target tokens divided by `num_items_in_batch` (all target tokens of the
    accumulated, all-device batch), so k accumulated batches of B/k give the gradients of one batch of B.
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            position_ids=inputs.get("position_ids"),  # packed text rows (xlm_hf.tasks.text)
            labels=inputs["labels"],
            num_items_in_batch=num_items_in_batch,
            use_cache=False,
        )
        loss = self.scale_loss_for_devices(outputs.loss, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def predict_targets(self, model, batch: dict[str, Any]) -> torch.Tensor:
        """Generates `block_size` tokens after `prompt [BOS]`; finished rows are padded, as the targets are."""
        block_size = batch["target_ids"].shape[1]
        pad = model.config.pad_token_id
        kwargs = {"do_sample": False, **self.generation_kwargs, "max_new_tokens": block_size}
        output = model.generate(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kwargs
        )
        return generated_tokens(output, block_size, pad, batch["input_ids"])


__all__ = ["ARLMTrainer"]
