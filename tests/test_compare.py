"""`xlm-hf compare`: every family of the request trains under the time budget, is evaluated on the test split and
timed, and the table lands in --out; a request that cannot run is one error before anything trains."""

import json
import logging
import signal
import subprocess
import sys
import time

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from xlm_hf.cli import main
from xlm_hf.compare import TimeBudget, compare

TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "training.per_device_train_batch_size=16",
    "training.per_device_eval_batch_size=32",
    "training.max_steps=100000",  # only the budget can stop these runs
    "training.disable_tqdm=true",
    "training.logging_steps=1000",
]
BUDGET_MINUTES = 0.02  # 1.2 s of training per run


@pytest.mark.parametrize("clock", ["cpu", "wall"])
def test_budget_stops_training_once_spent(clock, tmp_path):
    args, state = TrainingArguments(output_dir=str(tmp_path), report_to="none"), TrainerState()
    generous, spent = TimeBudget(3600, clock), TimeBudget(0, clock)
    for budget in (generous, spent):
        budget.on_train_begin(args, state, TrainerControl())
    control = TrainerControl()
    generous.on_step_end(args, state, control)
    assert not control.should_training_stop and not generous.stopped_by_budget
    spent.on_step_end(args, state, control)
    assert control.should_training_stop and control.should_save and spent.stopped_by_budget
    spent.on_train_end(args, state, control)
    assert set(spent.training_time) == {"cpu", "wall"} and spent.training_time["wall"] >= 0


@pytest.mark.parametrize(
    "argv, message",
    [
        (
            ["--families", "arlm,nope"],
            "No experiment star_easy_nope: the families with a recipe for star_easy are",
        ),
        (["--families", "arlm", "--budget-minutes", "0"], "--budget-minutes must be a positive number"),
        (["--families", "arlm,arlm"], "names a family twice"),
        (["--families", "arlm", "--seeds", "a,b"], "--seeds must be comma-separated int values"),
        (["--families", "arlm", "--set", "model.bogus=1"], "Unknown key(s) 'bogus'"),
        (["--families", "arlm", "--limit", "0"], "--limit must be a positive number"),
        (["--families", "arlm", "--jobs", "0"], "--jobs must be a positive whole number"),
        (
            ["--families", "arlm", "--jobs", "2", "--threads-per-job", "0"],
            "--threads-per-job must be a positive",
        ),
    ],
)
def test_a_request_that_cannot_run_is_one_error_before_training(argv, message, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["compare", "star_easy", "--budget-minutes", "1", "--out", str(out), *argv]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and message in err and len(err.splitlines()) == 1
    assert not out.exists()  # nothing trained, nothing written


def test_compare_trains_evaluates_and_tabulates_two_families(tmp_path, data_dir, capsys, caplog):
    out = tmp_path / "out"
    overrides = [item for override in TINY for item in ("--set", override)]
    argv = ["compare", "star_easy", "--families", "arlm,mlm", "--budget-minutes", str(BUDGET_MINUTES)]
    with caplog.at_level(logging.WARNING, logger="xlm_hf.compare"):
        assert main([*argv, "--out", str(out), "--limit", "16", *overrides]) == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "results.json").read_text())
    assert report["clock"] == "cpu" and report["budget_minutes"] == BUDGET_MINUTES
    assert report["planned_runs"] == 2
    assert [(row["family"], row["seed"]) for row in report["rows"]] == [("arlm", 42), ("mlm", 42)]
    # the budget cut both schedules short: each run is warned about, with the step to size the schedule to
    warnings = [record.getMessage() for record in caplog.records if record.name == "xlm_hf.compare"]
    assert len(warnings) == 2
    for row, warning in zip(report["rows"], warnings):
        assert f"training.max_steps={row['train_steps']} " in warning and row["experiment"] in warning
    for row in report["rows"]:
        assert row["stopped_by_budget"] and 0 < row["train_steps"] < 100000
        assert row["schedule_steps"] == 100000
        assert row["train_cpu_seconds"] >= BUDGET_MINUTES * 60  # stopped only once the budget was spent
        assert 0.0 <= row["exact_match"] <= 1.0 and 0.0 <= row["token_accuracy"] <= 1.0
        # a model the budget stopped after a few dozen steps may write only special tokens, which the speed does not
        # count: 0 is then the right speed (seen on a loaded machine)
        assert row["test_examples"] == 16 and row["generation_tokens_per_second"] >= 0.0
        assert (out / "runs" / f"{row['family']}-seed42" / "model.safetensors").is_file()
        assert (
            json.loads((out / "runs" / f"{row['family']}-seed42" / "results.json").read_text())["split"]
            == "test"
        )
    table = (out / "results.md").read_text()
    assert "| family | seed | exact match %" in table and "| arlm | 42 |" in table and "| mlm | 42 |" in table
    assert f"| {report['rows'][0]['train_steps']} of 100000 |" in table and "runs done" not in table
    assert table in printed


def test_a_failing_run_leaves_the_rows_of_the_runs_before_it(tmp_path, data_dir, monkeypatch):
    from xlm_hf import jobs

    real_evaluate, calls = jobs.evaluate, []

    def evaluate_then_fail(*args, **kwargs):
        calls.append(args)
        if len(calls) == 2:
            raise RuntimeError("the second run's evaluation failed")
        return real_evaluate(*args, **kwargs)

    monkeypatch.setattr(jobs, "evaluate", evaluate_then_fail)
    out = tmp_path / "out"
    overrides = [*TINY, "training.max_steps=3"]  # a schedule the run finishes: no warning, plain steps
    with pytest.raises(RuntimeError, match="second run"):
        compare("star_easy", ["arlm", "mlm"], 10, out=out, overrides=overrides, limit=8, speed_examples=4)
    report = json.loads((out / "results.json").read_text())
    assert report["planned_runs"] == 2 and [row["family"] for row in report["rows"]] == ["arlm"]
    row = report["rows"][0]
    assert not row["stopped_by_budget"] and row["train_steps"] == row["schedule_steps"] == 3
    table = (out / "results.md").read_text()
    assert "1 of 2 runs done." in table and "| arlm | 42 |" in table and "| 3 |" in table


def test_speed_prompts_are_the_prompts_or_the_opening_words_of_text_documents():
    from datasets import Dataset

    from xlm_hf.compare import speed_prompts

    star = Dataset.from_dict({"prompt": ["1 2", "3 4", "5 6"], "target": ["a", "b", "c"]})
    assert speed_prompts(star, 2) == ["1 2", "3 4"]
    text = Dataset.from_dict({"text": ["one two three four five six seven eight nine ten", "short one"]})
    assert speed_prompts(text, 5) == ["one two three four five six seven eight", "short one"]


def test_parallel_runs_give_the_table_in_the_planned_order_with_a_log_each(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    overrides = [item for override in TINY for item in ("--set", override)]
    argv = ["compare", "star_easy", "--families", "arlm,mlm", "--budget-minutes", str(BUDGET_MINUTES)]
    assert (
        main([*argv, "--out", str(out), "--limit", "8", "--speed-examples", "4", "--jobs", "2", *overrides])
        == 0
    )
    captured = capsys.readouterr()
    report = json.loads((out / "results.json").read_text())
    assert report["parallel_jobs"] == 2 and report["torch_threads"] == 1 and report["planned_runs"] == 2
    assert [row["family"] for row in report["rows"]] == ["arlm", "mlm"]
    for row in report["rows"]:
        assert row["stopped_by_budget"] and row["train_cpu_seconds"] >= BUDGET_MINUTES * 60
        assert (out / "runs" / f"{row['family']}-seed42" / "model.safetensors").is_file()
        # what the run printed went to its log, the schedule warning included, not to this terminal
        log = (out / "runs" / f"{row['family']}-seed42.log").read_text()
        assert f"training.max_steps={row['train_steps']} " in log
        assert f"finished {row['experiment']} (seed 42)" in captured.err
    assert "training.max_steps=" not in captured.err
    assert (out / "results.md").read_text() in captured.out


def test_a_failing_parallel_run_keeps_the_other_runs_row_and_names_its_log(tmp_path, data_dir, capsys):
    out = tmp_path / "out"
    # a causal model refuses neighbours' embeddings when it is built: the ARLM run fails, the MLM run trains
    overrides = [*TINY, "model.neighbor_token_window=1"]
    with pytest.raises(RuntimeError) as failure:
        compare(
            "star_easy",
            ["arlm", "mlm"],
            BUDGET_MINUTES,
            out=out,
            overrides=overrides,
            limit=8,
            speed_examples=4,
            parallel_jobs=2,
        )
    message = str(failure.value)
    assert message.startswith("star_easy_arlm (seed 42) failed (ValueError: ")
    assert message.endswith(f"its output is in {out / 'runs' / 'arlm-seed42.log'}")
    assert "neighbor_token_window" in (out / "runs" / "arlm-seed42.log").read_text()
    report = json.loads((out / "results.json").read_text())
    assert report["planned_runs"] == 2 and [row["family"] for row in report["rows"]] == ["mlm"]


def test_ctrl_c_stops_parallel_runs_with_a_checkpoint_each(tmp_path, data_dir):
    out = tmp_path / "out"
    overrides = [*TINY, "training.logging_steps=1", "data.max_train_samples=64"]
    child = subprocess.Popen(
        [sys.executable, "-m", "xlm_hf.cli", "compare", "star_easy", "--families", "arlm,mlm"]
        + ["--budget-minutes", "10", "--jobs", "2", "--out", str(out)]
        + [item for override in overrides for item in ("--set", override)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    logs = [out / "runs" / f"{family}-seed42.log" for family in ("arlm", "mlm")]
    try:
        deadline = time.monotonic() + 300  # a guard against a broken child, not a measurement
        while not all(log.is_file() and "'loss'" in log.read_text() for log in logs):  # both are training
            assert child.poll() is None, child.stderr.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        child.send_signal(signal.SIGINT)
        _, stderr = child.communicate(timeout=300)
    finally:
        child.kill()
    assert child.returncode == 128 + signal.SIGINT, stderr[-3000:]
    assert "Traceback" not in stderr and stderr.strip().splitlines()[-1].startswith("interrupted: SIGINT")
    for family in ("arlm", "mlm"):
        checkpoints = list((out / "runs" / f"{family}-seed42").glob("checkpoint-*/trainer_state.json"))
        assert len(checkpoints) == 1
    assert not (out / "results.json").exists()  # no run finished
