"""Writing and reading Hub-ready model folders.

A Hub-ready folder holds: `model.safetensors`, `config.json` (with `auto_map`), the `modeling/` files the
family needs (copied by `save_pretrained` through the classes' single-level relative imports),
`generation_config.json`, the tokenizer, the family's pipelines (`pipeline_xlm.py`, listed in
`config.json:custom_pipelines`), `README.md` (the model card) and `experiment.yaml` (without the training machine's
paths: `training.output_dir`, `data.cache_dir`, ...). It loads with
`AutoModel.from_pretrained(folder, trust_remote_code=True)` where xlm_hf is not installed.

The dependencies go one way: export writes the folder (its card rendered from what it is given), `hub` uploads a
folder, and `jobs` (which has the model in memory) produces the card's widget outputs. Neither the export nor the
card reloads a model or generates.
"""

import fnmatch
import json
import logging
import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from transformers import AutoTokenizer, GenerationConfig, PreTrainedModel, PreTrainedTokenizerBase
from transformers.dynamic_module_utils import get_relative_import_files
from transformers.utils import GENERATION_CONFIG_NAME

from .experiment import dump_experiment
from .families import PIPELINE_FILE, Family, family_for_model_type, get_family
from .model_card import strip_local_paths, write_model_card
from .tokenization import check_tokenizer_matches_model

EXPERIMENT_FILE = "experiment.yaml"
RESULTS_FILE = "results.json"


def export_model(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    output_dir: str | os.PathLike,
    family: Family | str,
    experiment: dict[str, Any] | None = None,
    widget_examples: list[dict[str, Any]] | None = None,
) -> Path:
    """Writes the Hub-ready folder `output_dir`, replacing it whole.

    `widget_examples` are the card's widget entries with this model's outputs (`xlm_hf.jobs.widget_examples`
    computes them from the model in memory); without them the card has none. The export never generates.

    The complete folder is written next to the target (`.<name>.staging-<pid>`) and swapped in by renames, so at
    every instant `output_dir` is the complete old folder or the complete new one (see `swap_in_folder`): a kill
    or a full disk never leaves weights of one export under the config of another. What the old folder holds
    besides an export (`results.json`, `predictions/`, Trainer's checkpoints and state) is carried into the new
    one by hard links (no copy of the data)."""
    family = get_family(family) if isinstance(family, str) else family
    if not isinstance(model, family.model_class):
        raise ValueError(
            f"Cannot export a {type(model).__name__} as family {family.name!r} (its model class is "
            f"{family.model_class.__name__}): the folder would carry the wrong card and pipelines. Pass the model's "
            "own family."
        )
    # the folder is meant to be shared: the training machine's paths (output_dir, data cache) stay out of it
    experiment = strip_local_paths(experiment) if experiment is not None else None
    output_dir = Path(output_dir)
    if output_dir.is_symlink():
        output_dir = output_dir.resolve()  # replace the folder the link points to, keep the link
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"Cannot export to {output_dir}: it is a file, not a folder.")
    output_dir.parent.mkdir(parents=True, exist_ok=True)
    recover_export(output_dir)  # what an earlier, killed export of this folder left behind
    check_tokenizer_matches_model(tokenizer, model.config)

    # save_pretrained copies a class's module (and its relative imports) only for classes registered for an
    # auto class; auto_map then lists every entry point the family offers.
    type(model.config).register_for_auto_class("AutoConfig")
    type(model).register_for_auto_class("AutoModel")
    model.config.auto_map = dict(family.auto_map)
    staging = _sibling(output_dir, STAGING_TAG, os.getpid())
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        install_pipelines(staging, family)  # the family's Hub pipelines (text-generation, infill)
        install_handler(staging)  # the Inference Endpoints handler (`modeling/handler.py`)
        if experiment is not None:
            dump_experiment(experiment, staging / EXPERIMENT_FILE)
        for item in staging.iterdir():
            if item.is_file():
                os.chmod(item, 0o644)  # a checkpoint is meant to be shared
        if output_dir.is_dir():
            _carry_over(output_dir, staging)  # results.json (for the card), predictions/, checkpoints ...
        write_model_card(
            staging,
            family=family,
            experiment=experiment,
            model_name=output_dir.resolve().name,
            examples=widget_examples or [],
        )
        swap_in_folder(staging, output_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return output_dir


def install_pipelines(folder: str | os.PathLike, family: Family | str) -> list[str]:
    """Copies `pipeline_xlm.py` next to the model and registers the family's pipelines (`Family.pipelines`) in
    `config.json:custom_pipelines`; returns the registered task names (none for a family without pipelines)."""
    family = get_family(family) if isinstance(family, str) else family
    if not family.pipelines:
        return []
    folder = Path(folder)
    from . import modeling

    source = Path(modeling.__file__).parent / PIPELINE_FILE
    # with the sibling files it imports (as transformers copies a model's relative imports)
    for path in [source, *get_relative_import_files(source)]:
        shutil.copy(path, folder / Path(path).name)
    config_file = folder / "config.json"
    config = json.loads(config_file.read_text())
    pipelines = json.loads(json.dumps(family.pipelines))  # a copy: the record stays as registered
    config["custom_pipelines"] = {**config.get("custom_pipelines", {}), **pipelines}
    config_file.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    return sorted(pipelines)


HANDLER_FILE = "handler.py"


def install_handler(folder: str | os.PathLike) -> Path:
    """Copies `handler.py` (an Inference Endpoints `EndpointHandler`; it imports only torch and transformers and
    loads the folder's own classes through `trust_remote_code`) next to the model."""
    from . import modeling

    target = Path(folder) / HANDLER_FILE
    shutil.copy(Path(modeling.__file__).parent / HANDLER_FILE, target)
    return target


# ----- replacing a folder whole ---------------------------------------------------------------------------------

STAGING_TAG, OLD_TAG = "staging", "old"
# Top-level files that an export writes: never carried over from the folder it replaces (an old export's shards,
# modeling files of another family, or its card would otherwise outlive it).
EXPORT_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "tokenizer*.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.*",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "*.py",
    "README.md",
    EXPERIMENT_FILE,
)


def _sibling(target: Path, tag: str, pid: int) -> Path:
    return target.parent / f".{target.name}.{tag}-{pid}"


def _siblings(target: Path, tag: str) -> dict[int, Path]:
    """The `.<name>.<tag>-<pid>` folders next to `target`, by pid."""
    prefix = f".{target.name}.{tag}-"
    found = {}
    if target.parent.is_dir():
        for path in target.parent.iterdir():
            if path.name.startswith(prefix) and path.name[len(prefix) :].isdigit():
                found[int(path.name[len(prefix) :])] = path
    return found


def _pid_alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # a leftover of this process (its earlier export of the folder ended)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _carry_over(old: Path, new: Path) -> None:
    """Hard-links into `new` what `old` holds besides an export (copies where links are not possible)."""
    for item in old.iterdir():
        if (new / item.name).exists() or item.name.startswith("."):
            continue  # written by this export, or a hidden temporary file
        if item.is_file() and any(fnmatch.fnmatch(item.name, pattern) for pattern in EXPORT_FILE_PATTERNS):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.copytree(item, new / item.name, symlinks=True, copy_function=_link_or_copy)
        else:
            _link_or_copy(item, new / item.name)


def _link_or_copy(source: str | os.PathLike, destination: str | os.PathLike) -> None:
    if os.path.islink(source):
        os.symlink(os.readlink(source), destination)
        return
    try:
        os.link(source, destination)
    except OSError:  # another file system, or one without hard links
        shutil.copy2(source, destination)


def swap_in_folder(staging: Path, target: Path) -> None:
    """Replaces `target` by the complete folder `staging` (a sibling of it) so that `target` is always whole.

    1. `target` -> `.<name>.old-<pid>`; 2. `staging` -> `target`; 3. the old folder is removed. Between 1 and 2
    `target` is missing for an instant; a process killed there leaves `.old-<pid>` and a complete `staging`, and
    `recover_export` (run by every export and every load) finishes the swap.
    """
    if not target.exists():
        os.rename(staging, target)
        return
    old = _sibling(target, OLD_TAG, os.getpid())
    shutil.rmtree(old, ignore_errors=True)
    os.rename(target, old)
    try:
        os.rename(staging, target)
    except OSError:
        if not target.exists():
            os.rename(old, target)  # put the old folder back: never leave the target missing
        raise
    shutil.rmtree(old, ignore_errors=True)


def recover_export(target: str | os.PathLike) -> None:
    """Finishes or undoes what an export of `target` killed mid-way left (only of processes that are gone).

    - `target` missing, `.old-<pid>` present: the kill came between the two renames, so `.staging-<pid>` is the
      complete new folder: it becomes `target` (the old folder when there is no staging).
    - otherwise leftover `.staging-*` (an unfinished export) and `.old-*` (a replaced folder) are removed.
    """
    target = Path(target)
    stagings = {pid: path for pid, path in _siblings(target, STAGING_TAG).items() if not _pid_alive(pid)}
    olds = {pid: path for pid, path in _siblings(target, OLD_TAG).items() if not _pid_alive(pid)}
    if not target.exists() and olds:
        pid = max(olds)
        os.rename(stagings.pop(pid) if pid in stagings else olds.pop(pid), target)
    for path in [*stagings.values(), *olds.values()]:
        shutil.rmtree(path, ignore_errors=True)


def read_experiment_file(model_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The `experiment.yaml` of a model folder as a mapping, None when there is none; one error naming the file
    when it is not a YAML mapping."""
    import yaml

    from .experiment import parse_yaml

    path = Path(model_dir) / EXPERIMENT_FILE
    if not path.is_file():
        return None
    try:
        experiment = parse_yaml(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        reason = " ".join(str(error).split())
        raise ValueError(f"{path} is not valid YAML ({reason}); fix or delete the file.") from error
    if experiment is None:
        return {}
    if not isinstance(experiment, dict):
        raise ValueError(
            f"{path} holds a {type(experiment).__name__}, not a mapping of sections (family, model, data, ...); "
            "fix or delete the file."
        )
    return experiment


def resolve_model_dir(name_or_path: str | os.PathLike, revision: str | None = None) -> Path:
    """A local folder as is; otherwise a Hub id, fetched with `snapshot_download` (the Hub cache is used first)."""
    path = Path(name_or_path)
    recover_export(path)  # an export killed between its two renames leaves the folder missing for a moment
    if path.is_dir():
        if revision is not None:
            raise ValueError(
                f"A revision ({revision!r}) applies to Hub models, and {path} is a local folder: drop the revision "
                "(--revision), or give the Hub id."
            )
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


logger = logging.getLogger(__name__)

# Files of which a saved tokenizer needs `tokenizer_config.json` and at least one vocabulary file.
TOKENIZER_VOCABULARY_FILES = ("tokenizer.json", "vocab.json", "vocab.txt", "tokenizer.model", "spiece.model")


def _read_json_object(path: Path) -> dict[str, Any]:
    """The JSON object in `path`; one error naming the file when it is not one (junk, truncated, a list)."""
    try:
        content = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(
            f"{path} is not valid JSON ({error}): restore the file from the model's export."
        ) from error
    if not isinstance(content, dict):
        raise ValueError(
            f"{path} holds a {type(content).__name__}, not a JSON object: restore the file from the model's export."
        )
    return content


@contextmanager
def _quiet_transformers_warnings():
    """transformers logs its load report (a table) before the family's `from_pretrained` refuses the same problems
    in one error, and a damaged file adds notes on tensor parallelism: the command line shows only the error."""
    transformers_logger = logging.getLogger("transformers")
    level = transformers_logger.level
    transformers_logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        transformers_logger.setLevel(level)


def load_model_and_tokenizer(
    name_or_path: str | os.PathLike, revision: str | None = None
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, Family, Path]:
    """Loads an xlm_hf export with the installed family classes, checking each file in the order it is read, so
    that every problem is one error naming the file and what to do. Weights that do not match the config (missing,
    unexpected, mis-shaped or non-finite tensors) are refused by the family's `from_pretrained`."""
    model_dir = resolve_model_dir(name_or_path, revision)
    config_file = model_dir / "config.json"
    if not config_file.is_file():
        raise ValueError(f"{model_dir} has no config.json: it is not a saved model folder.")
    config_dict = _read_json_object(config_file)
    try:
        family = family_for_model_type(config_dict.get("model_type"))
    except ValueError as error:
        raise ValueError(f"{config_file}: {error}") from error
    if "auto_map" not in config_dict:  # e.g. a Trainer checkpoint: it loads here, but is not for sharing
        logger.warning(
            f"{model_dir} was not exported by xlm-hf export (no auto_map in config.json): it loads here, with the "
            "installed xlm_hf, but not where xlm_hf is missing. To share it, export it with xlm_hf.export_model "
            "(xlm-hf train does)."
        )
    try:
        config = family.config_class.from_pretrained(model_dir)
    except (TypeError, ValueError) as error:
        raise ValueError(
            f"{config_file} holds an invalid value: {error} Restore the file from its export."
        ) from error

    generation_file = model_dir / GENERATION_CONFIG_NAME
    if generation_file.is_file():  # transformers would take an unreadable file for none and use defaults
        _read_json_object(generation_file)
        generation_config_class = (
            getattr(family.model_class, "generation_config_class", None) or GenerationConfig
        )
        try:
            generation_config_class.from_pretrained(model_dir)
        except Exception as error:
            raise ValueError(
                f"{generation_file} holds an invalid generation setting: {error} Fix it, or delete the file to use "
                "the family's defaults."
            ) from error

    if not list(model_dir.glob("*.safetensors")):
        raise ValueError(
            f"{model_dir} has no *.safetensors weights: the export is incomplete; re-run the export."
        )
    try:
        with _quiet_transformers_warnings():
            model = family.model_class.from_pretrained(model_dir, config=config)
    except ValueError:
        raise  # the family's checks: they name the tensors and what to do
    except Exception as error:  # safetensors cannot parse the file, a read error ...
        raise ValueError(
            f"Could not read the weights in {model_dir} (a damaged or truncated file?): {error}. Restore the folder "
            "from its export."
        ) from error

    missing_files = [] if (model_dir / "tokenizer_config.json").is_file() else ["tokenizer_config.json"]
    if not any((model_dir / name).is_file() for name in TOKENIZER_VOCABULARY_FILES):
        missing_files.append("tokenizer.json")
    if missing_files:
        raise ValueError(
            f"{model_dir} lacks the tokenizer files {', '.join(missing_files)}: copy them from the model's export "
            "(tokenizer.save_pretrained writes them)."
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except Exception as error:
        raise ValueError(f"Could not load the tokenizer saved in {model_dir}: {error}") from error
    try:
        check_tokenizer_matches_model(tokenizer, model.config)
    except ValueError as error:
        raise ValueError(f"{model_dir}: {error}") from error
    model.eval()
    return model, tokenizer, family, model_dir


__all__ = [
    "export_model",
    "install_handler",
    "install_pipelines",
    "load_model_and_tokenizer",
    "read_experiment_file",
    "recover_export",
    "resolve_model_dir",
    "swap_in_folder",
    "EXPERIMENT_FILE",
    "RESULTS_FILE",
]
