"""Generation of the MDLM family: its ancestral sampler (default) and the `unmask` sampler of
`generation_masked.py`, with the model conditioned on the total noise sigma(t)."""

from typing import Any

import torch

from .generation_masked import MaskedDenoisingGenerationMixin, MaskedGenerationConfig
from .noise_schedules import NoiseSchedule, build_noise_schedule


class MDLMGenerationConfig(MaskedGenerationConfig):
    """[`MaskedGenerationConfig`] for the MDLM: `ancestral` (default) or `unmask` sampler."""

    _allowed_samplers = ("ancestral", "unmask")

    @staticmethod
    def _get_default_generation_params() -> dict[str, Any]:
        return {
            **MaskedGenerationConfig._get_default_generation_params(),
            "sampler": "ancestral",
            "num_steps": 32,
        }


class MDLMGenerationMixin(MaskedDenoisingGenerationMixin):
    """`generate` for [`MDLMForMaskedDiffusionLM`]: the model sees sigma(t) of the step's time (ancestral) or of
    the time whose masking probability equals the row's masked fraction (unmask)."""

    generation_config_class = MDLMGenerationConfig

    @property
    def noise_schedule(self) -> NoiseSchedule:
        return build_noise_schedule(self.config.noise_schedule, sigma_max=self.config.sigma_max)

    @property
    def _time_conditioned(self) -> bool:
        return bool(self.config.time_conditioning)

    def _mask_probability(self, t: torch.Tensor) -> torch.Tensor:
        return self.noise_schedule.mask_probability(t)

    def _time_from_masked_fraction(self, fraction: torch.Tensor) -> torch.Tensor:
        return self.noise_schedule.t_from_mask_probability(fraction).clamp(0.0, 1.0)

    def _denoising_logits(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, t: torch.Tensor
    ) -> torch.Tensor:
        sigma = self.noise_schedule.sigma(t.float())
        return self(input_ids=input_ids, attention_mask=attention_mask, noise_level=sigma).logits


__all__ = ["MDLMGenerationConfig", "MDLMGenerationMixin"]
