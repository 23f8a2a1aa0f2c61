"""Configuration of the masked diffusion language model (MDLM, arXiv 2406.07524)."""

from .configuration_backbone import XLMBackboneConfig, check_bool, check_number, resolve_prompt_layout
from .noise_schedules import NOISE_SCHEDULES, NoiseSchedule, build_noise_schedule


class MDLMConfig(XLMBackboneConfig):
    r"""
    Configuration of [`MDLMForMaskedDiffusionLM`]: a bidirectional rotary transformer, by default modulated by the
    total noise sigma(t) through DiT-style adaLN, with a zero-initialised output layer. All arguments are those of
    [`XLMBackboneConfig`] plus:

    Args:
        time_conditioning (`bool`): Whether blocks are modulated by sigma(t) (default `True`, as in xlm-core's MDLM).
            Without it the model ignores time, and the sampler may reuse logits across steps that change nothing
            (the "cache trick").
        noise_schedule (`str`): Name of the noise schedule in `noise_schedules.py` (`"loglinear"`).
        sigma_max (`float`): Total noise at t = 1 of the log-linear schedule.

            The configuration owns the schedule: the loss, the sampler and the training collators all take it from
            here (`get_noise_schedule`), so it is set once, as `model.sigma_max` in an experiment.
        zero_init_output (`bool`): Whether the output layer starts at zero (uniform predictions), as in DiT/MDLM.
            Ignored when the head is tied to the embeddings.
        loss_weight_cap (`float`, *optional*): Largest weight of a masked token in the training loss. The NELBO
            weights each by sigma'(t) / (exp(sigma(t)) - 1), 1/t for the log-linear schedule, so the tokens of rows
            drawn at small t dominate it. `1.0` weights every masked token equally (the MLM's objective with this
            model's noise); `None` (default) keeps the NELBO's weights, as xlm-core and the MDLM paper do. Held-out
            perplexity (`xlm_hf.metrics.text_scoring`) always uses the NELBO's weights.
        prompt_layout (`str`): The layout `generate` gives a plain tokenized prompt: `"seq2seq"`
            (`prompt [BOS] [MASK]...`), `"lm"` (`[BOS] prompt [MASK]...`) or `"none"`. The deprecated `bos_position`
            (`"after_prompt"`, `"before_prompt"`, `"none"`) is read and translated.

    Example:

    ```python
    >>> from xlm_hf.modeling.configuration_mdlm import MDLMConfig
    >>> config = MDLMConfig(vocab_size=27, hidden_size=128, num_hidden_layers=2, num_attention_heads=2)
    ```
    """

    model_type = "xlm-hf-mdlm"

    def __init__(
        self,
        time_conditioning: bool = True,
        noise_schedule: str = "loglinear",
        sigma_max: float = 10.0,
        zero_init_output: bool = True,
        prompt_layout: str | None = None,
        bos_position: str | None = None,
        loss_weight_cap: float | None = None,
        **kwargs,
    ):
        if not isinstance(noise_schedule, str) or noise_schedule not in NOISE_SCHEDULES:
            raise ValueError(
                f"Unknown noise_schedule {noise_schedule!r}; known: {', '.join(sorted(NOISE_SCHEDULES))}."
            )
        check_number("sigma_max", sigma_max, 0, inclusive=False)
        check_bool("zero_init_output", zero_init_output)
        check_number("loss_weight_cap", loss_weight_cap, 0, inclusive=False, optional=True)
        self.noise_schedule = noise_schedule
        self.sigma_max = sigma_max
        self.zero_init_output = zero_init_output
        self.loss_weight_cap = loss_weight_cap
        self.prompt_layout = resolve_prompt_layout(prompt_layout, bos_position, default="seq2seq")
        super().__init__(time_conditioning=time_conditioning, **kwargs)

    def get_noise_schedule(self) -> NoiseSchedule:
        """The noise schedule these settings name: what the training collators mask with, what the loss weights
        by and what the sampler steps through."""
        return build_noise_schedule(self.noise_schedule, sigma_max=self.sigma_max)


__all__ = ["MDLMConfig"]
