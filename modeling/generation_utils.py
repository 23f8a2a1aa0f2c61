"""What the non-autoregressive decoders (masked denoising, insertion) share: the generation-config base, loading of
`generation_config.json`, option names and their deprecated aliases, left padding, the vocabulary check, token choice
through transformers' logits processors and warpers, and the one answer to "which tokens are new".

A family's decoder subclasses [`XLMGenerationConfig`] (its fields and validation) and
[`NonAutoregressiveGenerationMixin`] (its `generate`). Every family's `generate` output carries a boolean
`new_token_mask` of the shape of `sequences`: the tokens the model generated, wherever they stand (appended after the
prompt, filled into a `[MASK]`, inserted into a gap). Pipelines, `xlm-hf generate` and the Trainers read it through
[`new_token_mask`], which also answers for autoregressive outputs (every column after the prompt).

Hub-side file: imports only torch and transformers.
"""

import copy
from typing import Any

import torch
from transformers import GenerationConfig
from transformers.generation import (
    LogitsProcessorList,
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)
from transformers.utils import logging

from .configuration_backbone import BOS_POSITION_TO_PROMPT_LAYOUT

logger = logging.get_logger(__name__)

# One vocabulary of option names across decoders: old name -> the name every decoder now uses. The old names are
# accepted (in `generate(...)`, in a config's constructor and in saved `generation_config.json` files) with a
# deprecation warning; docs/generation-options.md lists them.
DEPRECATED_OPTION_NAMES: dict[str, str] = {
    "max_steps": "num_steps",
    "return_history": "output_history",
    "suppress_token_ids": "suppress_tokens",
    "bos_position": "prompt_layout",
}
# Deprecated names whose values are spelled differently too: old value -> current value.
DEPRECATED_OPTION_VALUES: dict[str, dict[Any, Any]] = {"bos_position": BOS_POSITION_TO_PROMPT_LAYOUT}
_METADATA = ("_commit_hash", "_from_model_config", "transformers_version")


def resolve_option_aliases(options: dict[str, Any], known: set[str] | dict[str, Any]) -> dict[str, Any]:
    """`options` with every deprecated name that `known` does not define renamed to its current name (warned
    once per name). Giving both spellings of one option is an error: which one wins would be a guess."""
    resolved = dict(options)
    for old, new in DEPRECATED_OPTION_NAMES.items():
        if old not in resolved or old in known or new not in known:
            continue
        if new in resolved:
            raise ValueError(f"Got both `{old}` and `{new}`; they are one option: give only `{new}`.")
        value = resolved.pop(old)
        translated = value
        if old in DEPRECATED_OPTION_VALUES:
            translated = DEPRECATED_OPTION_VALUES[old].get(value, value)
            logger.warning_once(
                f"The generation option `{old}` is deprecated: use `{new}` ({old}={value!r} is {new}={translated!r})."
            )
        else:
            logger.warning_once(f"The generation option `{old}` is deprecated: use `{new}` (same meaning).")
        resolved[new] = translated
    return resolved


class XLMGenerationConfig(GenerationConfig):
    """Base of the non-autoregressive generation configs, as DiffusionGemma's: it keeps only the fields the
    decoder reads (`_defaults`, name -> value of a fresh config), validates them, saves only what differs from a
    fresh config, and is never built from a model config.

    Subclasses define `_defaults` and `validate`; `infill_defaults` are the options an infilling call uses unless
    the caller sets them (e.g. masked models add no tokens after the text).
    """

    _defaults: dict[str, Any] = {}
    infill_defaults: dict[str, Any] = {}

    def __init__(self, **kwargs):
        # Like DiffusionGemma's config, we deliberately do not call GenerationConfig.__init__: most of its
        # autoregressive fields (beams, caches, penalties) mean nothing here.
        kwargs = resolve_option_aliases(kwargs, self._defaults)
        for name, default in self._defaults.items():
            setattr(self, name, kwargs.pop(name, copy.deepcopy(default)))
        for name in _METADATA:
            setattr(self, name, kwargs.pop(name, None))
        if kwargs:
            raise ValueError(
                f"Unknown generation arguments for {type(self).__name__}: {sorted(kwargs)}; unknown arguments are "
                f"refused so that a typo does not go unnoticed. Known: {', '.join(self._defaults)}."
            )
        self.validate()

    def validate(self, strict: bool = False, **unused_kwargs) -> None:
        pass

    def apply_overrides(self, overrides: dict[str, Any]) -> None:
        """Sets the fields given to `generate(**overrides)` (deprecated names accepted), then validates."""
        overrides = resolve_option_aliases(overrides, self._defaults)
        unknown = sorted(key for key in overrides if key not in self._defaults)
        if unknown:
            raise ValueError(
                f"generate() got unknown arguments {unknown}; {type(self).__name__} does not know them. Known "
                f"generation arguments: {', '.join(self._defaults)}."
            )
        for key, value in overrides.items():
            setattr(self, key, value)
        self.validate()

    def to_diff_dict(self) -> dict[str, Any]:
        # Diff against this class's own fresh config, not against the autoregressive GenerationConfig.
        defaults = type(self)().to_dict()
        diff = {
            key: value
            for key, value in self.to_dict().items()
            if key == "transformers_version" or key not in defaults or value != defaults[key]
        }
        self.dict_dtype_to_str(diff)
        return diff

    @staticmethod
    def _get_default_generation_params() -> dict[str, Any]:
        return {}

    # GenerationMixin-only helpers that make no sense here.
    def get_generation_mode(self, *args, **kwargs):
        raise NotImplementedError(f"{type(self).__name__} has no autoregressive generation mode.")

    @classmethod
    def from_model_config(cls, *args, **kwargs):
        # Raising makes PreTrainedModel.__init__ fall back to `generation_config_class()` instead of copying every
        # model-config key into the generation config.
        raise NotImplementedError(f"{cls.__name__} is not built from a model config.")


class NonAutoregressiveGenerationMixin:
    """Loading and preparation shared by the non-autoregressive `generate` methods. The model class sets
    `generation_config_class` (an [`XLMGenerationConfig`] subclass)."""

    generation_config_class: type[XLMGenerationConfig] = XLMGenerationConfig

    def adjust_generation_fn(
        self,
        generation_config,
        from_auto_class,
        from_pipeline,
        pretrained_model_name_or_path,
        cache_dir=None,
        force_download=False,
        proxies=None,
        local_files_only=False,
        token=None,
        revision=None,
        subfolder="",
        trust_remote_code=None,
        **kwargs,
    ) -> None:
        """Called by `from_pretrained`: loads `generation_config.json` into the family's config class (the base
        `GenerationMixin` would load a plain `GenerationConfig` and lose our validation and defaults)."""
        del trust_remote_code
        if generation_config is not None:
            self.generation_config = self._as_family_config(generation_config)
            return
        if pretrained_model_name_or_path is None:
            return
        try:
            self.generation_config = self.generation_config_class.from_pretrained(
                pretrained_model_name_or_path,
                _from_auto=from_auto_class,
                _from_pipeline=from_pipeline,
                cache_dir=cache_dir,
                force_download=force_download,
                proxies=proxies,
                local_files_only=local_files_only,
                token=token,
                revision=revision,
                subfolder=subfolder,
            )
        except OSError:
            logger.info("No generation_config.json found; using the family's default generation config.")
            return
        except ValueError as error:
            # a file with fields this version does not know (or invalid values): keep the defaults, say so
            logger.warning(
                f"generation_config.json could not be read as {self.generation_config_class.__name__} "
                f"({error}); using the family's defaults for it."
            )
            return
        if getattr(self.generation_config, "seed", None) is not None:
            # checkpoints exported before this was fixed saved `seed: 0`
            logger.warning_once(
                f"generation_config.json sets seed={self.generation_config.seed}: every generate() call draws "
                "from a private generator seeded with it, so transformers.set_seed() does not change samples. "
                "Set model.generation_config.seed = None to draw from torch's global RNG."
            )

    def _as_family_config(self, config: GenerationConfig | None) -> XLMGenerationConfig:
        """A copy of `config` as the family's config class (another config class keeps the fields we know)."""
        if config is None:
            return self.generation_config_class()
        if isinstance(config, self.generation_config_class):
            return copy.deepcopy(config)
        known = self.generation_config_class._defaults
        fields = resolve_option_aliases(config.to_diff_dict(), known)
        return self.generation_config_class(
            **{key: value for key, value in fields.items() if key in known or key in _METADATA}
        )

    def _prepare_generation_config(
        self, generation_config: GenerationConfig | None, overrides: dict[str, Any]
    ) -> XLMGenerationConfig:
        """The config of one `generate` call: `generation_config` (or the model's) with `overrides` applied."""
        overrides = dict(overrides)
        overrides.pop("token_type_ids", None)  # some tokenizers return it; no decoder uses token types
        base = (
            generation_config if generation_config is not None else getattr(self, "generation_config", None)
        )
        config = self._as_family_config(base)
        config.apply_overrides(overrides)
        return config

    @staticmethod
    def _prepare_generator(
        seed: int | None, generator: torch.Generator | None, device: torch.device
    ) -> torch.Generator | None:
        """The caller's generator, else a private one from the config's `seed`, else None (torch's global RNG)."""
        if generator is not None:
            return generator
        if seed is not None:
            return torch.Generator(device=device).manual_seed(seed)
        return None


def pad_left(
    rows: list[list[int]] | list[torch.Tensor], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.LongTensor, torch.BoolTensor]:
    """Rows of token ids -> `(ids, mask)` of shape `(rows, longest)`, right-aligned (left padding), as a tokenizer
    with `padding_side="left"` returns them."""
    width = max((len(row) for row in rows), default=0)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.bool)
    for i, row in enumerate(rows):
        if len(row):
            ids[i, width - len(row) :] = torch.as_tensor(row, dtype=torch.long)
            mask[i, width - len(row) :] = True
    return ids.to(device), mask.to(device)


def check_vocabulary(input_ids: torch.Tensor, attention_mask: torch.Tensor | None, vocab_size: int) -> None:
    """One clear error for a token id outside `[0, vocab_size)` among the real tokens (an embedding lookup would
    fail with an index error deep in the model, or on GPU with a device-side assert)."""
    real = input_ids if attention_mask is None else input_ids[attention_mask.bool()]
    if real.numel() == 0:
        return
    low, high = int(real.min()), int(real.max())
    if low < 0 or high >= vocab_size:
        bad = low if low < 0 else high
        raise ValueError(
            f"input_ids contains token id {bad}, outside the model's vocabulary [0, {vocab_size}). Was the text "
            "tokenized with this checkpoint's tokenizer?"
        )


def build_logits_warpers(
    do_sample: bool, temperature: float | None, top_k: int | None, top_p: float | None
) -> LogitsProcessorList:
    """transformers' warpers for sampling, in the order of `GenerationMixin._get_logits_processor` (temperature,
    top-k, top-p); empty for greedy decoding, where they would not change the argmax."""
    warpers = LogitsProcessorList()
    if not do_sample:
        return warpers
    if temperature is not None and temperature != 1.0:
        warpers.append(TemperatureLogitsWarper(float(temperature)))
    if top_k is not None:
        warpers.append(TopKLogitsWarper(top_k=top_k))
    if top_p is not None and top_p < 1.0:
        warpers.append(TopPLogitsWarper(top_p=float(top_p)))
    return warpers


def choose_tokens(
    scores: torch.Tensor,
    input_ids: torch.LongTensor,
    do_sample: bool,
    warpers: LogitsProcessorList,
    generator: torch.Generator | None,
) -> torch.LongTensor:
    """One choice per row of `scores` `(N, choices)` (-inf = forbidden): the argmax, or with `do_sample` a draw
    from the softmax of the warped scores, as transformers' greedy and sampling decoders do."""
    if not do_sample:
        return scores.argmax(-1)
    probs = warpers(input_ids, scores).softmax(-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


def new_token_mask(output: Any, input_ids: torch.Tensor | None = None) -> torch.BoolTensor:
    """`(rows, width)` booleans: which tokens of `output.sequences` the model generated.

    Every non-autoregressive output carries the answer (`output.new_token_mask`); for an autoregressive output (a
    tensor or transformers' output) the new tokens are the columns after the prompt's `input_ids`."""
    mask = getattr(output, "new_token_mask", None)
    if mask is not None:
        return mask
    sequences = output.sequences if hasattr(output, "sequences") else output
    new = torch.zeros_like(sequences, dtype=torch.bool)
    new[:, 0 if input_ids is None else input_ids.shape[1] :] = True
    return new


def generated_tokens(
    output: Any, width: int, pad_id: int, input_ids: torch.Tensor | None = None
) -> torch.Tensor:
    """The generated tokens of each row, in reading order, right-padded with `pad_id` (or cut) to `width`."""
    sequences = output.sequences if hasattr(output, "sequences") else output
    new = new_token_mask(output, input_ids)
    out = torch.full((len(sequences), width), pad_id, dtype=torch.long, device=sequences.device)
    for row in range(len(sequences)):
        tokens = sequences[row][new[row]][:width]
        out[row, : len(tokens)] = tokens
    return out


__all__ = [
    "DEPRECATED_OPTION_NAMES",
    "NonAutoregressiveGenerationMixin",
    "XLMGenerationConfig",
    "build_logits_warpers",
    "check_vocabulary",
    "choose_tokens",
    "generated_tokens",
    "new_token_mask",
    "pad_left",
    "resolve_option_aliases",
]
