"""Model cards rendered with `huggingface_hub.ModelCard` from one template per family in `model_cards/`.

The card of a folder is built from what the folder holds:
- metadata (`ModelCardData`): `library_name`, `pipeline_tag` (text-generation; fill-mask for MLM), tags (`xlm-hf`, the
  family, `custom_code`), `datasets`, `model-index` from `results.json` (written by the last `xlm-hf eval`), and
  `widget` examples whose outputs are generations of this checkpoint, computed when the card is rendered (the Hub's
  hosted widget does not run custom code, so the outputs are static);
- text: what the model is, the family's paper, a usage snippet with `trust_remote_code=True` and the pipelines, the
  evaluation table (or "Not evaluated"), the training configuration (`experiment.yaml`), limitations.

`xlm-hf card MODEL_DIR` re-renders `README.md` (after a new `xlm-hf eval`); `xlm-hf push` renders it with the repo id.
"""

import json
import logging
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .families import Family, family_for_model_type, get_family

logger = logging.getLogger(__name__)

RESULTS_FILE = "results.json"
EXPERIMENT_FILE = "experiment.yaml"
NOT_EVALUATED = "Not evaluated"
MAX_WIDGET_EXAMPLES = 2

FAMILY_TITLES = {
    "arlm": "An autoregressive language model (ARLM baseline)",
    "mlm": "A masked language model (MLM)",
    "mdlm": "A masked diffusion language model (MDLM)",
    "ilm": "An insertion language model (ILM)",
}
# The family's paper, when `Family.paper` does not name one.
FAMILY_PAPERS = {
    "arlm": "https://arxiv.org/abs/1706.03762",
    "mlm": "https://arxiv.org/abs/1810.04805",
    "mdlm": "https://arxiv.org/abs/2406.07524",
    "ilm": "https://arxiv.org/abs/2505.05755",
}
# Metrics that go into `model-index` (the rest of results.json stays in the table only).
INDEXED_METRICS = ("exact_match", "token_accuracy", "loss")
BOOKKEEPING = ("_runtime", "_per_second", "_preparation_time", "_samples")


def _template(family: Family) -> str:
    folder = resources.files("xlm_hf.model_cards")
    specific = folder / f"{family.name}.md"
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


def eval_results(results: dict[str, Any] | None, family: Family, task: str) -> list[EvalResult]:
    """The `model-index` entries: one per indexed metric of `results.json`."""
    if not results:
        return []
    entries = []
    for name, value in results.get("metrics", {}).items():
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            continue
        metric_type = next((m for m in INDEXED_METRICS if name.endswith(m)), None)
        if metric_type is None:
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


# ----- widget examples: real generations of the checkpoint ----------------------------------------------------


def _example_rows(model_dir: Path, experiment: dict[str, Any], limit: int) -> list[dict[str, str]]:
    """Prompts (and targets) to show: from the folder's `predictions/`, else from the task's prepared data (never
    generated or downloaded for the card)."""
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
    from .tasks import default_cache_dir

    prepared = Path(data.get("cache_dir") or default_cache_dir()) / task
    if not prepared.is_dir():
        return rows
    from datasets import load_from_disk

    splits = load_from_disk(str(prepared))
    split = next((name for name in ("test", "validation", "train") if name in splits), None)
    if split is None:
        return rows
    for example in splits[split].select(range(min(limit, len(splits[split])))):
        rows.append({"prompt": example["prompt"], "target": example.get("target", "")})
    return rows


def widget_examples(
    model_dir: str | Path, family: Family, experiment: dict[str, Any]
) -> list[dict[str, Any]]:
    """Widget entries with the outputs this checkpoint gives (generated now, seed 0). Text generation: the
    continuation of a task prompt; fill-mask: the top 3 tokens for one masked target token."""
    import torch

    model_dir = Path(model_dir)
    rows = _example_rows(model_dir, experiment, MAX_WIDGET_EXAMPLES)
    if not rows:
        return []
    torch.manual_seed(0)
    if family.pipeline_tag == "fill-mask":
        from transformers import FillMaskPipeline

        from .export import load_model_and_tokenizer

        model, tokenizer, _, _ = load_model_and_tokenizer(model_dir)
        fill = FillMaskPipeline(model=model, tokenizer=tokenizer)
        examples = []
        for index, row in enumerate(rows, 1):
            target = row["target"].split()
            if not target:
                continue
            target[len(target) // 2] = tokenizer.mask_token
            text = f"{row['prompt']} {tokenizer.bos_token} {' '.join(target)}".strip()
            with torch.no_grad():
                predictions = fill(text, top_k=3)
            output = [
                {"label": p["token_str"].strip(), "score": round(float(p["score"]), 4)} for p in predictions
            ]
            examples.append({"text": text, "example_title": f"Example {index}", "output": output})
        return examples

    from .jobs import generate

    continuations = generate(str(model_dir), [row["prompt"] for row in rows])
    return [
        {
            "text": row["prompt"],
            "example_title": f"Example {index}",
            "output": {"text": f"{row['prompt']} {text}".strip()},
        }
        for index, (row, text) in enumerate(zip(rows, continuations), 1)
    ]


# ----- the card ------------------------------------------------------------------------------------------------


def render_model_card(
    model_dir: str | Path,
    family: Family | str | None = None,
    experiment: dict[str, Any] | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
    widget: bool = True,
) -> ModelCard:
    """The card of `model_dir` (not written); see the module docstring."""
    model_dir = Path(model_dir)
    experiment = experiment if experiment is not None else _read_experiment(model_dir)
    family = get_family(family) if isinstance(family, str) else family or _family_of(model_dir, experiment)
    task = (experiment.get("data") or {}).get("task") or "unknown task"
    results = read_results(model_dir)
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else model_dir.resolve().name)

    examples, widget_note = [], ""
    if widget:
        try:
            examples = widget_examples(model_dir, family, experiment)
        except Exception as error:  # a card must render even when the checkpoint cannot generate here
            logger.warning("No widget examples for %s: %s", model_dir, error)
            widget_note = f"(Examples could not be generated when this card was written: {error}.)"
    if widget and not examples and not widget_note:
        widget_note = "(No examples: the task's data was not available when this card was written.)"

    metrics = {  # the table leaves out bookkeeping (runtimes, throughput, epoch)
        k: round(v, 4) if isinstance(v, float) else v
        for k, v in (results or {}).get("metrics", {}).items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch" and not k.endswith(BOOKKEEPING)
    }
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=family.pipeline_tag,
        tags=["xlm-hf", family.name, "custom_code"],
        datasets=[task] if task != "unknown task" else None,
        model_name=model_name,
        eval_results=eval_results(results, family, task) or None,
        widget=examples or None,
        **({"mask_token": "[MASK]"} if family.pipeline_tag == "fill-mask" else {}),
    )
    training = {
        k: experiment.get(k)
        for k in ("family", "data", "model", "collator", "training", "generation")
        if experiment.get(k)
    }
    paper = family.paper or FAMILY_PAPERS.get(family.name, "")
    return ModelCard.from_template(
        card_data,
        template_str=_template(family),
        model_name=model_name,
        repo_id=repo_id or f"path/to/{model_name}",
        family=family.name,
        family_title=FAMILY_TITLES.get(family.name, family.name),
        paper=paper,
        family_description=f"Paper: {paper}" if paper else "",
        task=task,
        example_prompt=examples[0]["text"] if examples and family.pipeline_tag != "fill-mask" else "",
        examples=examples,
        widget_note=widget_note,
        not_evaluated=NOT_EVALUATED,
        results=metrics,
        results_split=(results or {}).get("split"),
        results_samples=(results or {}).get("num_examples"),
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
) -> Path:
    """Renders and writes `README.md` in `model_dir` from its experiment and, when present, its `results.json`."""
    path = Path(model_dir) / "README.md"
    render_model_card(model_dir, family, experiment, repo_id, model_name, widget).save(path)
    return path


__all__ = [
    "render_model_card",
    "write_model_card",
    "widget_examples",
    "read_results",
    "eval_results",
    "NOT_EVALUATED",
]
