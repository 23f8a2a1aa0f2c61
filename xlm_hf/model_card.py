"""Model cards rendered with `huggingface_hub.ModelCard` from one template per family in `model_cards/`.

The card of a folder is built from what the folder holds:
- metadata (`ModelCardData`): `library_name`, `pipeline_tag` (the family's: text-generation; fill-mask for MLM),
  `license`, tags (`xlm-hf`, the family, `custom_code`), `base_model` and `datasets` (Hub ids only), `model-index`
  from `results.json` (written by the last `xlm-hf eval`), and `widget` examples whose outputs are generations of
  this checkpoint (the Hub's hosted widget does not run custom code, so the outputs are static);
- text: the family's title and paper (from its `Family` record), what it was trained on, a usage snippet with
  `trust_remote_code=True` and the pipelines (the family's template, `model_cards/<Family.card_template>.md`), the
  evaluation table (or "Not evaluated"), the training configuration (`experiment.yaml`, without machine-local
  paths), limitations.

The card renders what it is given and never loads a model: the widget outputs come from the caller, which has the
model in memory (`xlm_hf.jobs.widget_examples`: training computes them before the export, `xlm-hf card` after
loading the folder). A re-render without examples (`xlm-hf push`) keeps those of the folder's current `README.md`.

What the card says beyond the experiment's sections comes from its `card` section (all optional):

```yaml
card:
  license: apache-2.0            # the default
  datasets: [org/dataset]        # Hub dataset ids only; star tasks are generated locally and are described instead
  base_model: org/base-model     # the Hub id this checkpoint was fine-tuned from (scripts/finetune.py writes it)
  training_data: train.jsonl     # what it was trained on, in words, when that is not a task of xlm_hf
  hub_model_id: org/this-model   # this checkpoint's own Hub id (`xlm-hf push` records it in the uploaded copy)
  project_url: https://...       # a link for "xlm_hf" (also $XLM_HF_PROJECT_URL); none by default
```

A LoRA adapter folder (`adapter_config.json`, from `scripts/finetune.py`) gets its own card (`model_cards/adapter.md`,
`library_name: peft`). `xlm-hf card MODEL_DIR` re-renders `README.md` (after a new `xlm-hf eval`); `xlm-hf push`
renders it with the repo id (keeping the widget outputs).
"""

import copy
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .families import Family, family_for_model_type, get_family

RESULTS_FILE = "results.json"
EXPERIMENT_FILE = "experiment.yaml"
ADAPTER_CONFIG_FILE = "adapter_config.json"
NOT_EVALUATED = "Not evaluated"
MAX_WIDGET_EXAMPLES = 2
DEFAULT_LICENSE = "apache-2.0"
ORIGINAL_PROJECT_URL = "https://github.com/dhruvdcoder/xlm-core"
PROJECT_URL_ENV = "XLM_HF_PROJECT_URL"
# Eval tasks built on these collators have no reference to compare with (unconditional samples): their metrics
# are shown, marked, but never put in `model-index`.
NO_REFERENCE_COLLATORS = ("unconditional",)
# Experiment keys that hold paths of the machine that trained the model: left out of exported files.
LOCAL_PATH_KEYS = {
    "data": ("cache_dir",),
    "training": ("output_dir", "logging_dir", "resume_from_checkpoint"),
}

NO_EXAMPLES_NOTE = (
    "(No examples: none were generated for this card. `xlm-hf card MODEL_DIR` generates them from the task's "
    "prepared data.)"
)
# Metrics that go into `model-index` (the rest of results.json stays in the table only).
INDEXED_METRICS = ("exact_match", "token_accuracy", "loss")
BOOKKEEPING = ("_runtime", "_per_second", "_preparation_time", "_samples")


def _template(family: Family) -> str:
    """The family's template: `model_cards/<card_template>.md` (or a path to a `.md` file, for a family
    registered from another package), else `model_cards/default.md`."""
    folder = resources.files("xlm_hf.model_cards")
    if family.card_template.endswith(".md") and Path(family.card_template).is_file():
        return Path(family.card_template).read_text()
    specific = folder / f"{family.card_template}.md"
    return (specific if specific.is_file() else folder / "default.md").read_text()


def _read_experiment(model_dir: Path) -> dict[str, Any]:
    path = model_dir / EXPERIMENT_FILE
    if not path.is_file():
        return {}
    from .experiment import parse_yaml

    return parse_yaml(path.read_text()) or {}


def _family_of(model_dir: Path, experiment: dict[str, Any]) -> Family:
    config_file = model_dir / "config.json"
    if config_file.is_file():
        return family_for_model_type(json.loads(config_file.read_text()).get("model_type"))
    if experiment.get("family"):
        return get_family(experiment["family"])
    raise ValueError(f"{model_dir} has neither a config.json nor an experiment naming its family.")


def strip_local_paths(experiment: dict[str, Any]) -> dict[str, Any]:
    """A copy of `experiment` without the paths of the machine that trained it (output folder, data cache,
    checkpoint to resume from): they mean nothing elsewhere and should not be published."""
    experiment = copy.deepcopy(experiment)
    for section, keys in LOCAL_PATH_KEYS.items():
        values = experiment.get(section)
        if isinstance(values, dict):
            for key in keys:
                values.pop(key, None)
    return experiment


def card_settings(experiment: dict[str, Any]) -> dict[str, Any]:
    """The experiment's `card` section (see the module docstring), with the license defaulted."""
    settings = dict(experiment.get("card") or {})
    settings.setdefault("license", DEFAULT_LICENSE)
    datasets = settings.get("datasets")
    if isinstance(datasets, str):
        settings["datasets"] = [datasets]
    return settings


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]


def _hub_link(repo_id: str, kind: str = "") -> str:
    return f"[{repo_id}](https://huggingface.co/{kind}{repo_id})"


def _project_link(settings: dict[str, Any]) -> str:
    """The project's name, linked only when a project URL is configured, and the original XLM it ports."""
    url = settings.get("project_url") or os.environ.get(PROJECT_URL_ENV)
    name = f"[xlm_hf]({url})" if url else "xlm_hf"
    return f"{name} (a Hugging Face-native port of [XLM]({ORIGINAL_PROJECT_URL}))"


TEXT_PROMPT_WORDS = 8  # words of a held-out document that prompt a text model's widget examples


def _text_task_note(data: dict[str, Any]) -> str:
    """What a text task is and which tokenizer it was tokenized with, for the card (empty for other tasks)."""
    from .tasks import is_text_task

    if not is_text_task(data.get("task")):
        return ""
    from .tasks import get_task

    try:
        task = get_task(data["task"]).configured(tokenizer=data.get("tokenizer"), layout=data.get("packing"))
    except ValueError:  # a card renders even for an experiment this version cannot read
        return ""
    return task.card_note()


def _local_task(task: str) -> bool:
    from .tasks import TASKS

    return task in TASKS


def training_data_text(experiment: dict[str, Any], settings: dict[str, Any]) -> tuple[str, str]:
    """(what the model was trained on, as a short phrase; a sentence about that data for the card's text)."""
    task = (experiment.get("data") or {}).get("task")
    datasets = settings.get("datasets") or []
    if settings.get("training_data"):
        data = f"**{settings['training_data']}**"
    elif datasets:
        data = ", ".join(_hub_link(d, "datasets/") for d in datasets)
    elif task:
        data = f"**{task}**"
    else:
        data = "unrecorded data"
    if settings.get("base_model"):
        phrase = f"fine-tuned from {_hub_link(settings['base_model'])} on {data}"
    else:
        phrase = f"trained on {data}"
    note = _text_task_note(experiment.get("data") or {})
    if task and not settings.get("training_data") and not datasets and _local_task(task):
        note = (
            f"`{task}` is a synthetic star-graph path task that xlm_hf generates locally (`xlm-hf prepare-data "
            f"{task}`); it is not a dataset on the Hub."
        )
    return phrase, note


def read_results(model_dir: str | Path) -> dict[str, Any] | None:
    """`results.json` of the last `xlm-hf eval`, or None when the model was not evaluated."""
    path = Path(model_dir) / RESULTS_FILE
    if not path.is_file():
        return None
    try:
        results = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error}); re-run `xlm-hf eval`.") from error
    return results if isinstance(results, dict) else None


def is_partial(results: dict[str, Any] | None) -> bool:
    """Whether the last evaluation covered only part of its split (`xlm-hf eval --limit`)."""
    if not results:
        return False
    size, count = results.get("split_size"), results.get("num_examples")
    return isinstance(size, int) and isinstance(count, int) and count < size


def no_reference_metrics(experiment: dict[str, Any]) -> tuple[str, ...]:
    """Prefixes of the metrics of eval tasks that have no reference (unconditional samples)."""
    tasks = experiment.get("eval_tasks") or {}
    return tuple(
        f"eval_{name}_"
        for name, spec in tasks.items()
        if isinstance(spec, dict) and spec.get("collator") in NO_REFERENCE_COLLATORS
    )


def results_label(results: dict[str, Any], task: str) -> str:
    split, count, size = results.get("split"), results.get("num_examples"), results.get("split_size")
    if is_partial(results):
        return f"{split} split of {task}, first {count} of {size} examples"
    return f"{split} split of {task}, {count} examples"


def eval_results(
    results: dict[str, Any] | None, family: Family, task: str, experiment: dict[str, Any] | None = None
) -> list[EvalResult]:
    """The `model-index` entries: one per indexed metric of `results.json`. None for a partial evaluation (it is
    not the split's score) and none for metrics without a reference (unconditional samples)."""
    if not results or is_partial(results):
        return []
    unreferenced = no_reference_metrics(experiment or {})
    entries = []
    for name, value in results.get("metrics", {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        metric_type = next((m for m in INDEXED_METRICS if name.endswith(m)), None)
        if metric_type is None or any(name.startswith(prefix) for prefix in unreferenced):
            continue
        entries.append(
            EvalResult(
                task_type=family.pipeline_tag,
                dataset_type=results.get("task", task),
                dataset_name=results.get("task", task),
                dataset_split=results.get("split"),
                metric_type=metric_type,
                metric_name=name,
                metric_value=round(float(value), 4),
            )
        )
    return entries


# ----- widget examples --------------------------------------------------------------------------------------


def example_rows(model_dir: Path, experiment: dict[str, Any], limit: int) -> list[dict[str, str]]:
    """Prompts (and targets) to show: from the folder's `predictions/`, else from the task's prepared data (never
    generated or downloaded for the card)."""
    model_dir = Path(model_dir)
    rows: list[dict[str, str]] = []
    for path in sorted((model_dir / "predictions").glob("*/*.jsonl")):
        for line in path.read_text().splitlines():
            row = json.loads(line)
            if row.get("prompt") and row["prompt"] not in [r["prompt"] for r in rows]:
                rows.append({"prompt": row["prompt"], "target": row.get("target", "")})
            if len(rows) >= limit:
                return rows
    if rows:
        return rows
    data = experiment.get("data") or {}
    task = data.get("task")
    if not task:
        return rows
    from .tasks import default_cache_dir, is_text_task

    folder = task
    if is_text_task(task):  # a text task's folder carries a digest of its source
        from .tasks import get_task

        folder = get_task(task).folder_name
    prepared = Path(data.get("cache_dir") or default_cache_dir()) / folder
    if not prepared.is_dir():
        return rows
    from datasets import load_from_disk

    splits = load_from_disk(str(prepared))
    split = next((name for name in ("test", "validation", "train") if name in splits), None)
    if split is None:
        return rows
    for example in splits[split].select(range(min(limit, len(splits[split])))):
        if "prompt" not in example:  # a text document: its first words prompt the model
            words = example["text"].split()
            example = {
                "prompt": " ".join(words[:TEXT_PROMPT_WORDS]),
                "target": " ".join(words[TEXT_PROMPT_WORDS:]),
            }
        rows.append({"prompt": example["prompt"], "target": example.get("target", "")})
    return rows


def current_widget(model_dir: Path) -> list[dict[str, Any]]:
    """The widget examples of the folder's current `README.md` (none when it has no card, or an unreadable one)."""
    path = Path(model_dir) / "README.md"
    if not path.is_file():
        return []
    try:
        widget = ModelCard.load(path).data.widget
    except Exception:  # a hand-edited or foreign README: re-rendering replaces it
        return []
    return [example for example in widget or [] if isinstance(example, dict)]


# ----- the card ------------------------------------------------------------------------------------------------


def render_model_card(
    model_dir: str | Path,
    family: Family | str | None = None,
    experiment: dict[str, Any] | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    widget: bool = True,
    examples: list[dict[str, Any]] | None = None,
    widget_note: str = "",
) -> ModelCard:
    """The card of `model_dir` (not written); see the module docstring.

    `examples` are the widget entries (outputs of this checkpoint, computed by the caller); None keeps those of
    the folder's current `README.md`. `widget=False` leaves the widget out. `widget_note` is said instead of
    examples when there are none (why there are none)."""
    model_dir = Path(model_dir)
    if (model_dir / ADAPTER_CONFIG_FILE).is_file() and not (model_dir / "config.json").is_file():
        return render_adapter_card(model_dir, experiment, repo_id, model_name)
    experiment = strip_local_paths(experiment if experiment is not None else _read_experiment(model_dir))
    family = get_family(family) if isinstance(family, str) else family or _family_of(model_dir, experiment)
    settings = card_settings(experiment)
    task = (experiment.get("data") or {}).get("task") or "unknown task"
    results = read_results(model_dir)
    repo_id = repo_id or settings.get("hub_model_id")
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else model_dir.resolve().name)

    if not widget:
        examples, widget_note = [], ""
    elif examples is None:
        examples = current_widget(model_dir)
    if widget and not examples and not widget_note:
        widget_note = NO_EXAMPLES_NOTE

    unreferenced = no_reference_metrics(experiment)
    metrics = {  # the table leaves out bookkeeping (runtimes, throughput, epoch); † marks metrics without reference
        (f"{k} †" if any(k.startswith(prefix) for prefix in unreferenced) else k): round(v, 4)
        if isinstance(v, float)
        else v
        for k, v in (results or {}).get("metrics", {}).items()
        if isinstance(v, (int, float))
        and not isinstance(v, bool)
        and k != "epoch"
        and not k.endswith(BOOKKEEPING)
    }
    notes = []
    if any(name.endswith(" †") for name in metrics):
        notes.append(
            "† unconditional samples have no reference: the metric compares them with a random target and is not "
            "a quality measure (it is left out of the metadata)."
        )
    if is_partial(results):
        notes.append(
            "This evaluation covered part of the split (`xlm-hf eval --limit`), so its numbers are left out of the "
            "metadata (`model-index`); evaluate the whole split to publish them."
        )
    trained, data_note = training_data_text(experiment, settings)
    card_data = ModelCardData(
        license=settings["license"],
        library_name="transformers",
        pipeline_tag=family.pipeline_tag,
        tags=["xlm-hf", family.name, "custom_code"],
        base_model=settings.get("base_model"),
        datasets=settings.get("datasets") or None,
        model_name=model_name,
        eval_results=eval_results(results, family, task, experiment) or None,
        widget=examples or None,
        **({"mask_token": "[MASK]"} if family.pipeline_tag == "fill-mask" else {}),
    )
    training = {
        k: experiment.get(k)
        for k in ("family", "data", "model", "collator", "training", "generation")
        if experiment.get(k)
    }
    paper = family.paper
    return ModelCard.from_template(
        card_data,
        template_str=_template(family),
        model_name=model_name,
        repo_id=repo_id or f"path/to/{model_name}",
        family=family.name,
        family_title=family.title,
        provenance=f"{trained} with {_project_link(settings)}",
        data_note=data_note,
        trained_on=trained,
        paper=paper,
        family_description=f"Paper: {paper}" if paper else "",
        task=task,
        example_prompt=examples[0]["text"] if examples and family.pipeline_tag != "fill-mask" else "",
        examples=examples,
        widget_note=widget_note,
        not_evaluated=NOT_EVALUATED,
        results=metrics,
        results_label=results_label(results, task) if results else "",
        results_notes=notes,
        training_yaml=yaml.safe_dump(training, sort_keys=False).strip()
        if training
        else "(no experiment.yaml)",
    )


def render_adapter_card(
    adapter_dir: str | Path,
    experiment: dict[str, Any] | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
) -> ModelCard:
    """The card of a LoRA adapter folder written by `scripts/finetune.py` (`library_name: peft`)."""
    adapter_dir = Path(adapter_dir)
    experiment = strip_local_paths(experiment if experiment is not None else _read_experiment(adapter_dir))
    settings = card_settings(experiment)
    adapter = json.loads((adapter_dir / ADAPTER_CONFIG_FILE).read_text())
    family = get_family(experiment["family"]) if experiment.get("family") else None
    base = settings.get("base_model") or adapter.get("base_model_name_or_path") or ""
    base_is_hub_id = bool(settings.get("base_model"))
    repo_id = repo_id or settings.get("hub_model_id")
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else adapter_dir.resolve().name)
    trained, data_note = training_data_text(experiment, settings)
    auto_class = (adapter.get("auto_mapping") or {}).get("base_model_class", "AutoModel")
    targets = adapter.get("target_modules")
    card_data = ModelCardData(
        license=settings["license"],
        library_name="peft",
        pipeline_tag=family.pipeline_tag if family else None,
        tags=["xlm-hf", *([family.name] if family else []), "lora", "peft", "custom_code"],
        base_model=settings.get("base_model"),
        datasets=settings.get("datasets") or None,
        model_name=model_name,
    )
    training = {k: experiment.get(k) for k in ("family", "data", "training") if experiment.get(k)}
    return ModelCard.from_template(
        card_data,
        template_str=(resources.files("xlm_hf.model_cards") / "adapter.md").read_text(),
        model_name=model_name,
        repo_id=repo_id or f"path/to/{model_name}",
        base=base if base_is_hub_id else "path/to/base-model",
        base_is_hub_id=base_is_hub_id,
        family_title=_lower_first(family.title) if family else "an xlm_hf model",
        provenance=f"{trained} with {_project_link(settings)}",
        data_note=data_note,
        rank=adapter.get("r"),
        target_modules=targets if isinstance(targets, str) else ", ".join(sorted(targets or [])),
        modules_to_save=adapter.get("modules_to_save") or [],
        causal_lm=auto_class == "AutoModelForCausalLM",
        training_yaml=yaml.safe_dump(training, sort_keys=False).strip()
        if training
        else "(no experiment.yaml)",
    )


def write_model_card(
    model_dir: str | Path,
    family: Family | str | None = None,
    experiment: dict[str, Any] | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    widget: bool = True,
    examples: list[dict[str, Any]] | None = None,
    widget_note: str = "",
) -> Path:
    """Renders and writes `README.md` in `model_dir` from its experiment and, when present, its `results.json`
    (see `render_model_card` for `widget`, `examples` and `widget_note`)."""
    path = Path(model_dir) / "README.md"
    card = render_model_card(
        model_dir, family, experiment, repo_id, model_name, widget, examples, widget_note
    )
    card.save(path)
    return path


__all__ = [
    "render_adapter_card",
    "render_model_card",
    "strip_local_paths",
    "write_model_card",
    "example_rows",
    "current_widget",
    "read_results",
    "eval_results",
    "NOT_EVALUATED",
]
