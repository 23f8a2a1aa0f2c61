"""The family registry: one `Family` record holds everything a family contributes.

A family registers itself from its package: `xlm_hf/<name>/__init__.py` calls `register_family(Family(...))`. The
registry finds those packages itself (no list to keep up to date): `get_family(name)` imports `xlm_hf.<name>` on
first use, and `available_families()` lists every subpackage of xlm_hf that registers a family. A family shipped
in another installed package registers through the entry-point group `xlm_hf.families` (name = the family,
value = the module that registers it):

```toml
[project.entry-points."xlm_hf.families"]
flexmdm = "my_package.flexmdm"
```

Everything else reads the record: the export (auto_map, pipelines), the model card (title, paper, template,
pipeline tag), the jobs (Trainer, collators), scripts/bench.py (the cache toggle).
"""

import importlib
import importlib.metadata
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from transformers import AutoConfig, AutoModel, PreTrainedConfig, PreTrainedModel

COLLATOR_KINDS = ("lm", "seq2seq", "seq2seq_pred")
ENTRY_POINT_GROUP = "xlm_hf.families"

# Pipelines a family can ship (`modeling/pipeline_xlm.py`, copied next to the model; the entries go to
# `config.json:custom_pipelines`). The autoregressive family uses transformers' own text-generation pipeline
# through AutoModelForCausalLM, subclassed for the prompt layout.
PIPELINE_FILE = "pipeline_xlm.py"
TEXT_GENERATION_PIPELINE = {
    "impl": "pipeline_xlm.XLMTextGenerationPipeline",
    "pt": ["AutoModel"],
    "type": "text",
}
CAUSAL_TEXT_GENERATION_PIPELINE = {
    "impl": "pipeline_xlm.XLMCausalTextGenerationPipeline",
    "pt": ["AutoModelForCausalLM"],
    "type": "text",
}
INFILL_PIPELINE = {"impl": "pipeline_xlm.XLMInfillPipeline", "pt": ["AutoModel"], "type": "text"}


@dataclass
class Family:
    """The parts of one family; they are made for each other and for nothing else.

    Classes:
        `config_class`, `model_class` (Hub side, `modeling/`), `trainer_class` and `collators` (training side).
        `collators` maps `lm`, `seq2seq`, `seq2seq_pred` (and optional extra kinds such as `infill`) to classes.
    Export:
        `auto_map` maps transformers' auto classes to `module.Class` names inside the exported folder
        (`{"AutoConfig": "configuration_arlm.ARLMConfig", "AutoModel": "modeling_arlm.ARLMForCausalLM", ...}`);
        `extra_auto_classes` are registered locally besides AutoModel (e.g. AutoModelForCausalLM).
        `pipelines` are the `config.json:custom_pipelines` entries the export writes (task -> spec); a family
        with an `infill` pipeline accepts `[MASK]` in prompts.
    Model card:
        `title` opens the card ("An insertion language model (ILM)"), `paper` is linked, `card_template` names
        `model_cards/<card_template>.md` (default: the family's name, else `default.md`), `pipeline_tag` is
        the card's (and the model-index's) task.
    Benchmarks:
        `cache_option` is the generation option that switches the family's cache in scripts/bench.py, as
        `(name, value when on, value when off)`; None when the family has no cache to switch.
    """

    name: str
    config_class: type[PreTrainedConfig]
    model_class: type[PreTrainedModel]
    trainer_class: type
    collators: dict[str, type]
    auto_map: dict[str, str]
    title: str = ""
    paper: str = ""
    pipeline_tag: str = "text-generation"
    pipelines: dict[str, dict[str, Any]] = field(default_factory=dict)
    card_template: str = ""
    cache_option: tuple[str, Any, Any] | None = None
    extra_auto_classes: list = field(default_factory=list)

    def __post_init__(self):
        missing = [kind for kind in COLLATOR_KINDS if kind not in self.collators]
        if missing:
            raise ValueError(f"Family {self.name!r} lacks collators for {missing}.")
        self.title = self.title or self.name
        self.card_template = self.card_template or self.name

    @property
    def collator_kinds(self) -> list[str]:
        """The collator kinds this family offers (the three of every family first, then its extras)."""
        return [*COLLATOR_KINDS, *sorted(set(self.collators) - set(COLLATOR_KINDS))]

    @property
    def generation_config_class(self) -> type | None:
        """The family's generation config (its generation options and their defaults); None for plain ones."""
        return getattr(self.model_class, "generation_config_class", None)

    @property
    def infills(self) -> bool:
        """Whether prompts may hold `[MASK]` gaps to fill (the family ships an infill pipeline)."""
        return "infill" in self.pipelines

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


_REGISTRY: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Registers a family and its classes with transformers' auto classes (local registration wins over
    remote code, so in-process loading uses the installed classes)."""
    _REGISTRY[family.name] = family
    AutoConfig.register(family.config_class.model_type, family.config_class, exist_ok=True)
    for auto_class in [AutoModel, *family.extra_auto_classes]:
        auto_class.register(family.config_class, family.model_class, exist_ok=True)
    return family


def _registers_a_family(init_file: Path) -> bool:
    """Whether a package's `__init__.py` registers a family (read, not imported: `xlm_hf.metrics` and
    `xlm_hf.tasks` import heavy libraries that a look at the registry should not pay for)."""
    try:
        return "register_family(" in init_file.read_text(encoding="utf-8")
    except OSError:
        return False


def _family_modules() -> dict[str, str]:
    """name -> module that registers it: the subpackages of xlm_hf that call `register_family`, then the
    entry points of group `xlm_hf.families` (an installed package's own families)."""
    package_dir = Path(__file__).parent
    modules = {
        info.name: f"{__package__}.{info.name}"
        for info in pkgutil.iter_modules([str(package_dir)])
        if info.ispkg and _registers_a_family(package_dir / info.name / "__init__.py")
    }
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        modules.setdefault(entry_point.name, entry_point.module)
    return modules


def family_names() -> list[str]:
    """The names of every family that can be asked for (registered or discoverable), without importing any."""
    return sorted(set(_REGISTRY) | set(_family_modules()))


def get_family(name: str) -> Family:
    """The registered family `name`, importing the package that registers it on first use."""
    if not isinstance(name, str) or name not in _REGISTRY:
        modules = _family_modules()
        if not isinstance(name, str) or name not in modules:
            raise ValueError(f"Unknown family {name!r}. Known families: {', '.join(family_names())}.")
        importlib.import_module(modules[name])
        if name not in _REGISTRY:
            raise ValueError(
                f"Family {name!r} is not available ({modules[name]} registers no family of that name)."
            )
    return _REGISTRY[name]


def family_for_model_type(model_type: str) -> Family:
    """The family whose config has this `model_type` (e.g. `xlm-hf-arlm`)."""
    for name in family_names():
        try:
            family = get_family(name)
        except ValueError:
            continue
        if family.config_class.model_type == model_type:
            return family
    raise ValueError(f"No xlm_hf family has model_type {model_type!r}; is this an xlm_hf checkpoint?")


def available_families() -> list[str]:
    """The families that load here (each registered with transformers' auto classes as a side effect)."""
    names = []
    for name in family_names():
        try:
            get_family(name)
            names.append(name)
        except ValueError:
            pass
    return names


__all__ = [
    "CAUSAL_TEXT_GENERATION_PIPELINE",
    "COLLATOR_KINDS",
    "ENTRY_POINT_GROUP",
    "Family",
    "INFILL_PIPELINE",
    "PIPELINE_FILE",
    "TEXT_GENERATION_PIPELINE",
    "available_families",
    "family_for_model_type",
    "family_names",
    "get_family",
    "register_family",
]
