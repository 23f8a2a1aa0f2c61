"""Multi-process training and evaluation on CPU, launched as users launch it: `torchrun --nproc_per_node 2
xlm-hf train ...` (gloo data parallelism), and the launches that must stop with one clear error.

Also the final evaluation: Trainer evaluates at the last step, and `xlm-hf train` reports that evaluation instead
of running a second one.
"""

import json
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file
from transformers import TrainingArguments

from xlm_hf import jobs
from xlm_hf.cli import main
from xlm_hf.jobs import LaunchError, check_launch
from xlm_hf.tasks import load_task

TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "training.disable_tqdm=true",
    "training.report_to=none",
]
NUM_TRAIN = 64
NUM_EVAL = 24  # three eval batches of 8: the second process generates one, the first two


def launch(args: list[str], nproc: int = 2) -> subprocess.CompletedProcess:
    """`torchrun --standalone --nproc_per_node N xlm-hf ARGS` (torchrun's module form, on a free port)."""
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"]
    command += ["-m", "xlm_hf.cli", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)


def summary_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith('{"output_dir"')]


@pytest.fixture(scope="module")
def two_process_run(tmp_path_factory, data_dir):
    """A tiny ILM trained by two processes; `training.use_cpu` is not given (xlm-hf sets it without GPUs)."""
    out = tmp_path_factory.mktemp("ddp") / "ilm"
    result = launch(
        [
            "train",
            "star_easy_ilm",
            *TINY,
            f"data.max_train_samples={NUM_TRAIN}",
            f"data.max_eval_samples={NUM_EVAL}",
            "training.per_device_train_batch_size=8",
            "training.per_device_eval_batch_size=8",
            "training.max_steps=4",
            "training.logging_steps=2",
            "training.eval_steps=4",
            f"training.output_dir={out}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return out, result


def test_two_processes_train_together_and_print_one_summary(two_process_run):
    out, result = two_process_run
    summaries = summary_lines(result.stdout)
    assert len(summaries) == 1, result.stdout
    assert summaries[0]["world_size"] == 2
    state = json.loads((out / "trainer_state.json").read_text())
    # 4 steps of 2 x 8 examples are one pass over the 64 training examples (a lone process would be at 0.5)
    assert state["global_step"] == 4 and state["log_history"][-1]["epoch"] == 1.0


def test_two_processes_export_one_complete_folder(two_process_run):
    from transformers import AutoModel

    out, _ = two_process_run
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no staging folder left
    model = AutoModel.from_pretrained(out, trust_remote_code=True)
    assert type(model).__name__ == "ILMModelForInsertionLM" and model.config.model_type == "xlm-hf-ilm"


def test_sharded_generation_equals_one_process_eval(two_process_run, capsys):
    """The 2-process final evaluation (batches dealt out to the processes and gathered) and a 1-process
    `xlm-hf eval` of the exported model give the same metrics and the same predictions file, in dataset order."""
    out, result = two_process_run
    trained = summary_lines(result.stdout)[0]
    rows_2 = [
        json.loads(line)
        for line in (out / "predictions" / "prediction" / "step=4.jsonl").read_text().splitlines()
    ]
    assert len(rows_2) == NUM_EVAL

    validation = load_task("star_easy")["validation"]
    assert [row["prompt"].split() for row in rows_2] == [
        validation[i]["prompt"].split() for i in range(NUM_EVAL)
    ]

    args = ["eval", str(out), "--split", "validation", "--limit", str(NUM_EVAL), "--batch-size", "8"]
    assert main(args) == 0
    metrics = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for name in ("exact_match", "token_accuracy"):
        assert metrics[f"eval_prediction_{name}"] == trained[f"eval_prediction_{name}"]
    rows_1 = [
        json.loads(line)
        for line in (out / "predictions" / "prediction" / "step=0.jsonl").read_text().splitlines()
    ]
    assert rows_1 == rows_2


def test_two_processes_average_gradients_like_one_big_batch(tmp_path, data_dir):
    """One SGD step of 2 processes x 8 examples moves the weights exactly as one process x 16 examples: the loss is
    a sum over the all-device batch divided by its count, times the number of processes that DDP averages over."""
    common = [
        "star_easy_arlm",
        *TINY,
        "model.hidden_dropout=0.0",
        "model.attention_dropout=0.0",
        "data.max_train_samples=16",
        "training.max_steps=1",
        "training.optim=sgd",
        "training.learning_rate=0.5",
        "training.lr_scheduler_type=constant",
        "training.warmup_steps=0",
        "training.weight_decay=0.0",
        "training.max_grad_norm=0.0",  # clipping would hide a wrong scale
        "training.eval_strategy=no",
    ]
    result = launch(
        [
            "train",
            *common,
            "training.per_device_train_batch_size=8",
            f"training.output_dir={tmp_path / 'two'}",
        ]
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert summary_lines(result.stdout)[0]["world_size"] == 2
    assert (
        main(
            [
                "train",
                *common,
                "training.per_device_train_batch_size=16",
                f"training.output_dir={tmp_path / 'one'}",
            ]
        )
        == 0
    )

    two = load_file(tmp_path / "two" / "model.safetensors")
    one = load_file(tmp_path / "one" / "model.safetensors")
    assert two.keys() == one.keys()
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-5, atol=1e-6, msg=name)


def test_accelerate_launch_that_starts_one_process_is_refused(tmp_path, data_dir):
    """`accelerate launch --cpu --num_processes 2` starts a single process; xlm-hf says so instead of training."""
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2"]
    command += [
        "-m",
        "xlm_hf.cli",
        "train",
        "star_easy_arlm",
        *TINY,
        f"training.output_dir={tmp_path / 'out'}",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert result.returncode != 0
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "--multi_gpu" in errors[0], result.stderr[-3000:]
    assert not (tmp_path / "out").exists()


def test_check_launch_sets_use_cpu_without_a_device(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setattr(jobs, "_ddp_device_available", lambda: False)
    options = {}
    check_launch(options)
    assert options == {"use_cpu": True}
    monkeypatch.setattr(jobs, "_ddp_device_available", lambda: True)  # GPUs: accelerate picks NCCL itself
    options = {}
    check_launch(options)
    assert options == {}


def test_check_launch_refuses_accelerates_single_process_launch(monkeypatch):
    # what `accelerate launch [--cpu] --num_processes 2` exports to the one process it starts
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setenv("ACCELERATE_USE_CPU", "True")
    monkeypatch.setenv("MASTER_ADDR", "127.0.0.1")
    monkeypatch.setenv("MASTER_PORT", "29500")
    with pytest.raises(LaunchError, match="started 1 process"):
        check_launch({})


def test_processes_that_would_train_alone_are_refused(tmp_path, monkeypatch):
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    assert args.world_size == 1  # set up before the launcher's variables below exist
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(LaunchError, match="each would run alone"):
        jobs._check_world_size(args)


def test_final_evaluation_runs_once(tmp_path, data_dir, capsys):
    """max_steps=5 with eval_steps=2: Trainer evaluates at steps 2, 4 and (the last) 5; the summary reports the
    step-5 evaluation and nothing evaluates step 5 again (the MDLM loss would differ: it draws new noise)."""
    out = tmp_path / "mdlm"
    overrides = [
        *TINY,
        "data.max_train_samples=32",
        "data.max_eval_samples=16",
        "training.per_device_train_batch_size=8",
        "training.max_steps=5",
        "training.eval_steps=2",
        f"training.output_dir={out}",
    ]
    assert main(["train", "star_easy_mdlm", *overrides]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    history = json.loads((out / "trainer_state.json").read_text())["log_history"]
    evaluated_steps = [entry["step"] for entry in history if "eval_lm_loss" in entry]
    assert evaluated_steps == [2, 4, 5]
    final = [entry for entry in history if "eval_lm_loss" in entry][-1]
    assert summary["eval_lm_loss"] == final["eval_lm_loss"]
    assert [entry["step"] for entry in history if "eval_prediction_exact_match" in entry] == [2, 4, 5]
