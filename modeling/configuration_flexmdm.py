"""Configuration of FlexMDM (arXiv 2509.01025): masked diffusion that also inserts, so lengths are not fixed."""

from .configuration_backbone import XLMBackboneConfig, check_bool, check_number
from .schedules_flexmdm import SCHEDULES, Schedule, build_schedule

GAP_HEADS = ("expectation", "distribution")


class FlexMDMConfig(XLMBackboneConfig):
    r"""
    Configuration of [`FlexMDMForDiffusionLM`]: the shared bidirectional rotary transformer, by default modulated by
    the time t through DiT-style adaLN, with two heads on every position: the clean token (at `[MASK]`s) and the
    number of tokens still missing in the gap right before it. All arguments are those of [`XLMBackboneConfig`]
    plus:

    Args:
        time_conditioning (`bool`): Whether blocks are modulated by t (default `True`, as in xlm-core's FlexMDM).
            Without it the model infers the time from the canvas (how short, how masked it is).
        insertion_schedule, unmasking_schedule (`str`): Names of the schedules in `schedules_flexmdm.py`
            (`"linear"`, `"polynomial"`, `"cosine"`, `"sine"`); both `"linear"` in xlm-core's configurations.
            The configuration owns them: the loss, the collators' noise and the sampler all read them here.
        schedule_exponent (`float`): Exponent of the `"polynomial"` schedules.
        gap_head (`str`): How the gap length is predicted: `"expectation"` (a non-negative number per gap, trained
            with the Poisson Bregman divergence; xlm-core's star setting) or `"distribution"` (logits over lengths
            `0 .. max_gap_length - 1`, trained with cross-entropy).
        max_gap_length (`int`, *optional*): Number of classes of the `"distribution"` head; defaults to
            `max_position_embeddings`.
        zero_init_output (`bool`): Whether the token head starts at zero (uniform predictions), as in DiT/MDLM.
        loss_weight_cap (`float`, *optional*): Largest weight of a loss term. The ELBO weights each term by the
            schedule's rate at t (`1 / (1 - t)` for `"linear"`), which grows without bound near t = 1: a single
            missing token at t = 0.999 then outweighs a whole batch, and clipped gradients follow those rare rows.
            Capping the weight keeps each term's minimiser (the model is conditioned on t) and bounds the variance.
            `1.0` (default) weights every term equally for the linear schedules; `None` keeps the ELBO weights
            (xlm-core).

    Example:

    ```python
    >>> from xlm_hf.modeling.configuration_flexmdm import FlexMDMConfig
    >>> config = FlexMDMConfig(vocab_size=27, hidden_size=128, num_hidden_layers=2, num_attention_heads=2)
    ```
    """

    model_type = "xlm-hf-flexmdm"

    def __init__(
        self,
        time_conditioning: bool = True,
        insertion_schedule: str = "linear",
        unmasking_schedule: str = "linear",
        schedule_exponent: float = 2.0,
        gap_head: str = "expectation",
        max_gap_length: int | None = None,
        zero_init_output: bool = True,
        loss_weight_cap: float | None = 1.0,
        **kwargs,
    ):
        for name, value in (
            ("insertion_schedule", insertion_schedule),
            ("unmasking_schedule", unmasking_schedule),
        ):
            if not isinstance(value, str) or value not in SCHEDULES:
                raise ValueError(f"Unknown {name} {value!r}; known: {', '.join(sorted(SCHEDULES))}.")
        check_number("schedule_exponent", schedule_exponent, 0, inclusive=False)
        if gap_head not in GAP_HEADS:
            raise ValueError(f"gap_head must be one of {GAP_HEADS}, got {gap_head!r}.")
        check_bool("zero_init_output", zero_init_output)
        if loss_weight_cap is not None:
            check_number("loss_weight_cap", loss_weight_cap, 0, inclusive=False)
        self.insertion_schedule = insertion_schedule
        self.unmasking_schedule = unmasking_schedule
        self.schedule_exponent = schedule_exponent
        self.gap_head = gap_head
        self.zero_init_output = zero_init_output
        self.loss_weight_cap = loss_weight_cap
        super().__init__(time_conditioning=time_conditioning, **kwargs)
        if max_gap_length is None:
            max_gap_length = self.max_position_embeddings
        if isinstance(max_gap_length, bool) or not isinstance(max_gap_length, int) or max_gap_length < 2:
            raise ValueError(f"max_gap_length must be an integer >= 2, got {max_gap_length!r}.")
        self.max_gap_length = max_gap_length

    def _schedule(self, name: str) -> Schedule:
        return build_schedule(name, **({"exponent": self.schedule_exponent} if name == "polynomial" else {}))

    def get_insertion_schedule(self) -> Schedule:
        """When each token of the data appears (as `[MASK]`): what the loss and the sampler insert by."""
        return self._schedule(self.insertion_schedule)

    def get_unmasking_schedule(self) -> Schedule:
        """When each present token becomes clean (truncated to after its insertion)."""
        return self._schedule(self.unmasking_schedule)


__all__ = ["FlexMDMConfig"]
