"""Generation of the MLM family: the masked-denoising `unmask` sampler of `generation_masked.py`, without time."""

from typing import Any

import torch

from .generation_masked import MaskedDenoisingGenerationMixin, MaskedGenerationConfig


class MLMGenerationConfig(MaskedGenerationConfig):
    """[`MaskedGenerationConfig`] for the MLM: only the `unmask` sampler (an MLM has no diffusion time)."""

    _allowed_samplers = ("unmask",)

    @staticmethod
    def _get_default_generation_params() -> dict[str, Any]:
        return {**MaskedGenerationConfig._get_default_generation_params(), "sampler": "unmask"}


class MLMGenerationMixin(MaskedDenoisingGenerationMixin):
    """`generate` for [`MLMForMaskedLM`]: the model is called on the canvas alone."""

    generation_config_class = MLMGenerationConfig

    def _denoising_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        return self(input_ids=input_ids, attention_mask=attention_mask).logits


__all__ = ["MLMGenerationConfig", "MLMGenerationMixin"]
