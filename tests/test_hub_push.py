"""The Hub life cycle of a tiny ARLM from the CLI: train (with training.push_to_hub) -> eval -> card -> push -> pull.

Nothing reaches the network: pushes are intercepted at the `huggingface_hub.HfApi` boundary (its `create_repo`,
`create_branch`, `create_commit` and `upload_*` methods are replaced by recorders), and pulls read a local folder laid
out as the Hub cache (`models--org--name/refs/<branch>` + `snapshots/<commit>/`).
"""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from huggingface_hub import CommitOperationAdd, HfApi, ModelCard, constants

from xlm_hf.cli import main

REPO_ID = "my-org/tiny-arlm"


TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "training.per_device_train_batch_size=16",
    "training.max_steps=10",
    "training.logging_steps=5",
    "training.eval_strategy=no",
    "training.disable_tqdm=true",
]
# What a Hub-ready ARLM folder holds, and nothing else.
ARLM_FILES = [
    "README.md",
    "backbone.py",
    "config.json",
    "configuration_arlm.py",
    "configuration_backbone.py",
    "experiment.yaml",
    "generation_config.json",
    "generation_utils.py",  # imported by pipeline_xlm.py (which tokens are new)
    "handler.py",  # the Inference Endpoints handler
    "model.safetensors",
    "modeling_arlm.py",
    "pipeline_xlm.py",
    "tokenizer.json",
    "tokenizer_config.json",
]


class RecordingHub:
    """Stands in for the Hub: records every HfApi call that would write to it."""

    def __init__(self):
        self.calls: list[tuple[str, dict]] = []
        self.commits: list[dict] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.calls]

    def install(self, monkeypatch):
        hub = self

        def create_repo(api, repo_id, **kwargs):
            hub.calls.append(
                ("create_repo", {"repo_id": repo_id, "endpoint": api.endpoint, "token": api.token, **kwargs})
            )
            return SimpleNamespace(repo_id=repo_id)

        def create_branch(api, repo_id, *, branch, **kwargs):
            hub.calls.append(("create_branch", {"repo_id": repo_id, "branch": branch, **kwargs}))

        def create_commit(api, repo_id, operations, *, commit_message, **kwargs):
            files = {}
            for op in operations:
                assert isinstance(op, CommitOperationAdd)
                with op.as_file() as handle:
                    files[op.path_in_repo] = handle.read()
            hub.calls.append(
                ("create_commit", {"repo_id": repo_id, "commit_message": commit_message, **kwargs})
            )
            hub.commits.append({"files": files, "commit_message": commit_message, **kwargs})
            return SimpleNamespace(commit_url=f"https://hub.test/{repo_id}/commit/0", oid="0" * 40)

        def forbidden(name):
            def record(api, *args, **kwargs):
                hub.calls.append((name, kwargs))
                raise AssertionError(f"HfApi.{name} must not be called")

            return record

        monkeypatch.setattr(HfApi, "create_repo", create_repo)
        monkeypatch.setattr(HfApi, "create_branch", create_branch)
        monkeypatch.setattr(HfApi, "create_commit", create_commit)
        for name in ("upload_folder", "upload_file", "upload_large_folder", "create_pull_request"):
            if hasattr(HfApi, name):
                monkeypatch.setattr(HfApi, name, forbidden(name))
        return self


@pytest.fixture
def hub(monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_test_token")
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.example.test")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return RecordingHub().install(monkeypatch)


@pytest.fixture(scope="module")
def trained(tmp_path_factory, data_dir):
    """Trains with training.push_to_hub=true (intercepted); returns the folder and what was pushed."""
    out = tmp_path_factory.mktemp("hub") / "tiny-arlm"
    with pytest.MonkeyPatch.context() as monkeypatch:
        monkeypatch.setenv("HF_TOKEN", "hf_test_token")
        monkeypatch.delenv("HF_ENDPOINT", raising=False)
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        recorder = RecordingHub().install(monkeypatch)
        overrides = [
            *TINY,
            f"training.output_dir={out}",
            "training.push_to_hub=true",
            f"training.hub_model_id={REPO_ID}",
        ]
        assert main(["train", "star_easy_arlm", *overrides]) == 0
    return SimpleNamespace(dir=out, hub=recorder)


def load_card(content: bytes, tmp_path: Path) -> ModelCard:
    path = tmp_path / "README.md"
    path.write_bytes(content)
    return ModelCard.load(path)


def test_training_pushes_the_exported_folder_not_trainer_output(trained, tmp_path):
    hub = trained.hub
    # one repo creation and one commit, both ours: Trainer neither created the repo nor uploaded output_dir
    assert hub.names() == ["create_repo", "create_commit"]
    assert hub.calls[0][1]["repo_id"] == REPO_ID and hub.calls[0][1]["private"] is False
    commit = hub.commits[0]
    assert sorted(commit["files"]) == ARLM_FILES
    assert commit["commit_message"] == "Training run tiny-arlm (xlm-hf train)"
    assert commit["revision"] == "main"
    # the push keys (and any token) stay out of the recorded experiment
    experiment = (trained.dir / "experiment.yaml").read_text()
    assert "push_to_hub" not in experiment and "hub_" not in experiment
    card = load_card(commit["files"]["README.md"], tmp_path)
    assert f'"{REPO_ID}"' in card.text and "trust_remote_code=True" in card.text


def test_eval_card_then_push_uploads_exactly_the_hub_files(trained, hub, tmp_path, capsys):
    model_dir = trained.dir
    assert main(["eval", str(model_dir), "--task", "star_easy", "--split", "test", "--limit", "8"]) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert main(["card", str(model_dir)]) == 0
    local_card = ModelCard.load(model_dir / "README.md")
    # 8 examples of the test split: the table says so, and model-index (the split's score) stays empty
    results = json.loads((model_dir / "results.json").read_text())
    assert results["num_examples"] == 8 and results["split_size"] > 8
    assert f"test split of star_easy, first 8 of {results['split_size']} examples" in local_card.text
    assert not local_card.data.eval_results
    exact_match = round(metrics["eval_prediction_exact_match"], 4)
    assert f"| eval_prediction_exact_match | {exact_match} |" in local_card.text

    # training leftovers that must never be uploaded
    (model_dir / "checkpoint-5").mkdir(exist_ok=True)
    (model_dir / "checkpoint-5" / "optimizer.pt").write_bytes(b"x")
    for junk in ("optimizer.pt", "scheduler.pt", "rng_state.pth", "training_args.bin", "trainer_state.json"):
        (model_dir / junk).write_bytes(b"x")
    assert (model_dir / "predictions").is_dir()  # written by eval

    argv = [
        "push",
        str(model_dir),
        "--repo-id",
        REPO_ID,
        "--private",
        "--revision",
        "exp-1",
        "--commit-message",
        "v1",
    ]
    assert main(argv) == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert hub.names() == ["create_repo", "create_branch", "create_commit"]
    repo_call, branch_call, _ = (kwargs for _, kwargs in hub.calls)
    assert repo_call["repo_id"] == REPO_ID and repo_call["private"] is True
    assert repo_call["endpoint"] == "https://hub.example.test" and repo_call["token"] == "hf_test_token"
    assert branch_call["branch"] == "exp-1"
    commit = hub.commits[0]
    assert commit["commit_message"] == "v1" and commit["revision"] == "exp-1"
    assert sorted(commit["files"]) == sorted([*ARLM_FILES, "results.json"]) == printed["files"]
    assert commit["files"]["model.safetensors"] == (model_dir / "model.safetensors").read_bytes()
    assert (
        json.loads(commit["files"]["config.json"])["auto_map"]["AutoModelForCausalLM"]
        == "modeling_arlm.ARLMForCausalLM"
    )

    card = load_card(commit["files"]["README.md"], tmp_path)
    data = card.data
    assert data.library_name == "transformers" and data.pipeline_tag == "text-generation"
    assert {"xlm-hf", "arlm", "custom_code"} <= set(data.tags)
    assert (
        data.license == "apache-2.0" and data.datasets is None
    )  # star_easy is generated locally, not on the Hub
    assert not data.eval_results and f"| eval_prediction_exact_match | {exact_match} |" in card.text
    assert f'from_pretrained("{REPO_ID}", trust_remote_code=True)' in card.text
    # the uploaded experiment.yaml records the repo id (a fine-tune of a copy finds its base); the local one does not
    from xlm_hf.experiment import parse_yaml

    assert parse_yaml(commit["files"]["experiment.yaml"].decode())["card"]["hub_model_id"] == REPO_ID
    assert "hub_model_id" not in (model_dir / "experiment.yaml").read_text()
    assert str(model_dir) not in commit["files"]["experiment.yaml"].decode()  # no output_dir of this machine
    assert "arxiv.org/abs/1706.03762" in card.text and "## Limitations" in card.text


def test_widget_outputs_are_generations_of_the_checkpoint(trained):
    from xlm_hf.jobs import generate

    widget = ModelCard.load(trained.dir / "README.md").data.widget
    assert widget and all(example["output"]["text"].startswith(example["text"]) for example in widget)
    continuations = generate(str(trained.dir), [example["text"] for example in widget])
    assert [example["output"]["text"] for example in widget] == [
        f"{example['text']} {text}".strip() for example, text in zip(widget, continuations)
    ]


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--repo-id", "no-namespace"], "Malformed repo id"),
        (["--repo-id", "a/b/c"], "Malformed repo id"),
        (["--repo-id", "my-org/bad name"], "Malformed repo id"),
        (["--repo-id", "my-org/x--y"], "Malformed repo id"),
    ],
)
def test_malformed_repo_id_fails_before_any_request(trained, hub, argv, message, capsys):
    assert main(["push", str(trained.dir), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1
    assert hub.calls == []


def test_missing_token_fails_before_any_request(trained, hub, monkeypatch, tmp_path, capsys):
    for name in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_OIDC_RESOURCE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(tmp_path / "no-token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(tmp_path / "no-tokens"), raising=False)
    assert main(["push", str(trained.dir), "--repo-id", REPO_ID]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "No Hugging Face token" in err and "HF_TOKEN" in err
    assert hub.calls == []
    # the same check runs before training starts when the experiment asks for a push
    out = tmp_path / "never-trained"
    argv = [
        "train",
        "star_easy_arlm",
        *TINY,
        f"training.output_dir={out}",
        "training.push_to_hub=true",
        f"training.hub_model_id={REPO_ID}",
    ]
    assert main(argv) == 2
    assert "No Hugging Face token" in capsys.readouterr().err and not out.exists()


def test_push_asks_for_a_complete_folder(trained, hub, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(trained.dir, broken, ignore=shutil.ignore_patterns("predictions", "checkpoint-*"))
    (broken / "model.safetensors").unlink()
    assert main(["push", str(broken), "--repo-id", REPO_ID]) == 2
    assert "no *.safetensors weights" in capsys.readouterr().err
    assert main(["train", "star_easy_arlm", "training.push_to_hub=true"]) == 2
    assert "hub_model_id" in capsys.readouterr().err
    assert hub.calls == []


# ----- pull: a Hub id read from the local Hub cache ------------------------------------------------------------


def build_hub_cache(root: Path, repo_id: str, branches: dict[str, Path]) -> Path:
    """`root` laid out as huggingface_hub's cache, with one snapshot per branch."""
    from xlm_hf.hub import hub_files

    repo = root / ("models--" + repo_id.replace("/", "--"))
    for index, (branch, folder) in enumerate(branches.items()):
        commit = f"{index + 1:040x}"
        snapshot = repo / "snapshots" / commit
        snapshot.mkdir(parents=True)
        for name in hub_files(folder):
            shutil.copy(folder / name, snapshot / name)
        (repo / "refs").mkdir(exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return repo


def test_eval_and_generate_pull_a_hub_id_from_the_cache(trained, tmp_path, monkeypatch, capsys):
    other = tmp_path / "other"
    shutil.copytree(trained.dir, other, ignore=shutil.ignore_patterns("predictions", "checkpoint-*"))
    config = json.loads((other / "generation_config.json").read_text())
    config["max_new_tokens"] = 2  # tells the branches apart
    (other / "generation_config.json").write_text(json.dumps(config))
    build_hub_cache(tmp_path / "cache", REPO_ID, {"main": trained.dir, "exp-1": other})
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    prompt = "18 3 14 11 3 16 10 4 14 10 14 5 1 6 11 18 9 0 0 17 4 1 5 9 14 17"

    assert main(["generate", str(trained.dir), "--prompt", prompt]) == 0
    local = capsys.readouterr().out.strip()
    assert main(["generate", REPO_ID, "--prompt", prompt]) == 0
    assert capsys.readouterr().out.strip() == local
    assert main(["generate", REPO_ID, "--revision", "exp-1", "--prompt", prompt]) == 0
    assert len(capsys.readouterr().out.split()) <= 2

    assert main(["eval", REPO_ID, "--revision", "exp-1", "--limit", "4"]) == 0
    assert "eval_prediction_exact_match" in json.loads(capsys.readouterr().out.strip().splitlines()[-1])

    assert main(["generate", REPO_ID, "--revision", "no-such-branch", "--prompt", prompt]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "no-such-branch" in err
