"""Experiments: YAML files that wire a family to a task, with dotted command-line overrides.

```yaml
family: arlm                 # a registered family
data:                        # DataArguments below
  task: star_easy
  input_block_size: 28
  block_size: 14
model: {hidden_size: 128}    # the family's config arguments
collator: {}                 # the family's seq2seq collator options (e.g. loss_on_prompt)
training: {max_steps: 2000}  # any transformers.TrainingArguments field
generation: {}               # the family's generation-config fields
ema: {decay: 0.999}          # optional: evaluate and export a moving average of the weights (xlm_hf/ema.py)
eval_tasks:                  # named eval tasks, run at every evaluation
  lm: {kind: loss, split: validation}
  prediction: {kind: generate, split: validation, metrics: [exact_match, token_accuracy]}
```

An experiment is addressed by name (a file in `xlm_hf/experiments/`) or by path. Overrides look like
`training.max_steps=200 model.num_hidden_layers=2`; values are parsed as YAML. Every unknown key is an error
that names it and lists the valid ones.

An experiment may start from others: `defaults: [base/star_easy]` (a name, or a list of names, of YAML files next
to the experiment or in `xlm_hf/experiments/`) merges those files first, in order, then the experiment's own
sections over them, mapping by mapping (a value in the experiment replaces the base's; lists are replaced whole).
The built-in experiments share `base/training.yaml` and one base per task this way.
"""

import copy
import dataclasses
import enum
import inspect
import re
import types
import typing
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from transformers import GenerationConfig, TrainingArguments

from .ema import check_ema_section
from .families import get_family
from .metrics.text_eval import TEXT_EVAL_KINDS, TEXT_EVAL_OPTION_TYPES, validate_text_eval_task

EXPERIMENTS_DIR = Path(__file__).parent / "experiments"
SECTIONS = (
    "description",
    "family",
    "data",
    "model",
    "collator",
    "training",
    "generation",
    "eval_tasks",
    "card",
    "ema",
)
EVAL_TASK_KEYS = ("kind", "split", "metrics", "limit", "collator", *TEXT_EVAL_OPTION_TYPES)
EVAL_TASK_TYPES = {
    "kind": str,
    "split": str,
    "metrics": list[str],
    "limit": int | None,
    "collator": str | None,
    **TEXT_EVAL_OPTION_TYPES,  # the text kinds' options (xlm_hf/metrics/text_eval.py)
}
# Trainer fields that must be at least 1 (TrainingArguments would only fail at the first evaluation, after training)
POSITIVE_TRAINING_FIELDS = (
    "per_device_train_batch_size",
    "per_device_eval_batch_size",
    "gradient_accumulation_steps",
)
# What the model card says beyond the other sections (see xlm_hf/model_card.py).
CARD_KEYS = ("license", "datasets", "base_model", "training_data", "hub_model_id", "project_url")


@dataclass
class DataArguments:
    """Which task and how it is cut into blocks."""

    task: str = "star_easy"
    input_block_size: int | None = None  # prompt block; the task's default when None
    block_size: int | None = None  # target block; the task's default when None
    cache_dir: str | None = None  # where prepared tasks live; $XLM_HF_DATA_DIR or ~/.cache/xlm_hf/data
    train_split: str = "train"
    max_train_samples: int | None = None
    max_eval_samples: int | None = None
    tokenizer: str | None = None  # text tasks: `bpe[:<vocab size>]` or a pretrained tokenizer's path / Hub id
    packing: str | None = None  # text tasks: `blocks` (packed, as run_clm) or `pad` (one document per row)
    # prompt/target tasks: other tasks' train examples mixed in, {task: share of the training set}
    train_mixture: dict[str, float] | None = None
    # a curriculum: the mixture only for the first N optimizer steps, then the task's own examples alone
    train_mixture_steps: int | None = None


class ExperimentError(ValueError):
    """A problem in an experiment file or override, said in terms of the experiment's keys."""


def available_experiments() -> list[str]:
    return sorted(p.stem for p in EXPERIMENTS_DIR.glob("*.yaml"))


def resolve_experiment_path(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") and path.is_file():
        return path
    candidate = EXPERIMENTS_DIR / f"{name_or_path}.yaml"
    if candidate.is_file():
        return candidate
    raise ExperimentError(
        f"Unknown experiment {name_or_path!r}: it is neither a YAML file nor one of the built-in experiments: "
        f"{', '.join(available_experiments())}."
    )


class ExperimentLoader(yaml.SafeLoader):
    """YAML as people write experiments: `no`/`off` stay strings (`eval_strategy: no`), only true/false are
    booleans, and `3e-4` is a float (YAML 1.1 would read a string, a boolean and a string)."""


ExperimentLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
ExperimentLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)
ExperimentLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=ExperimentLoader)


def apply_override(experiment: dict[str, Any], override: str) -> None:
    """Applies `a.b.c=value` in place (value parsed as YAML: numbers, booleans, lists, null)."""
    if "=" not in override:
        raise ExperimentError(f"Override {override!r} must look like section.key=value.")
    dotted, raw_value = override.split("=", 1)
    keys = dotted.strip().split(".")
    if keys[0] not in SECTIONS:
        raise ExperimentError(
            f"Unknown section {keys[0]!r} in override {override!r}. Valid: {', '.join(SECTIONS)}."
        )
    node = experiment
    for key in keys[:-1]:
        if node.get(key) is None:
            node[key] = {}
        if not isinstance(node[key], dict):
            raise ExperimentError(f"Override {override!r}: {key!r} is not a section.")
        node = node[key]
    node[keys[-1]] = parse_yaml(raw_value)


def merge_sections(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` over `base`, mapping by mapping: nested mappings merge, any other value replaces the base's."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_sections(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve_default(name: str, referring_file: Path) -> Path:
    filename = name if name.endswith((".yaml", ".yml")) else f"{name}.yaml"
    for folder in (referring_file.parent, EXPERIMENTS_DIR):
        if (folder / filename).is_file():
            return (folder / filename).resolve()
    raise ExperimentError(
        f"{referring_file}: `defaults` names {name!r}, which is neither next to it nor in {EXPERIMENTS_DIR}."
    )


def read_experiment_with_defaults(path: Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """The experiment file's sections merged over those of the files its `defaults` key names (recursively)."""
    path = path.resolve()
    if path in _chain:
        cycle = " -> ".join(str(p.name) for p in (*_chain, path))
        raise ExperimentError(f"The `defaults` of {path} form a cycle: {cycle}.")
    experiment = parse_yaml(path.read_text()) or {}
    if not isinstance(experiment, dict):
        raise ExperimentError(f"{path} must hold a mapping of sections.")
    defaults = experiment.pop("defaults", [])
    if isinstance(defaults, str):
        defaults = [defaults]
    if not isinstance(defaults, list) or not all(isinstance(name, str) for name in defaults):
        raise ExperimentError(
            f"{path}: `defaults` must be a file name or a list of file names, got {defaults!r}."
        )
    merged: dict[str, Any] = {}
    for name in defaults:
        merged = merge_sections(
            merged, read_experiment_with_defaults(_resolve_default(name, path), (*_chain, path))
        )
    return merge_sections(merged, experiment)


def load_experiment(name_or_path: str, overrides: list[str] | None = None) -> dict[str, Any]:
    """Reads (with its `defaults`), overrides and validates an experiment; returns the resolved dictionary."""
    path = resolve_experiment_path(name_or_path)
    experiment = read_experiment_with_defaults(path)
    experiment.setdefault("name", path.stem)
    for override in overrides or []:
        apply_override(experiment, override)
    validate_experiment(experiment)
    return experiment


def _check_keys(section: str, given: dict[str, Any], valid: set[str]) -> None:
    unknown = sorted(set(given) - valid)
    if unknown:
        raise ExperimentError(
            f"Unknown key(s) {', '.join(repr(k) for k in unknown)} in section {section!r}. "
            f"Valid keys: {', '.join(sorted(valid))}."
        )


def _init_arguments(cls: type) -> set[str]:
    names = set()
    for klass in cls.__mro__:
        if "__init__" in vars(klass):
            params = inspect.signature(vars(klass)["__init__"]).parameters
            names |= {
                n
                for n, p in params.items()
                if n != "self" and p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)
            }
    return names


def _init_annotations(cls: type) -> dict[str, Any]:
    """Type hints of every `__init__` argument along the MRO (a subclass's hint wins)."""
    hints: dict[str, Any] = {}
    for klass in reversed(cls.__mro__):
        init_method = vars(klass).get("__init__")
        if init_method is None:
            continue
        try:
            hints.update(typing.get_type_hints(init_method))
        except (NameError, TypeError):  # hints that name modules this file does not import: not checkable
            continue
    hints.pop("return", None)
    return hints


def _dataclass_types(cls: type) -> dict[str, Any]:
    try:
        return typing.get_type_hints(cls)
    except (NameError, TypeError):  # hints that name modules this file does not import: not checkable
        return {}


def _matches_type(value: Any, annotation: Any) -> bool:
    """Whether a YAML value fits a type hint. Unknown kinds of hints accept anything (they are not ours to judge)."""
    if annotation is Any or annotation is inspect.Parameter.empty:
        return True
    if annotation is type(None) or annotation is None:
        return value is None
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        return any(_matches_type(value, option) for option in typing.get_args(annotation))
    if origin is typing.Literal:
        return value in typing.get_args(annotation)
    if origin in (list, tuple, set):
        return isinstance(value, (list, tuple))
    if origin is dict:
        return isinstance(value, dict)
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:  # YAML writes 3 for 3.0
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type) and issubclass(annotation, enum.Enum):
        return isinstance(value, annotation) or value in {member.value for member in annotation}
    if isinstance(annotation, type) and annotation in (list, tuple, dict):
        return isinstance(value, annotation) or (annotation is tuple and isinstance(value, list))
    return True


def _type_name(annotation: Any) -> str:
    if isinstance(annotation, type) and not typing.get_args(annotation):
        return annotation.__name__
    return str(annotation).replace("typing.", "").replace("NoneType", "None")


def _check_types(section: str, given: dict[str, Any], annotations: dict[str, Any]) -> None:
    """One error naming the field, the value and the type it needs, before anything is built or trained."""
    for key, value in given.items():
        annotation = annotations.get(key, Any)
        if not _matches_type(value, annotation):
            raise ExperimentError(
                f"{section}.{key} must be {_type_name(annotation)}, got {value!r} ({type(value).__name__}). "
                "Fix the value in the experiment file or in the override."
            )


def validate_experiment(experiment: dict[str, Any]) -> None:
    _check_keys("<top level>", experiment, set(SECTIONS) | {"name"})
    if "family" not in experiment:
        raise ExperimentError("The experiment names no family (e.g. `family: arlm`).")
    family = get_family(experiment["family"])
    for section in ("data", "model", "collator", "training", "generation", "eval_tasks", "card"):
        value = experiment.setdefault(section, {})
        if value is None:
            experiment[section] = {}
        elif not isinstance(value, dict):
            raise ExperimentError(f"Section {section!r} must be a mapping, got {type(value).__name__}.")

    _move_collator_options_to_model(experiment, family.collators["seq2seq"])
    _check_keys("data", experiment["data"], {f.name for f in dataclasses.fields(DataArguments)})
    _check_types("data", experiment["data"], typing.get_type_hints(DataArguments))
    model_keys = _init_arguments(family.config_class) - {"vocab_size"}
    _check_keys("model", experiment["model"], model_keys)
    _check_types("model", experiment["model"], _init_annotations(family.config_class))
    collator_class = family.collators["seq2seq"]
    collator_keys = {f.name for f in dataclasses.fields(collator_class)} - {
        "tokenizer",
        "input_block_size",
        "block_size",
    }
    _check_keys("collator", experiment["collator"], collator_keys)
    _check_types("collator", experiment["collator"], _dataclass_types(collator_class))
    _check_keys("training", experiment["training"], {f.name for f in dataclasses.fields(TrainingArguments)})
    # The declared hints: `HfArgumentParser(TrainingArguments)` (scripts/finetune.py, any HF script in the same
    # process) rewrites `Field.type` in place, e.g. `lr_scheduler_kwargs: dict | str | None` becomes `str`.
    training_types = _dataclass_types(TrainingArguments) or {
        f.name: f.type for f in dataclasses.fields(TrainingArguments)
    }
    training_types["resume_from_checkpoint"] = str | bool | None  # `true` resumes from the latest checkpoint
    _check_types("training", experiment["training"], training_types)
    for field in POSITIVE_TRAINING_FIELDS:
        value = experiment["training"].get(field)
        if value is not None and value < 1:
            raise ExperimentError(f"training.{field} must be at least 1, got {value}.")
    _check_train_mixture_steps(experiment["data"], experiment["training"])
    generation_class = getattr(family.model_class, "generation_config_class", None) or GenerationConfig
    _check_keys(
        "generation", experiment["generation"], set(generation_class().to_dict()) - {"transformers_version"}
    )
    for name, task in experiment["eval_tasks"].items():
        if not isinstance(task, dict):
            raise ExperimentError(
                f"Eval task {name!r} must be a mapping with keys {', '.join(EVAL_TASK_KEYS)}."
            )
        _check_keys(f"eval_tasks.{name}", task, set(EVAL_TASK_KEYS))
        _check_types(f"eval_tasks.{name}", task, EVAL_TASK_TYPES)
        if task.get("kind", "loss") not in ("loss", "generate", *TEXT_EVAL_KINDS):
            raise ExperimentError(
                f"eval_tasks.{name}.kind must be loss or generate, or a text kind ({', '.join(TEXT_EVAL_KINDS)}); "
                f"got {task['kind']!r}."
            )
        try:
            validate_text_eval_task(name, task)
        except ValueError as error:
            raise ExperimentError(str(error)) from None
        if task.get("limit") is not None and task["limit"] < 1:
            raise ExperimentError(
                f"eval_tasks.{name}.limit must be a positive number of examples, got {task['limit']}."
            )
    _check_keys("card", experiment["card"], set(CARD_KEYS))
    if experiment.get("ema") is not None:  # optional: a moving average of the weights (xlm_hf/ema.py)
        try:
            check_ema_section(experiment["ema"])
        except ValueError as error:
            raise ExperimentError(str(error)) from None


def _check_train_mixture_steps(data: dict[str, Any], training: dict[str, Any]) -> None:
    """`data.train_mixture_steps` trains on the mixture first and on the task alone after it: it needs a mixture, a
    schedule in steps that outlasts it, and the Trainer reading the training set in the order built for it."""
    mixture_steps = data.get("train_mixture_steps")
    if mixture_steps is None:
        return
    if mixture_steps < 1:
        raise ExperimentError(
            f"data.train_mixture_steps must be a positive number of steps, got {mixture_steps}."
        )
    if not data.get("train_mixture"):
        raise ExperimentError(
            "data.train_mixture_steps limits data.train_mixture to the first steps, but the experiment mixes nothing "
            "in: set data.train_mixture too (e.g. {star_medium: 0.5})."
        )
    max_steps = training.get("max_steps", -1)
    if max_steps <= mixture_steps:
        raise ExperimentError(
            f"data.train_mixture_steps={mixture_steps} needs training.max_steps above it (got {max_steps}): the "
            "steps after the mixture train on the task alone."
        )
    sampling = training.get("train_sampling_strategy", "sequential")
    if sampling != "sequential":
        raise ExperimentError(
            f"data.train_mixture_steps orders the training set (the mixture first), so the Trainer must read it in "
            f"order; training.train_sampling_strategy={sampling!r} would shuffle it. Remove that setting."
        )


def _move_collator_options_to_model(experiment: dict[str, Any], collator_class: type) -> None:
    """Collator options that the model configuration owns now (`collator_class.moved_to_model`, e.g. the MDLM's
    `sigma_max`): an old experiment's value becomes the model's, with a deprecation warning; a value that
    contradicts the model's is an error, as it was before (training refused collator and model schedules that
    differed)."""
    for key in getattr(collator_class, "moved_to_model", ()):
        if key not in experiment["collator"]:
            continue
        value = experiment["collator"].pop(key)
        model_value = experiment["model"].setdefault(key, value)
        if model_value != value:
            raise ExperimentError(
                f"collator.{key}={value!r} contradicts model.{key}={model_value!r}: {key} moved to the model "
                f"section (the model's configuration owns it). Remove collator.{key} and set model.{key}."
            )
        warnings.warn(
            f"collator.{key} is deprecated: it moved to model.{key} (now {value!r}); remove it from the "
            "collator section.",
            FutureWarning,
            stacklevel=3,
        )


def data_arguments(experiment: dict[str, Any]) -> DataArguments:
    return DataArguments(**experiment.get("data", {}))


def dump_experiment(experiment: dict[str, Any], path: str | Path) -> None:
    with open(path, "w") as handle:
        yaml.safe_dump(experiment, handle, sort_keys=False)


__all__ = [
    "DataArguments",
    "ExperimentError",
    "available_experiments",
    "load_experiment",
    "apply_override",
    "validate_experiment",
    "data_arguments",
    "dump_experiment",
    "parse_yaml",
    "merge_sections",
    "read_experiment_with_defaults",
]
