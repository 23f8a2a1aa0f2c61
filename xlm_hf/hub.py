"""Pushing a Hub-ready folder to the Hugging Face Hub.

`push_to_hub(model_dir, "org/name")` uploads exactly the files a checkpoint needs, in one commit, through
`huggingface_hub.HfApi` (`create_repo`, `create_branch` for `revision`, `create_commit`):

- weights (`*.safetensors`, their index), `config.json` (with `auto_map`), the modeling files (`*.py`),
  the tokenizer files, `generation_config.json`, the model card `README.md` (re-rendered with the repo id, keeping
  its widget outputs: a push never loads the model or generates),
  `results.json` and `experiment.yaml` (with `card.hub_model_id` set to the repo); for a LoRA adapter folder,
  `adapter_config.json`, its weights and its card;
- never `predictions/`, `checkpoint-*/`, optimizer / scheduler / RNG states, `trainer_state.json`,
  `training_args.bin` or any other pickle.

Everything that can be checked is checked before the first request: the folder, the repo id (`org/name`), a token
(argument, `HF_TOKEN`, or the one saved by `hf auth login`, all through `huggingface_hub.get_token()`) and
offline mode. `HF_ENDPOINT` is respected (a mirror or a private Hub).

Training pushes too: `training.push_to_hub=true training.hub_model_id=org/name` in an experiment makes
`xlm_hf.jobs.train` push the *exported* folder once training ends (`take_push_settings` removes the `push_to_hub` /
`hub_*` keys before Trainer sees them, so Trainer never pushes its `output_dir` with checkpoints, and a token given
as `hub_token` never lands in `experiment.yaml`).
"""

import fnmatch
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Files of a Hub-ready folder (top level only). Anything else in the folder is left out of the upload.
HUB_FILE_PATTERNS = (
    "config.json",
    "generation_config.json",
    "*.safetensors",
    "model.safetensors.index.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "vocab.txt",
    "merges.txt",
    "tokenizer.model",
    "chat_template.jinja",
    "*.py",
    "README.md",
    "results.json",
    "experiment.yaml",
    "adapter_config.json",
)
# Never uploaded, even if a pattern above matched (pickles, Trainer state).
EXCLUDED_PATTERNS = (
    "*.bin",
    "*.pt",
    "*.pth",
    "*.pkl",
    "*.ckpt",
    "trainer_state.json",
    "training_args.*",
    ".*",
)

# Keys of the training section that ask for a push (TrainingArguments' names).
PUSH_KEYS = (
    "push_to_hub",
    "hub_model_id",
    "hub_private_repo",
    "hub_revision",
    "hub_token",
    "hub_strategy",
    "hub_always_push",
)


class HubError(ValueError):
    """A push that cannot start (bad repo id, no token, offline, incomplete folder): says what to fix."""


# ----- exported folders ----------------------------------------------------------------------------------------


def hub_files(model_dir: str | os.PathLike) -> list[str]:
    """The files of `model_dir` that a push uploads (sorted names, top level only)."""
    model_dir = Path(model_dir)
    names = []
    for path in sorted(model_dir.iterdir()):
        if not path.is_file():
            continue  # predictions/, checkpoint-*/, runs/ ...
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in EXCLUDED_PATTERNS):
            continue
        if any(fnmatch.fnmatch(path.name, pattern) for pattern in HUB_FILE_PATTERNS):
            names.append(path.name)
    return names


def check_hub_folder(model_dir: str | os.PathLike) -> list[str]:
    """The files to upload, or one error naming what makes the folder unfit for the Hub."""
    from .export import recover_export

    model_dir = Path(model_dir)
    recover_export(
        model_dir
    )  # an export killed between its two renames leaves the folder missing for a moment
    if not model_dir.is_dir():
        raise HubError(f"{model_dir} is not a folder: push takes the folder `xlm-hf train` exported.")
    names = hub_files(model_dir)
    is_adapter = "adapter_config.json" in names
    if "config.json" not in names and not is_adapter:
        raise HubError(f"{model_dir} has no config.json: it is not a saved model folder.")
    if not any(name.endswith(".safetensors") for name in names):
        raise HubError(
            f"{model_dir} has no *.safetensors weights: the export is incomplete; re-run the export."
        )
    if not is_adapter:
        config = json.loads((model_dir / "config.json").read_text())
        auto_map = config.get("auto_map") or {}
        if config.get("model_type", "").startswith("xlm-hf-") and "AutoModel" not in auto_map:
            raise HubError(
                f"{model_dir}/config.json has no auto_map: the folder would not load with trust_remote_code=True. "
                "Re-export it (xlm_hf.export.export_model)."
            )
        missing = sorted(
            {value.split(".")[0] + ".py" for value in auto_map.values() if "--" not in value} - set(names)
        )
        if missing:
            raise HubError(f"{model_dir} lacks the modeling files its auto_map names: {', '.join(missing)}.")
    return names


# ----- checks before any request -------------------------------------------------------------------------------


def check_repo_id(repo_id: str) -> str:
    """`org/name` (or `user/name`) as the Hub accepts it; one error otherwise."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(repo_id, str) or repo_id.count("/") != 1 or not all(repo_id.split("/")):
        raise HubError(
            f"Malformed repo id {repo_id!r}: give it as ORG/NAME (for example my-org/star-easy-arlm)."
        )
    try:
        validate_repo_id(repo_id)
    except HFValidationError as error:
        raise HubError(
            f"Malformed repo id {repo_id!r}: ORG and NAME may hold letters, digits, '-', '_' and '.', "
            f"at most 96 characters, no '--' or '..'. ({error})"
        ) from error
    return repo_id


def check_revision(revision: str | None) -> str | None:
    """A branch name git accepts (the rules of `git check-ref-format`); one error otherwise."""
    if revision is None:
        return None
    if not isinstance(revision, str):
        raise HubError(f"Malformed revision {revision!r}: give a branch name such as exp-1.")
    forbidden = set(" ~^:?*[\\") | {chr(code) for code in range(32)} | {chr(127)}
    parts = revision.split("/")
    if (
        not revision
        or forbidden & set(revision)
        or ".." in revision
        or "@{" in revision
        or revision == "@"
        or revision.endswith((".", ".lock"))
        or any(not part or part.startswith(".") for part in parts)
        or revision.startswith("-")
    ):
        raise HubError(
            f"Malformed revision {revision!r}: a branch name has no spaces, '..', '~', '^', ':', '?', '*', '[', "
            "'\\' or '@{', no empty or dot-led '/' parts, and does not start with '-' or end with '.' or '.lock'."
        )
    return revision


def resolve_token(token: str | None = None) -> str:
    """The token to push with: the argument, else `HF_TOKEN` or the saved login (`huggingface_hub.get_token`)."""
    import huggingface_hub

    token = token or huggingface_hub.get_token()
    if not token:
        raise HubError(
            "No Hugging Face token: set HF_TOKEN (a token with write access) or run `hf auth login`, then push again."
        )
    return token


def _check_online() -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise HubError("HF_HUB_OFFLINE is set: unset it to push to the Hub.")


def _endpoint() -> str | None:
    return os.environ.get("HF_ENDPOINT") or None


# ----- push ----------------------------------------------------------------------------------------------------


@dataclass
class PushResult:
    repo_id: str
    revision: str
    files: list[str]
    commit_url: str | None
    commit_oid: str | None


def _card_bytes(model_dir: Path, repo_id: str) -> bytes | None:
    """The card re-rendered with the repo id in its usage snippet and the widget outputs it already has (the
    local README.md is left as it is); None when the folder is neither an xlm_hf model nor an adapter of one (its
    README.md is then uploaded as is)."""
    config_file = model_dir / "config.json"
    if config_file.is_file():
        model_type = json.loads(config_file.read_text()).get("model_type", "")
        if not str(model_type).startswith("xlm-hf-"):
            return None
    elif not (model_dir / "experiment.yaml").is_file():  # an adapter folder scripts/finetune.py did not write
        return None
    from .model_card import render_model_card

    return str(render_model_card(model_dir, repo_id=repo_id)).encode()


def _experiment_bytes(model_dir: Path, repo_id: str) -> bytes:
    """`experiment.yaml` as uploaded: with `card.hub_model_id` set to the repo, so that a copy of the repo knows
    its Hub id (a fine-tune of it records that id as its base model). The local file is left as it is."""
    import yaml

    from .export import read_experiment_file

    experiment = read_experiment_file(model_dir) or {}
    experiment["card"] = {**(experiment.get("card") or {}), "hub_model_id": repo_id}
    return yaml.safe_dump(experiment, sort_keys=False).encode()  # as `dump_experiment` writes it


def push_to_hub(
    model_dir: str | os.PathLike,
    repo_id: str,
    *,
    private: bool = False,
    revision: str | None = None,
    commit_message: str | None = None,
    token: str | None = None,
    render_card: bool = True,
) -> PushResult:
    """Uploads the Hub-ready files of `model_dir` to `repo_id` in one commit (see the module docstring).

    `revision` is a branch (created from `main` when it does not exist yet); `private` applies when the repo is
    created. Returns the repo, branch, uploaded file names and the commit.
    """
    from huggingface_hub import CommitOperationAdd, HfApi

    model_dir = Path(model_dir)
    if is_space_folder(model_dir):  # written by `xlm-hf space`: pushed as a Space
        return _push_space(model_dir, repo_id, private, revision, commit_message, token)
    names = check_hub_folder(model_dir)
    check_repo_id(repo_id)
    check_revision(revision)
    token = resolve_token(token)
    _check_online()
    rendered: dict[str, bytes] = {}
    if "experiment.yaml" in names:
        rendered["experiment.yaml"] = _experiment_bytes(model_dir, repo_id)
    card = _card_bytes(model_dir, repo_id) if render_card and "README.md" in names else None
    if card is not None:
        rendered["README.md"] = card
    operations = [
        CommitOperationAdd(path_in_repo=name, path_or_fileobj=rendered.get(name, str(model_dir / name)))
        for name in names
    ]
    message = commit_message or f"Upload {model_dir.resolve().name} with xlm-hf"

    api = HfApi(endpoint=_endpoint(), token=token, library_name="xlm-hf")
    branch = revision or "main"
    try:
        api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, repo_type="model", exist_ok=True)
        info = api.create_commit(
            repo_id, operations=operations, commit_message=message, repo_type="model", revision=branch
        )
    except (
        Exception
    ) as error:  # unreachable endpoint, refused token, rejected branch ...: one line, the cause
        reason = " ".join(str(error).split()) or type(error).__name__
        raise HubError(
            f"Pushing to {repo_id} on {api.endpoint} failed ({type(error).__name__}: {reason[:300]}); check the "
            "network, HF_ENDPOINT and that the token may write to the repo, then push again."
        ) from error
    return PushResult(
        repo_id=repo_id,
        revision=branch,
        files=names,
        commit_url=getattr(info, "commit_url", None),
        commit_oid=getattr(info, "oid", None),
    )


SPACE_FILES = ("app.py", "xlm_demo.py", "handler.py", "requirements.txt", "README.md")


def is_space_folder(folder: str | os.PathLike) -> bool:
    """Whether `folder` is a Space that `xlm-hf space` wrote (its app and README with `sdk:` metadata)."""
    folder = Path(folder)
    readme = folder / "README.md"
    return (
        (folder / "app.py").is_file()
        and readme.is_file()
        and "\nsdk:" in readme.read_text(encoding="utf-8").split("\n---", 1)[0]
    )


def _push_space(
    folder: Path,
    repo_id: str,
    private: bool,
    revision: str | None,
    commit_message: str | None,
    token: str | None,
) -> PushResult:
    """Uploads a Space folder (`repo_type="space"`, Gradio SDK) in one commit."""
    from huggingface_hub import CommitOperationAdd, HfApi

    names = [name for name in SPACE_FILES if (folder / name).is_file()]
    check_repo_id(repo_id)
    check_revision(revision)
    token = resolve_token(token)
    _check_online()
    operations = [CommitOperationAdd(path_in_repo=name, path_or_fileobj=str(folder / name)) for name in names]
    api = HfApi(endpoint=_endpoint(), token=token, library_name="xlm-hf")
    branch = revision or "main"
    try:
        api.create_repo(repo_id, repo_type="space", space_sdk="gradio", private=private, exist_ok=True)
        if branch != "main":
            api.create_branch(repo_id, branch=branch, repo_type="space", exist_ok=True)
        info = api.create_commit(
            repo_id,
            operations=operations,
            commit_message=commit_message or "Upload the xlm-hf demo Space",
            repo_type="space",
            revision=branch,
        )
    except Exception as error:  # unreachable endpoint, refused token ...: one line, the cause
        reason = " ".join(str(error).split()) or type(error).__name__
        raise HubError(
            f"Pushing the Space {repo_id} on {api.endpoint} failed ({type(error).__name__}: {reason[:300]}); check "
            "the network, HF_ENDPOINT and that the token may write to it, then push again."
        ) from error
    return PushResult(
        repo_id=repo_id,
        revision=branch,
        files=names,
        commit_url=getattr(info, "commit_url", None),
        commit_oid=getattr(info, "oid", None),
    )


# ----- push at the end of training -----------------------------------------------------------------------------


def take_push_settings(experiment: dict[str, Any]) -> dict[str, Any] | None:
    """Removes the push keys from `experiment["training"]` (Trainer must not push its output_dir: that would
    upload checkpoints and optimizer states) and returns them when a push is asked for. Checks the repo id and
    the token now, so that a training run never ends in a push that cannot start."""
    training = experiment.get("training") or {}
    settings = {key: training.pop(key) for key in PUSH_KEYS if key in training}
    if not settings.get("push_to_hub"):
        return None
    repo_id = settings.get("hub_model_id")
    if not repo_id:
        raise HubError(
            "training.push_to_hub=true needs training.hub_model_id=ORG/NAME (the repo to push to)."
        )
    check_repo_id(repo_id)
    check_revision(settings.get("hub_revision"))
    settings["hub_token"] = resolve_token(settings.get("hub_token"))
    _check_online()
    return settings


def push_after_training(
    settings: dict[str, Any] | None, output_dir: str | os.PathLike
) -> dict[str, Any] | None:
    """Pushes the exported folder as `take_push_settings` asked; returns a summary for the job's output."""
    if not settings:
        return None
    if os.environ.get("RANK", "0") != "0":  # under torchrun / accelerate launch only the main process pushes
        return None
    result = push_to_hub(
        output_dir,
        settings["hub_model_id"],
        private=bool(settings.get("hub_private_repo")),
        revision=settings.get("hub_revision"),
        token=settings.get("hub_token"),
        commit_message=f"Training run {Path(output_dir).resolve().name} (xlm-hf train)",
    )
    return {"repo_id": result.repo_id, "revision": result.revision, "commit_url": result.commit_url}


__all__ = [
    "HUB_FILE_PATTERNS",
    "HubError",
    "PushResult",
    "check_hub_folder",
    "check_repo_id",
    "check_revision",
    "hub_files",
    "is_space_folder",
    "push_after_training",
    "push_to_hub",
    "resolve_token",
    "take_push_settings",
]
