"""Model cards rendered with `huggingface_hub.ModelCard` from the templates in `model_cards/`."""

import json
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from huggingface_hub import EvalResult, ModelCard, ModelCardData

from .families import Family

FAMILY_TITLES = {
    "arlm": "An autoregressive language model (ARLM baseline)",
    "mlm": "A masked language model (MLM)",
    "mdlm": "A masked diffusion language model (MDLM)",
    "ilm": "An insertion language model (ILM)",
}


def _template(family: Family) -> str:
    folder = resources.files("xlm_hf.model_cards")
    specific = folder / f"{family.name}.md"
    return (specific if specific.is_file() else folder / "default.md").read_text()


def write_model_card(
    model_dir: str | Path,
    family: Family,
    experiment: dict[str, Any] | None = None,
    repo_id: str | None = None,
    model_name: str | None = None,
) -> Path:
    """Renders `README.md` in `model_dir` from its experiment and, when present, its `results.json`."""
    model_dir = Path(model_dir)
    experiment = experiment or {}
    task = experiment.get("data", {}).get("task", "unknown task")
    results_file = model_dir / "results.json"
    results = json.loads(results_file.read_text()) if results_file.is_file() else None

    metrics = {k: round(v, 4) for k, v in (results or {}).get("metrics", {}).items() if isinstance(v, float)}
    eval_results = [
        EvalResult(
            task_type=family.pipeline_tag,
            dataset_type=task,
            dataset_name=task,
            dataset_split=results.get("split"),
            metric_type=name.split("_", 2)[-1] if name.count("_") >= 2 else name,
            metric_name=name,
            metric_value=value,
        )
        for name, value in metrics.items()
        if name.endswith(("exact_match", "token_accuracy", "loss"))
    ]
    model_name = model_name or (repo_id.split("/")[-1] if repo_id else model_dir.resolve().name)
    card_data = ModelCardData(
        library_name="transformers",
        pipeline_tag=family.pipeline_tag,
        tags=["xlm-hf", family.name, "custom_code"],
        datasets=[task] if task != "unknown task" else None,
        model_name=model_name,
        eval_results=eval_results or None,
    )
    training = {k: experiment.get(k) for k in ("family", "data", "model", "collator", "training") if k in experiment}
    card = ModelCard.from_template(
        card_data,
        template_str=_template(family),
        model_name=model_name,
        repo_id=repo_id or f"path/to/{model_name}",
        family_title=FAMILY_TITLES.get(family.name, family.name),
        family_description=f"Paper: {family.paper}" if family.paper else "",
        task=task,
        example_prompt="",
        generate_kwargs="",
        decode_line="print(tokenizer.batch_decode(output, skip_special_tokens=True))",
        results=metrics,
        results_split=(results or {}).get("split"),
        results_samples=(results or {}).get("num_examples"),
        training_yaml=yaml.safe_dump(training, sort_keys=False).strip(),
    )
    path = model_dir / "README.md"
    card.save(path)
    return path


__all__ = ["write_model_card"]
