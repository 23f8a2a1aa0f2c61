"""MDLM loss and prediction: the weighted masked cross-entropy of the diffusion ELBO, and the ancestral sampler
(or the model's configured sampler) for scoring."""

from typing import Any

import torch

from ..mlm.trainer_mlm import masked_predict_targets
from ..trainer import XLMTrainer
from .collator_mdlm import _DiffusionMasking


class MDLMTrainer(XLMTrainer):
    """The MDLM objective (spec §1.4 c; `mdlm_loss`, computed by the model's `forward`): each masked token's
    cross-entropy weighted by `sigma'(t) / (exp(sigma(t)) - 1)` (= 1/t for the log-linear schedule), summed over the
    batch and divided by `num_items_in_batch`.

    What `num_items_in_batch` counts is the collator's `labels`, and so its `loss_normalization`: `"elbo"`
    (default; maskable tokens: the paper's NELBO per token) or `"masked_mean"` (masked tokens: xlm-core's
    normalisation). The model is conditioned on the batch's `total_noise` = sigma(t).

    The model's configuration owns the noise schedule: the Trainer gives it to its training collator and to its
    eval tasks' collators when it is built, so their batches' sigma(t) is the model's.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        schedule = self.accelerator.unwrap_model(self.model).config.get_noise_schedule()
        for collator in (self.data_collator, *(task.collator for task in self.eval_tasks.values())):
            collator = getattr(collator, "collator", collator)  # text rows wrap the MDLM collator
            if isinstance(collator, _DiffusionMasking):
                collator.noise_schedule = schedule

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            position_ids=inputs.get("position_ids"),  # packed text rows (xlm_hf.tasks.text)
            noise_level=inputs["total_noise"].float(),
            noise_rate=inputs["noise_rate"].float(),
            labels=inputs["labels"],
            num_items_in_batch=num_items_in_batch,
        )
        loss = self.scale_loss_for_devices(outputs.loss, num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    def predict_targets(self, model, batch: dict[str, Any]) -> torch.Tensor:
        """Generates `block_size` tokens after `prompt [BOS]` (or fills an infilling batch's masks) with the
        generation settings of the experiment; laid out like `batch["target_ids"]`."""
        predictions, output = masked_predict_targets(model, batch, self.generation_kwargs)
        self.last_model_calls = int(output.model_calls.sum())  # read by scripts/bench.py
        return predictions


__all__ = ["MDLMTrainer"]
