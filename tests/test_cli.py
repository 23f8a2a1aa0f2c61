"""The `xlm-hf` command line end to end with a tiny model: train a few steps -> export -> eval -> generate."""

import json
import os
import shutil
import subprocess
import sys

import pytest

from xlm_hf.cli import main

TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "training.per_device_train_batch_size=16",
    "training.per_device_eval_batch_size=32",
    "training.logging_steps=5",
    "training.eval_steps=10",
    "training.max_steps=20",
    "data.max_eval_samples=32",
    "training.disable_tqdm=true",
]


@pytest.fixture(scope="module")
def trained_dir(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("cli") / "arlm"
    assert main(["train", "star_easy_arlm", *TINY, f"training.output_dir={out}"]) == 0
    return out


def last_json_line(text: str) -> dict:
    return json.loads(text.strip().splitlines()[-1])


def test_train_writes_a_hub_ready_folder(trained_dir):
    names = {p.name for p in trained_dir.iterdir()}
    assert {
        "model.safetensors",
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "experiment.yaml",
        "modeling_arlm.py",
        "configuration_arlm.py",
        "backbone.py",
        "configuration_backbone.py",
    } <= names
    config = json.loads((trained_dir / "config.json").read_text())
    assert config["auto_map"]["AutoModel"] == "modeling_arlm.ARLMForCausalLM"
    assert not any(n.endswith(".bin") or n.endswith(".pt") for n in names)  # no pickles
    predictions = list((trained_dir / "predictions" / "prediction").glob("step=*.jsonl"))
    assert predictions
    row = json.loads(predictions[0].read_text().splitlines()[0])
    assert {"prompt", "generated", "target"} <= set(row)


def test_eval_prints_metrics_and_writes_results(trained_dir, capsys):
    assert main(["eval", str(trained_dir), "--task", "star_easy", "--split", "test", "--limit", "40"]) == 0
    metrics = last_json_line(capsys.readouterr().out)
    assert 0.0 <= metrics["eval_prediction_exact_match"] <= 1.0
    assert 0.0 <= metrics["eval_prediction_token_accuracy"] <= 1.0
    assert metrics["eval_lm_loss"] > 0
    results = json.loads((trained_dir / "results.json").read_text())
    assert results["split"] == "test" and results["num_examples"] == 40
    assert results["metrics"] == metrics


def test_generate_prints_text(trained_dir, capsys):
    prompt = "18 3 14 11 3 16 10 4 14 10 14 5 1 6 11 18 9 0 0 17 4 1 5 9 14 17"
    assert main(["generate", str(trained_dir), "--prompt", prompt, "--max-new-tokens", "9"]) == 0
    words = capsys.readouterr().out.strip().split()
    assert 1 <= len(words) <= 9 and all(w.isdigit() for w in words)


def test_console_script_runs(trained_dir):
    script = shutil.which("xlm-hf", path=os.path.dirname(sys.executable))
    assert script is not None
    result = subprocess.run([script, "experiments"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "star_easy_arlm" in result.stdout


def test_overfit_debug_mode_drives_the_loss_near_zero(tmp_path, data_dir, capsys):
    args = ["train", "star_easy_arlm", "--debug", "overfit", *TINY[:4], "model.hidden_size=64"]
    args += ["training.per_device_train_batch_size=8", "training.max_steps=150", "training.disable_tqdm=true"]
    assert main([*args, f"training.output_dir={tmp_path / 'overfit'}"]) == 0
    summary = last_json_line(capsys.readouterr().out)
    assert summary["global_step"] == 150
    assert summary["final_logged_loss"] < 0.05


@pytest.mark.parametrize(
    "argv, message",
    [
        (["train", "no_such_experiment"], "Unknown experiment"),
        (["train", "star_easy_arlm", "training.max_stepz=3"], "max_stepz"),
        (["eval", "/nonexistent/model"], "neither a local folder"),
    ],
)
def test_bad_input_is_one_clear_error(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and message in err and len(err.splitlines()) == 1


def test_prompt_outside_vocabulary_and_too_long(trained_dir, capsys):
    assert main(["generate", str(trained_dir), "--prompt", "1 2 banana"]) == 2
    assert "banana" in capsys.readouterr().err
    long_prompt = " ".join(["1"] * 60)
    assert main(["generate", str(trained_dir), "--prompt", long_prompt, "--max-new-tokens", "5"]) == 2
    assert "max_position_embeddings" in capsys.readouterr().err


def test_missing_and_corrupt_weights(trained_dir, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(trained_dir, broken)
    (broken / "model.safetensors").unlink()
    assert main(["generate", str(broken), "--prompt", "1 2"]) == 2
    assert "no *.safetensors weights" in capsys.readouterr().err
    (broken / "model.safetensors").write_bytes(b"\x00garbage" * 10)
    assert main(["generate", str(broken), "--prompt", "1 2"]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_small_data_debug_mode_limits_the_data(tmp_path, data_dir, capsys):
    out = tmp_path / "small"
    assert (
        main(
            [
                "train",
                "star_easy_arlm",
                "--debug",
                "small_data",
                *TINY,
                "training.max_steps=6",
                "training.eval_steps=3",
                f"training.output_dir={out}",
            ]
        )
        == 0
    )
    summary = last_json_line(capsys.readouterr().out)
    assert summary["global_step"] == 6
    assert summary["eval_prediction_samples"] == 32  # TINY's max_eval_samples wins over the preset's 50
    rows = (out / "predictions" / "prediction").glob("step=*.jsonl")
    assert all(len(p.read_text().splitlines()) == 32 for p in rows)
