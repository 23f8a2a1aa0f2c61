"""Insertion and unmasking schedules of FlexMDM (arXiv 2509.01025).

FlexMDM's time runs the other way from MDLM's: `t = 0` is the empty sequence and `t = 1` the data. Each token of
the data has an *insertion time* and a later *unmasking time*; a schedule is the distribution of one of them,
given as a CDF `alpha: [0, 1] -> [0, 1]` (increasing, `alpha(0) = 0`, `alpha(1) = 1`):

- a token is present (as `[MASK]` or clean) at time t with probability `alpha_insertion(t)`;
- a present token is clean once its unmasking time, drawn from `alpha_unmasking` truncated to
  `[insertion time, 1]`, has passed.

`rate(t) = alpha'(t) / (1 - alpha(t))` is the hazard: the rate at which a token still missing (or still masked) at
time t is inserted (or unmasked). It weights the two terms of the loss, and the sampler moves a missing token in
with probability `(alpha(s) - alpha(t)) / (1 - alpha(t))` over a step from t to s.

Add a schedule by subclassing `Schedule` and listing it in `SCHEDULES`; configurations refer to it by name.
Hub-side file: it imports only torch.
"""

import math

import torch


class Schedule:
    """A CDF `alpha(t)` on [0, 1]. Methods take and return tensors of any shape (float32 or wider)."""

    name: str = ""

    def alpha(self, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def derivative(self, t: torch.Tensor) -> torch.Tensor:
        """alpha'(t)."""
        raise NotImplementedError

    def inverse(self, a: torch.Tensor) -> torch.Tensor:
        """alpha^{-1}(a): the time by which a fraction `a` of the events has happened."""
        raise NotImplementedError

    def rate(self, t: torch.Tensor) -> torch.Tensor:
        """The hazard alpha'(t) / (1 - alpha(t)) (infinite at t = 1)."""
        return self.derivative(t) / (1 - self.alpha(t))

    def step_probability(self, t: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
        """Probability that an event not happened by time t happens by time s >= t."""
        return ((self.alpha(s) - self.alpha(t)) / (1 - self.alpha(t)).clamp(min=1e-12)).clamp(0.0, 1.0)

    def sample(self, uniform: torch.Tensor) -> torch.Tensor:
        """Event times from uniforms in [0, 1) (inverse-CDF sampling)."""
        return self.inverse(uniform)

    def sample_truncated(self, uniform: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        """Event times from uniforms, conditioned on happening after `start`."""
        low = self.alpha(start)
        return self.inverse(uniform * (1 - low) + low)


class LinearSchedule(Schedule):
    """alpha(t) = t; rate 1 / (1 - t). The schedule of every xlm-core FlexMDM configuration."""

    name = "linear"

    def alpha(self, t):
        return t

    def derivative(self, t):
        return torch.ones_like(t)

    def inverse(self, a):
        return a


class PolynomialSchedule(Schedule):
    """alpha(t) = t^exponent: events later (exponent > 1) or earlier (< 1) than the linear schedule."""

    name = "polynomial"

    def __init__(self, exponent: float = 2.0):
        if not exponent > 0:
            raise ValueError(f"The polynomial schedule's exponent must be > 0, got {exponent}.")
        self.exponent = float(exponent)

    def alpha(self, t):
        return t.clamp(min=0) ** self.exponent

    def derivative(self, t):
        return self.exponent * t.clamp(min=1e-12) ** (self.exponent - 1)

    def inverse(self, a):
        return a.clamp(min=0) ** (1 / self.exponent)


class CosineSchedule(Schedule):
    """alpha(t) = 1 - cos(pi t / 2): few events early, most near the end."""

    name = "cosine"

    def alpha(self, t):
        return 1 - torch.cos(math.pi / 2 * t)

    def derivative(self, t):
        return math.pi / 2 * torch.sin(math.pi / 2 * t)

    def inverse(self, a):
        return 2 / math.pi * torch.arccos((1 - a).clamp(-1.0, 1.0))


class SineSchedule(Schedule):
    """alpha(t) = sin(pi t / 2): most events early, few near the end."""

    name = "sine"

    def alpha(self, t):
        return torch.sin(math.pi / 2 * t)

    def derivative(self, t):
        return math.pi / 2 * torch.cos(math.pi / 2 * t)

    def inverse(self, a):
        return 2 / math.pi * torch.arcsin(a.clamp(-1.0, 1.0))


SCHEDULES: dict[str, type[Schedule]] = {
    cls.name: cls for cls in (LinearSchedule, PolynomialSchedule, CosineSchedule, SineSchedule)
}


def build_schedule(name: str, **kwargs) -> Schedule:
    if name not in SCHEDULES:
        raise ValueError(f"Unknown schedule {name!r}; known: {', '.join(sorted(SCHEDULES))}.")
    return SCHEDULES[name](**kwargs)


__all__ = [
    "Schedule",
    "LinearSchedule",
    "PolynomialSchedule",
    "CosineSchedule",
    "SineSchedule",
    "SCHEDULES",
    "build_schedule",
]
