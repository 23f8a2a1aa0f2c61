"""`xlm-hf new-family`: the refusals write nothing; a generated family, in a temporary copy of the repository,
trains (`--debug overfit` drives its loss down), passes its own contract tests and exports a folder that loads
where xlm_hf cannot be imported."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from isolation import run_without_xlm_hf

from xlm_hf.cli import main
from xlm_hf.scaffold import default_root

REPO = default_root()
NAME = "toy"
TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "training.per_device_train_batch_size=8",
    "training.disable_tqdm=true",
]


def copy_of_the_repo(destination: Path) -> Path:
    """The checkout's files (tracked, and new ones git does not ignore), laid out as the editable install maps
    them: `xlm_hf.modeling` and `xlm_hf.model_cards` are the top-level folders."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.decode()
    for relative in filter(None, listed.split("\0")):
        source = REPO / relative
        if source.is_file():  # deleted but still tracked: skip
            (destination / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / relative)
    os.symlink("../modeling", destination / "xlm_hf" / "modeling")
    os.symlink("../model_cards", destination / "xlm_hf" / "model_cards")
    return destination


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """A copy of the repository with the family `toy` generated into it (default --like: mlm)."""
    root = copy_of_the_repo(tmp_path_factory.mktemp("repo"))
    return root


def run_in(root: Path, *args: str, data_dir: Path) -> subprocess.CompletedProcess:
    """A command in the copy, which comes first on the path (the installed xlm_hf is the original checkout)."""
    env = {**os.environ, "PYTHONPATH": str(root), "XLM_HF_DATA_DIR": str(data_dir), "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, *args], cwd=root, env=env, capture_output=True, text=True, timeout=300
    )


def listing() -> dict[str, list[str]]:
    """The folders new-family writes into (and the checkout itself, for a staging folder)."""
    folders = [".", "modeling", "xlm_hf", "xlm_hf/experiments", "model_cards", "tests"]
    return {folder: sorted(os.listdir(REPO / folder)) for folder in folders}


@pytest.mark.parametrize(
    "argv, message",
    [
        (["new-family", "MyLM"], "not a lowercase Python identifier"),
        (["new-family", "my-lm"], "not a lowercase Python identifier"),
        (["new-family", "class"], "not a lowercase Python identifier"),
        (["new-family", "ilm"], "exists already"),
        (["new-family", "xlm"], "model type of transformers"),
        (["new-family", "gpt_neo"], "model type of transformers"),
        (["new-family", "trainer"], "xlm_hf/trainer"),  # would shadow the module xlm_hf.trainer
        (["new-family", "my_lm", "--like", "nosuch"], "Unknown family 'nosuch'"),
        (["new-family", "my_lm", "--class-prefix", "my_LM"], "not a CamelCase identifier"),
    ],
)
def test_refusals_are_one_error_line_and_write_nothing(argv, message, capsys):
    before = listing()
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1 and message in err
    assert listing() == before


def test_an_existing_file_stops_the_whole_family(tmp_path, capsys):
    root = copy_of_the_repo(tmp_path / "repo")
    (root / "model_cards" / "other.md").write_text("mine")
    assert main(["new-family", "other", "--root", str(root)]) == 2
    assert "model_cards/other.md exist already" in capsys.readouterr().err
    assert (root / "model_cards" / "other.md").read_text() == "mine"
    assert not list(root.rglob("*other*.py")) and not (root / "xlm_hf" / "other").exists()
    assert not list(root.glob(".new-family-*"))  # no staging folder left


def test_generated_family_trains_passes_its_contracts_and_loads_without_xlm_hf(generated, data_dir, capsys):
    assert main(["new-family", NAME, "--root", str(generated)]) == 0
    printed = capsys.readouterr().out
    for path in (
        f"modeling/configuration_{NAME}.py",
        f"modeling/modeling_{NAME}.py",
        f"modeling/generation_{NAME}.py",
        f"xlm_hf/{NAME}/__init__.py",
        f"xlm_hf/{NAME}/collator_{NAME}.py",
        f"xlm_hf/{NAME}/trainer_{NAME}.py",
        f"xlm_hf/experiments/star_easy_{NAME}.yaml",
        f"model_cards/{NAME}.md",
        f"tests/test_{NAME}.py",
    ):
        assert f"  {path}\n" in printed and (generated / path).is_file()
    assert "Next steps:" in printed
    assert not (REPO / "xlm_hf" / NAME).exists()  # written into the copy only
    modeling = (generated / f"modeling/modeling_{NAME}.py").read_text()
    assert "class ToyForMaskedLM(" in modeling and f"def {NAME}_loss(" in modeling and "mlm" not in modeling

    # the copy is the one imported, and it registers the new family under its own model type
    probe = run_in(
        generated,
        "-c",
        "import xlm_hf; from xlm_hf.families import get_family; family = get_family('toy');"
        "print(xlm_hf.__file__, family.config_class.model_type, family.model_class.__name__,"
        " family.auto_map['AutoModel'], sorted(family.collators))",
        data_dir=data_dir,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    assert probe.stdout.startswith(str(generated / "xlm_hf"))
    assert "xlm-hf-toy ToyForMaskedLM modeling_toy.ToyForMaskedLM" in probe.stdout
    assert "'lm', 'seq2seq', 'seq2seq_pred'" in probe.stdout

    # (a) it learns: one batch, repeated (300 steps of the overfit preset) drives the loss down
    out = generated / "outputs" / "overfit"
    train = run_in(
        generated,
        *("-m", "xlm_hf.cli", "train", f"star_easy_{NAME}", "--debug", "overfit", *TINY),
        f"training.output_dir={out}",
        data_dir=data_dir,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    summary = json.loads(train.stdout.strip().splitlines()[-1])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    initial = next(entry["loss"] for entry in history if "loss" in entry)
    assert summary["global_step"] == 300
    assert summary["final_logged_loss"] < 0.1 * initial, (initial, summary["final_logged_loss"])

    # (b) its own test file: every shared contract
    tests = run_in(
        generated, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/test_{NAME}.py", data_dir=data_dir
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and "skipped" not in tests.stdout and "failed" not in tests.stdout

    # (c) the trained folder loads with only torch and transformers, and generates
    result = run_without_xlm_hf(
        f"""
        import torch
        from transformers import AutoModelForMaskedLM, AutoTokenizer
        model = AutoModelForMaskedLM.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=True)
        inputs = tokenizer(["3 4 5"], return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=4, num_steps=4, do_sample=False)
        print("CLASS", type(model).__name__, type(model).__module__, model.config.model_type)
        print("NEW", output.sequences.shape[1] - inputs["input_ids"].shape[1])
        """,
        cwd=str(out.parent),
    )
    assert "CLASS ToyForMaskedLM transformers_modules" in result.stdout and "xlm-hf-toy" in result.stdout
    assert int(result.stdout.split("NEW")[1].split()[0]) >= 4


@pytest.mark.parametrize(
    "like, name, class_prefix, model_class, loss_ratio",
    [
        ("mdlm", "diffusion_toy", "DiffusionTOY", "DiffusionTOYForMaskedDiffusionLM", 0.1),
        # ILM's loss has a floor: a gap missing several tokens has several right answers (the target spreads over
        # them), so one repeated batch cannot drive it to zero
        ("ilm", "insertion_toy", None, "InsertionToyModelForInsertionLM", 0.6),
    ],
)
def test_copies_of_mdlm_and_ilm_train_pass_their_contracts_and_load_without_xlm_hf(
    generated, data_dir, capsys, like, name, class_prefix, model_class, loss_ratio
):
    prefix_option = ["--class-prefix", class_prefix] if class_prefix else []
    assert main(["new-family", name, "--like", like, *prefix_option, "--root", str(generated)]) == 0
    capsys.readouterr()
    modeling = (generated / f"modeling/modeling_{name}.py").read_text()
    assert f"class {model_class}(" in modeling and f"def {name}_loss(" in modeling

    out = generated / "outputs" / f"overfit_{name}"
    train = run_in(
        generated,
        *("-m", "xlm_hf.cli", "train", f"star_easy_{name}", "--debug", "overfit", *TINY),
        f"training.output_dir={out}",
        data_dir=data_dir,
    )
    assert train.returncode == 0, train.stderr[-3000:]
    summary = json.loads(train.stdout.strip().splitlines()[-1])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    initial = next(entry["loss"] for entry in history if "loss" in entry)
    assert summary["final_logged_loss"] < loss_ratio * initial, (initial, summary["final_logged_loss"])

    tests = run_in(
        generated, "-m", "pytest", "-q", "-p", "no:cacheprovider", f"tests/test_{name}.py", data_dir=data_dir
    )
    assert tests.returncode == 0, tests.stdout[-3000:]
    assert " passed" in tests.stdout and "failed" not in tests.stdout

    result = run_without_xlm_hf(
        f"""
        from transformers import AutoModel, AutoTokenizer
        model = AutoModel.from_pretrained({str(out)!r}, trust_remote_code=True).eval()
        tokenizer = AutoTokenizer.from_pretrained({str(out)!r}, trust_remote_code=True)
        inputs = tokenizer(["3 4 5"], return_tensors="pt")
        output = model.generate(**inputs, max_new_tokens=4, num_steps=4, do_sample=False)
        print("CLASS", type(model).__name__, type(model).__module__, model.config.model_type)
        print("NEW", int(output.new_token_mask.sum()))
        """,
        cwd=str(out.parent),
    )
    assert f"CLASS {model_class} transformers_modules" in result.stdout, result.stderr[-3000:]
    assert f"xlm-hf-{name}" in result.stdout
    assert int(result.stdout.split("NEW")[1].split()[0]) >= 1
