"""An exponential moving average (EMA) of the trained weights, as xlm-core keeps one (`torch_ema`, decay 0.9999).

Turned on by an experiment's `ema:` section, for any family:

```yaml
ema:
  decay: 0.999           # the weight of the past at each update
  use_num_updates: true  # warm-up: decay_n = min(decay, (1 + n) / (10 + n)) after n updates (torch_ema's rule)
```

- After every optimizer step (after a full gradient accumulation), each trainable parameter's average moves
  toward it: `average -= (1 - decay_n) * (average - parameter)`.
- Evaluations during and after training, the widget examples and the exported folder use the averaged weights
  (`ema_weights`); training itself always continues from the raw weights.
- Every checkpoint holds the average and the number of updates next to Trainer's files (`ema.safetensors`), so a
  resumed run continues the same average and ends with the weights an uninterrupted run would.

With the warm-up, the effective decay after n updates is at most (1 + n) / (10 + n): 0.994 at step 1 500, 0.999 at
step ~9 000. So at CPU budgets (a few thousand steps) `decay` 0.999 and xlm-core's 0.9999 behave the same; without
the warm-up, 0.9999 averages over ~10 000 steps and would mostly remember the initial weights.
"""

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging

logger = logging.get_logger(__name__)

EMA_FILE = "ema.safetensors"  # in each checkpoint folder
EMA_KEYS = {"decay": float, "use_num_updates": bool}


def check_ema_section(section: Any) -> None:
    """One clear error for a bad `ema:` section of an experiment (called by the experiment's validation)."""
    if not isinstance(section, dict):
        raise ValueError(f"The ema section must be a mapping such as {{decay: 0.999}}, got {section!r}.")
    unknown = sorted(set(section) - set(EMA_KEYS))
    if unknown:
        raise ValueError(
            f"Unknown key(s) {unknown} in section 'ema'. Valid keys: {', '.join(sorted(EMA_KEYS))}."
        )
    if "decay" not in section:
        raise ValueError("The ema section needs a decay (e.g. ema.decay=0.999).")
    decay = section["decay"]
    if isinstance(decay, bool) or not isinstance(decay, (int, float)) or not 0.0 <= decay < 1.0:
        raise ValueError(f"ema.decay must be a number in [0, 1), got {decay!r}.")
    if not isinstance(section.get("use_num_updates", True), bool):
        raise ValueError(f"ema.use_num_updates must be true or false, got {section['use_num_updates']!r}.")


class EMACallback(TrainerCallback):
    """Keeps the moving average of a model's trainable parameters (see the module docstring)."""

    def __init__(self, decay: float, use_num_updates: bool = True):
        check_ema_section({"decay": decay, "use_num_updates": use_num_updates})
        self.decay = float(decay)
        self.use_num_updates = use_num_updates
        self.num_updates = 0
        self.shadow: dict[str, torch.Tensor] | None = None  # parameter name -> its average
        self._backup: dict[str, torch.Tensor] | None = None  # the raw weights while the average is swapped in

    @staticmethod
    def _parameters(model: torch.nn.Module) -> dict[str, torch.nn.Parameter]:
        return {name: p for name, p in model.named_parameters() if p.requires_grad}

    def current_decay(self) -> float:
        """The decay of the next update."""
        if not self.use_num_updates:
            return self.decay
        return min(self.decay, (1 + self.num_updates) / (10 + self.num_updates))

    @torch.no_grad()
    def update(self, model: torch.nn.Module) -> None:
        parameters = self._parameters(model)
        if self.shadow is None:
            self.shadow = {name: p.detach().clone() for name, p in parameters.items()}
            return
        one_minus_decay = 1.0 - self.current_decay()
        self.num_updates += 1
        for name, p in parameters.items():
            average = self.shadow[name]
            if average.device != p.device:  # an average read from a checkpoint before the model moved
                average = self.shadow[name] = average.to(p.device)
            average.sub_(one_minus_decay * (average - p.detach()))

    # ----- Trainer events ----------------------------------------------------------------------------------------

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.shadow is None:  # a fresh run: the average starts at the initial weights
            self.update(kwargs["model"])

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.update(kwargs["model"])

    # ----- swapping the average in -------------------------------------------------------------------------------

    @contextmanager
    def swapped_in(self, model: torch.nn.Module) -> Iterator[None]:
        """The averaged weights in `model` for the duration; the raw ones are put back after (nesting is a no-op)."""
        if self.shadow is None or self._backup is not None:
            yield
            return
        parameters = self._parameters(model)
        with torch.no_grad():
            self._backup = {name: p.detach().clone() for name, p in parameters.items()}
            for name, p in parameters.items():
                p.copy_(self.shadow[name])
        try:
            yield
        finally:
            with torch.no_grad():
                for name, p in parameters.items():
                    p.copy_(self._backup[name])
            self._backup = None

    # ----- checkpoints -------------------------------------------------------------------------------------------

    def save(self, folder: str | Path) -> None:
        if self.shadow is None:
            return
        tensors = {name: t.detach().contiguous().cpu() for name, t in self.shadow.items()}
        metadata = {"num_updates": str(self.num_updates), "decay": repr(self.decay)}
        save_file(tensors, str(Path(folder) / EMA_FILE), metadata=metadata)

    def load(self, folder: str | Path) -> None:
        path = Path(folder) / EMA_FILE
        if not path.is_file():
            logger.warning(
                f"{folder} has no {EMA_FILE}: the moving average restarts from the checkpoint's weights."
            )
            self.shadow, self.num_updates = None, 0
            return
        from safetensors import safe_open

        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
        self.shadow = load_file(str(path))
        self.num_updates = int(metadata.get("num_updates", 0))


def find_ema(trainer) -> EMACallback | None:
    """The trainer's EMA callback, if it keeps one."""
    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, EMACallback):
            return callback
    return None


@contextmanager
def ema_weights(trainer) -> Iterator[None]:
    """The trainer's model holds the averaged weights for the duration (nothing changes without an EMA)."""
    ema = find_ema(trainer)
    if ema is None:
        yield
        return
    with ema.swapped_in(trainer.accelerator.unwrap_model(trainer.model)):
        yield


def save_ema_state(trainer, folder: str | Path) -> None:
    ema = find_ema(trainer)
    if ema is not None and trainer.args.should_save:
        ema.save(folder)


def load_ema_state(trainer, checkpoint: str | Path) -> None:
    ema = find_ema(trainer)
    if ema is not None:
        ema.load(checkpoint)


__all__ = [
    "EMACallback",
    "EMA_FILE",
    "check_ema_section",
    "ema_weights",
    "find_ema",
    "load_ema_state",
    "save_ema_state",
]
