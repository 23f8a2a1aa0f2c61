"""The family registry: which config, model, Trainer and collators make up each LM family.

A family registers itself from its package (`xlm_hf/<family>/__init__.py`); `get_family(name)` imports that
package on first use, so adding a family is adding a package and a line to `FAMILY_PACKAGES`.
"""

import importlib
from dataclasses import dataclass, field

from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

# name -> package that registers it
FAMILY_PACKAGES: dict[str, str] = {
    "arlm": "xlm_hf.arlm",
    "mlm": "xlm_hf.mlm",
    "mdlm": "xlm_hf.mdlm",
    "ilm": "xlm_hf.ilm",
}

COLLATOR_KINDS = ("lm", "seq2seq", "seq2seq_pred")


@dataclass
class Family:
    """The parts of one family; they are made for each other and for nothing else.

    `auto_map` maps transformers' auto classes to `module.Class` names inside the exported folder
    (`{"AutoConfig": "configuration_arlm.ARLMConfig", "AutoModel": "modeling_arlm.ARLMForCausalLM", ...}`).
    `collators` maps `lm`, `seq2seq`, `seq2seq_pred` (and optional extra kinds such as `infill`) to classes.
    """

    name: str
    config_class: type[PreTrainedConfig]
    model_class: type[PreTrainedModel]
    trainer_class: type
    collators: dict[str, type]
    auto_map: dict[str, str]
    pipeline_tag: str = "text-generation"
    paper: str = ""
    extra_auto_classes: list = field(default_factory=list)  # e.g. [AutoModelForCausalLM] to register locally

    def build_model(self, tokenizer, **config_options) -> PreTrainedModel:
        """A freshly initialised model of this family sized for `tokenizer` (its vocabulary and special ids)."""
        special_ids = {
            f"{name}_token_id": getattr(tokenizer, f"{name}_token_id", None)
            for name in ("pad", "bos", "eos", "mask", "cls", "sep")
        }
        config = self.config_class(vocab_size=len(tokenizer), **special_ids, **config_options)
        model = self.model_class(config)
        # Unset ids in a generation config fall back to the model config's; stating them keeps Trainer from
        # "aligning" them with the tokenizer (and warning that it did) on every run.
        for name in ("pad_token_id", "bos_token_id", "eos_token_id"):
            if getattr(model.generation_config, name, None) is None:
                setattr(model.generation_config, name, getattr(config, name))
        return model

    def __post_init__(self):
        missing = [kind for kind in COLLATOR_KINDS if kind not in self.collators]
        if missing:
            raise ValueError(f"Family {self.name!r} lacks collators for {missing}.")


_REGISTRY: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Registers a family and its classes with transformers' auto classes (local registration wins over
    remote code, so in-process loading uses the installed classes)."""
    _REGISTRY[family.name] = family
    AutoConfig.register(family.config_class.model_type, family.config_class, exist_ok=True)
    for auto_class in [AutoModel, *family.extra_auto_classes]:
        auto_class.register(family.config_class, family.model_class, exist_ok=True)
    return family


def get_family(name: str) -> Family:
    if name not in _REGISTRY:
        if name not in FAMILY_PACKAGES:
            raise ValueError(
                f"Unknown family {name!r}. Known families: {', '.join(sorted(FAMILY_PACKAGES))}."
            )
        importlib.import_module(FAMILY_PACKAGES[name])
        if name not in _REGISTRY:
            raise ValueError(f"Family {name!r} is not available yet (its package registers nothing).")
    return _REGISTRY[name]


def family_for_model_type(model_type: str) -> Family:
    """The family whose config has this `model_type` (e.g. `xlm-hf-arlm`)."""
    for name in FAMILY_PACKAGES:
        try:
            family = get_family(name)
        except ValueError:
            continue
        if family.config_class.model_type == model_type:
            return family
    raise ValueError(f"No xlm_hf family has model_type {model_type!r}; is this an xlm_hf checkpoint?")


def available_families() -> list[str]:
    names = []
    for name in FAMILY_PACKAGES:
        try:
            get_family(name)
            names.append(name)
        except ValueError:
            pass
    return names


__all__ = [
    "Family",
    "register_family",
    "get_family",
    "family_for_model_type",
    "available_families",
    "COLLATOR_KINDS",
]
