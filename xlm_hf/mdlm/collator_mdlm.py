"""MDLM collators (spec §1.4 a): the MLM layouts with the diffusion's masking probability and time fields.

Each example draws `t ~ U(0, 1)` (or antithetic `t`), moved into `[eps, 1]`; a maskable position is masked with
probability `1 - exp(-sigma(t))` (`= a t` for the log-linear schedule). Batches carry `t`, `total_noise` = sigma(t)
and `noise_rate` = sigma'(t), each of shape `(batch,)`; the model is conditioned on `total_noise`.

The noise schedule is the model's (`MDLMConfig.get_noise_schedule`: `model.noise_schedule`, `model.sigma_max` in an
experiment), never a collator option: `MDLMTrainer` gives it to every collator it trains and evaluates with. A
collator used on its own masks with the schedule of a default `MDLMConfig` until its `noise_schedule` is set.

`labels` decides the loss normalisation (the Trainer divides by `num_items_in_batch`, the count of labels != -100):
- `loss_normalization="elbo"` (default): labels hold the clean id at every *maskable* position, so the loss is
  the summed weighted cross-entropy over the masked tokens divided by the number of maskable tokens: the MDLM
  paper's NELBO per token (per-sequence sum / length when all rows have the same length, as in seq2seq slots).
- `loss_normalization="masked_mean"`: labels only at masked positions: xlm-core's mean over masked tokens.
The Trainer counts the loss only at positions that are `[MASK]` in the input either way.

Seq2seq training here is what xlm-core's (broken, unused) MDLM seq2seq collator meant to be: the MLM seq2seq
layout with MDLM masking.
"""

from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..mlm.collator_mlm import (
    MLMCollatorForInfill,
    MLMCollatorForInfillPrediction,
    MLMCollatorForLM,
    MLMCollatorForSeq2Seq,
    MLMCollatorForSeq2SeqPrediction,
    MLMCollatorForUnconditionalPrediction,
)
from ..modeling.configuration_mdlm import MDLMConfig
from ..modeling.noise_schedules import NoiseSchedule, sample_times

LOSS_NORMALIZATIONS = ("elbo", "masked_mean")


@dataclass
class _DiffusionMasking:
    """Time sampling, masking probability, batch time fields and label positions of the MDLM."""

    # Options of old experiments that the model configuration owns now: `xlm_hf.experiment` reads
    # `collator.sigma_max` as `model.sigma_max` (with a deprecation warning).
    moved_to_model: ClassVar[tuple[str, ...]] = ("noise_schedule", "sigma_max")

    antithetic: bool = field(default=False, kw_only=True)
    time_eps: float = field(default=1e-3, kw_only=True)
    loss_normalization: str = field(default="elbo", kw_only=True)

    def __post_init__(self):
        if self.loss_normalization not in LOSS_NORMALIZATIONS:
            raise ValueError(
                f"loss_normalization must be one of {LOSS_NORMALIZATIONS}, got {self.loss_normalization!r}."
            )
        if not 0 <= self.time_eps < 1:
            raise ValueError(f"time_eps must be in [0, 1), got {self.time_eps}.")
        # not a field: experiments cannot set it; MDLMTrainer replaces it with its model's
        self.noise_schedule: NoiseSchedule = MDLMConfig().get_noise_schedule()

    def _sample_t(self, batch_size: int, generator: torch.Generator | None) -> torch.Tensor:
        return sample_times(batch_size, antithetic=self.antithetic, eps=self.time_eps, generator=generator)

    def _mask_probability(self, t: torch.Tensor) -> torch.Tensor:
        return self.noise_schedule.mask_probability(t)

    def _time_fields(self, t: torch.Tensor) -> dict[str, torch.Tensor]:
        schedule = self.noise_schedule
        return {"t": t, "total_noise": schedule.sigma(t), "noise_rate": schedule.rate(t)}

    def _label_positions(self, masked: torch.Tensor, maskable: torch.Tensor) -> torch.Tensor:
        return maskable if self.loss_normalization == "elbo" else masked


@dataclass
class MDLMCollatorForLM(_DiffusionMasking, MLMCollatorForLM):
    """Pretraining: `tokens [EOS]` right-padded to `block_size` (xlm-core's MDLM defaults: no `[BOS]`, EOS,
    `loss_on_padding`)."""

    def __post_init__(self):
        _DiffusionMasking.__post_init__(self)


@dataclass
class MDLMCollatorForSeq2Seq(_DiffusionMasking, MLMCollatorForSeq2Seq):
    """Seq2seq training: `prompt [BOS] slot`, masking only inside the fixed-width target slot (the answer left- or
    right-aligned in it: `target_alignment`, as for the MLM)."""

    def __post_init__(self):
        _DiffusionMasking.__post_init__(self)
        MLMCollatorForSeq2Seq.__post_init__(self)


@dataclass
class MDLMCollatorForInfill(_DiffusionMasking, MLMCollatorForInfill):
    """Infilling training: only positions that are `[MASK]` in the prompt may be masked."""

    def __post_init__(self):
        _DiffusionMasking.__post_init__(self)


class MDLMCollatorForSeq2SeqPrediction(MLMCollatorForSeq2SeqPrediction):
    """`prompt [BOS]` left-padded to `input_block_size`; `target [EOS]` right-padded to `block_size` (predictions of
    a right-aligned model are read back in this layout)."""


class MDLMCollatorForInfillPrediction(MLMCollatorForInfillPrediction):
    """The prompt with its `[MASK]`s and the solution, both left-padded to `block_size`."""


class MDLMCollatorForUnconditionalPrediction(MLMCollatorForUnconditionalPrediction):
    """No prompt: all-`[MASK]` canvases of `block_size` tokens (after `[BOS]` when the model uses one)."""


__all__ = [
    "MDLMCollatorForLM",
    "MDLMCollatorForSeq2Seq",
    "MDLMCollatorForSeq2SeqPrediction",
    "MDLMCollatorForInfill",
    "MDLMCollatorForInfillPrediction",
    "MDLMCollatorForUnconditionalPrediction",
    "LOSS_NORMALIZATIONS",
]
