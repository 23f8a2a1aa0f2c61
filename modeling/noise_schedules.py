"""Noise schedules of the masked diffusion families: how much noise (and so which masking probability) each time has.

A schedule maps continuous time `t` in [0, 1] to the *total noise* `sigma(t)` and its rate `sigma'(t)`. Under the
absorbing ([MASK]) process a token is masked at time `t` with probability `1 - exp(-sigma(t))`, and the MDLM loss
weights a masked token's cross-entropy by `sigma'(t) / (exp(sigma(t)) - 1)`.

Add a schedule by subclassing `NoiseSchedule` and listing it in `NOISE_SCHEDULES`; configurations refer to it by
name. Hub-side file: it imports only torch.
"""

import torch


class NoiseSchedule:
    """Interface of a schedule. All methods take and return tensors (any shape), computed in float32 or wider."""

    name: str = ""

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        """Total noise sigma(t)."""
        raise NotImplementedError

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        """Noise rate sigma'(t) = d sigma / dt."""
        raise NotImplementedError

    def t_from_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        """Inverse of `sigma`."""
        raise NotImplementedError

    def mask_probability(self, t: torch.Tensor) -> torch.Tensor:
        """Probability that a token is masked at time t: 1 - exp(-sigma(t))."""
        return -torch.expm1(-self.sigma(t))

    def t_from_mask_probability(self, probability: torch.Tensor) -> torch.Tensor:
        """The time at which a token is masked with the given probability."""
        probability = probability.clamp(0.0, 1.0 - 1e-6)
        return self.t_from_sigma(-torch.log1p(-probability))

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        """MDLM's weight of a masked token's cross-entropy: sigma'(t) / (exp(sigma(t)) - 1)."""
        return self.rate(t) / torch.expm1(self.sigma(t))

    def to_dict(self) -> dict:
        raise NotImplementedError


class LogLinearNoiseSchedule(NoiseSchedule):
    r"""
    The log-linear schedule of MDLM: the masking probability grows linearly in time.

    With `a = 1 - exp(-sigma_max)`: `sigma(t) = -log(1 - a t)`, `sigma'(t) = a / (1 - a t)`, masking probability
    `1 - exp(-sigma(t)) = a t`, and the loss weight `sigma'(t) / (exp(sigma(t)) - 1) = 1 / t`. `sigma(0) = 0` and
    `sigma(1) = sigma_max`.

    Args:
        sigma_max (`float`): Total noise at t = 1 (10 gives a = 0.99995: everything is masked at t = 1 but
            `sigma` stays finite).
    """

    name = "loglinear"

    def __init__(self, sigma_max: float = 10.0):
        if not sigma_max > 0:
            raise ValueError(f"sigma_max must be positive, got {sigma_max}.")
        self.sigma_max = float(sigma_max)
        # a = 1 - exp(-sigma_max), computed without cancellation
        self.a = -torch.expm1(torch.tensor(-self.sigma_max, dtype=torch.float64)).item()

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return -torch.log1p(-self.a * t)

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        return self.a / (1 - self.a * t)

    def t_from_sigma(self, sigma: torch.Tensor) -> torch.Tensor:
        return -torch.expm1(-sigma) / self.a

    def mask_probability(self, t: torch.Tensor) -> torch.Tensor:
        return self.a * t

    def loss_weight(self, t: torch.Tensor) -> torch.Tensor:
        # sigma'(t) / (exp(sigma(t)) - 1) simplifies exactly to 1 / t; written out so t -> 0 does not give 0/0.
        return 1.0 / t

    def to_dict(self) -> dict:
        return {"name": self.name, "sigma_max": self.sigma_max}


NOISE_SCHEDULES: dict[str, type[NoiseSchedule]] = {"loglinear": LogLinearNoiseSchedule}


def build_noise_schedule(name: str, **kwargs) -> NoiseSchedule:
    if name not in NOISE_SCHEDULES:
        raise ValueError(f"Unknown noise schedule {name!r}; known: {', '.join(sorted(NOISE_SCHEDULES))}.")
    return NOISE_SCHEDULES[name](**kwargs)


def sample_times(
    batch_size: int,
    antithetic: bool = False,
    eps: float = 1e-3,
    generator: torch.Generator | None = None,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Training times, one per example: `t ~ U(0, 1)` (or antithetic: `(u/B + b/B) mod 1`), then moved into
    `[eps, 1]` by `t <- (1 - eps) t + eps` so the 1/t loss weight stays bounded."""
    u = torch.rand(batch_size, generator=generator, device=device)
    if antithetic:
        u = (u / batch_size + torch.arange(batch_size, device=u.device) / batch_size) % 1.0
    return (1 - eps) * u + eps


__all__ = [
    "NoiseSchedule",
    "LogLinearNoiseSchedule",
    "NOISE_SCHEDULES",
    "build_noise_schedule",
    "sample_times",
]
