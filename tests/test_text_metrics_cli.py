"""The text eval kinds through the command line: run during training (logged with the Trainer's metrics) and after
it with `xlm-hf eval --eval-task`, whose metrics are printed and written to results.json."""

import json

import pytest

from xlm_hf.cli import main

TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "training.per_device_train_batch_size=8",
    "training.per_device_eval_batch_size=8",
    "training.max_steps=2",
    "training.eval_steps=2",
    "training.logging_steps=1",
    "data.max_eval_samples=8",
    "training.disable_tqdm=true",
]


@pytest.fixture(scope="module")
def trained_arlm(tmp_path_factory, data_dir):
    out = tmp_path_factory.mktemp("text_cli") / "arlm"
    overrides = ["eval_tasks={ppl: {kind: perplexity}}", f"training.output_dir={out}"]
    assert main(["train", "star_easy_arlm", *TINY, *overrides]) == 0
    return out


def test_perplexity_task_is_logged_during_training(trained_arlm):
    history = json.loads((trained_arlm / "trainer_state.json").read_text())["log_history"]
    logged = [entry for entry in history if "eval_ppl_perplexity" in entry]
    assert logged and logged[-1]["eval_ppl_is_bound"] == 0.0
    assert logged[-1]["eval_ppl_nll"] > 0


def test_eval_runs_text_tasks_and_writes_results(trained_arlm, capsys):
    judge = f"judge: {trained_arlm}"
    code = main(
        [
            "eval",
            str(trained_arlm),
            "--limit",
            "6",
            "--eval-task",
            "ppl={kind: perplexity}",
            "--eval-task",
            f"gen={{kind: generative_perplexity, num_samples: 3, max_new_tokens: 5, {judge}}}",
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = json.loads((trained_arlm / "results.json").read_text())
    assert printed == results["metrics"]
    assert {"eval_ppl_perplexity", "eval_gen_generative_perplexity", "eval_gen_entropy"} <= set(printed)
    samples = (trained_arlm / "predictions" / "gen").glob("step=*.jsonl")
    assert sum(len(path.read_text().splitlines()) for path in samples) == 3


@pytest.mark.parametrize(
    "option, message",
    [
        ("gen={kind: generative_perplexity, judge: /no/such/judge}", "train and export the ARLM first"),
        ("ppl={kind: perplexity, judge: x}", "is an option of kind"),
        ("ppl", "--eval-task expects NAME="),
    ],
)
def test_eval_task_errors_are_one_line(trained_arlm, capsys, option, message):
    assert main(["eval", str(trained_arlm), "--limit", "2", "--eval-task", option]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error" in line.lower()]
    assert len(errors) == 1 and errors[0].startswith("error:") and message in errors[0]
