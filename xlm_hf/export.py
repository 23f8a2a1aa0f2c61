"""Writing and reading Hub-ready model folders.

A Hub-ready folder holds: `model.safetensors`, `config.json` (with `auto_map`), the `modeling/` files the
family needs (copied by `save_pretrained` through the classes' single-level relative imports),
`generation_config.json`, the tokenizer, `README.md` (the model card) and `experiment.yaml` (without the training
machine's paths: `training.output_dir`, `data.cache_dir`, ...). It loads with
`AutoModel.from_pretrained(folder, trust_remote_code=True)` where xlm_hf is not installed.
"""

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from .experiment import dump_experiment
from .families import Family, family_for_model_type, get_family
from .tokenization import check_tokenizer_matches_model

EXPERIMENT_FILE = "experiment.yaml"
RESULTS_FILE = "results.json"


def export_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: str | os.PathLike,
    family: Family | str,
    experiment: dict[str, Any] | None = None,
) -> Path:
    """Writes the Hub-ready folder. Files are staged in a sibling folder and moved in only once all are written,
    so an interrupted export never leaves a half-written checkpoint."""
    from .hub import install_pipelines
    from .model_card import strip_local_paths, write_model_card

    family = get_family(family) if isinstance(family, str) else family
    # the folder is meant to be shared: the training machine's paths (output_dir, data cache) stay out of it
    experiment = strip_local_paths(experiment) if experiment is not None else None
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    check_tokenizer_matches_model(tokenizer, model.config)

    # save_pretrained copies a class's module (and its relative imports) only for classes registered for an
    # auto class; auto_map then lists every entry point the family offers.
    type(model.config).register_for_auto_class("AutoConfig")
    type(model).register_for_auto_class("AutoModel")
    model.config.auto_map = dict(family.auto_map)
    staging = Path(tempfile.mkdtemp(dir=output_dir.parent, prefix=f".{output_dir.name}-export-"))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        install_pipelines(staging, family.name)  # the family's Hub pipelines (text-generation, infill)
        if experiment is not None:
            dump_experiment(experiment, staging / EXPERIMENT_FILE)
        previous_results = output_dir / RESULTS_FILE
        if previous_results.is_file():
            shutil.copy(previous_results, staging / RESULTS_FILE)
        write_model_card(staging, family=family, experiment=experiment, model_name=output_dir.resolve().name)
        for item in staging.iterdir():
            if item.is_file():
                os.chmod(item, 0o644)  # staged files are created private; a checkpoint is meant to be shared
            os.replace(item, output_dir / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output_dir


def resolve_model_dir(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder as is; otherwise a Hub id, fetched with `snapshot_download` (the Hub cache is used first)."""
    path = Path(name_or_path)
    if path.is_dir():
        return path
    if path.exists():
        raise ValueError(f"{path} is a file, not a model folder.")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id=str(name_or_path), revision=revision))
    except Exception as error:  # invalid id, offline without a cached copy, unknown repo ...
        raise ValueError(
            f"{name_or_path!r} is neither a local folder nor a Hub model that could be fetched"
            f"{' at revision ' + revision if revision else ''}: {error}"
        ) from error


def load_model_and_tokenizer(
    name_or_path: str | os.PathLike, revision: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Family, Path]:
    """Loads an xlm_hf checkpoint with the installed family classes; one clear error for what is missing."""
    model_dir = resolve_model_dir(name_or_path, revision)
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{model_dir} has no config.json: it is not a saved model folder.")
    model_type = json.loads(config_file.read_text()).get("model_type")
    family = family_for_model_type(model_type)
    weights = list(model_dir.glob("*.safetensors"))
    if not weights:
        raise ValueError(f"{model_dir} has no *.safetensors weights: the export is incomplete; re-run the export.")
    try:
        model = family.model_class.from_pretrained(model_dir)
    except Exception as error:
        raise ValueError(f"Could not load the weights in {model_dir} (corrupt or incomplete file?): {error}") from error
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as error:
        raise ValueError(f"Could not load the tokenizer saved in {model_dir}: {error}") from error
    check_tokenizer_matches_model(tokenizer, model.config)
    model.eval()
    return model, tokenizer, family, model_dir


__all__ = ["export_model", "load_model_and_tokenizer", "resolve_model_dir", "EXPERIMENT_FILE", "RESULTS_FILE"]
