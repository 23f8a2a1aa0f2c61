"""MDLM loss and prediction: the weighted masked cross-entropy of the diffusion ELBO, and the ancestral sampler
(or the model's configured sampler) for scoring."""

from typing import Any

import torch
from torch import nn

from ..mlm.trainer_mlm import masked_predict_targets
from ..trainer import XLMTrainer


class MDLMTrainer(XLMTrainer):
    """The MDLM objective (spec §1.4 c): each masked token's cross-entropy weighted by
    `sigma'(t) / (exp(sigma(t)) - 1)` (= 1/t for the log-linear schedule), summed over the batch and divided by
    `num_items_in_batch`.

    What `num_items_in_batch` counts is the collator's `labels`, and so its `loss_normalization`: `"elbo"`
    (default; maskable tokens: the paper's NELBO per token) or `"masked_mean"` (masked tokens: xlm-core's
    normalisation). The model is conditioned on the batch's `total_noise` = sigma(t).
    """

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        labels = inputs["labels"]
        input_ids = inputs["input_ids"]
        sigma, rate = inputs["total_noise"].float(), inputs["noise_rate"].float()
        config = getattr(model, "config", None) or self.accelerator.unwrap_model(model).config
        self._check_schedule(inputs, config)
        outputs = model(input_ids=input_ids, attention_mask=inputs["attention_mask"], noise_level=sigma)
        logits = outputs.logits.float()
        masked_labels = labels.masked_fill(input_ids.ne(config.mask_token_id), -100)
        token_loss = nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]),
            masked_labels.reshape(-1),
            ignore_index=-100,
            reduction="none",
        ).view_as(labels)
        weight = rate / torch.expm1(sigma)  # sigma'(t) / (e^sigma(t) - 1)
        loss_sum = (token_loss * weight[:, None]).sum()
        loss = self.normalize_loss(loss_sum, labels.ne(-100).sum(), num_items_in_batch)
        return (loss, outputs) if return_outputs else loss

    @staticmethod
    def _check_schedule(inputs: dict[str, Any], config) -> None:
        """The collator and the model must use the same noise schedule (e.g. the same sigma_max)."""
        from ..modeling.noise_schedules import build_noise_schedule

        schedule = build_noise_schedule(config.noise_schedule, sigma_max=config.sigma_max)
        expected = schedule.sigma(inputs["t"].double())
        if not torch.allclose(expected, inputs["total_noise"].double(), rtol=1e-4, atol=1e-6):
            raise ValueError(
                "The batch's total_noise is not the model's sigma(t): the collator and the model use different noise "
                f"schedules (model: {config.noise_schedule}, sigma_max={config.sigma_max}). Set the same "
                "collator.sigma_max / model.sigma_max."
            )

    def predict_targets(self, model, batch: dict[str, Any]) -> torch.Tensor:
        """Generates `block_size` tokens after `prompt [BOS]` (or fills an infilling batch's masks) with the
        generation settings of the experiment; laid out like `batch["target_ids"]`."""
        predictions, output = masked_predict_targets(model, batch, self.generation_kwargs)
        self.last_model_calls = int(output.model_calls.sum())  # read by scripts/bench.py
        return predictions


__all__ = ["MDLMTrainer"]
