"""Ctrl-C (SIGINT) and SIGTERM during `xlm-hf train`: training stops at the end of the step with a resumable
checkpoint, one `interrupted:` line, no traceback, no export, and the shell's exit status for the signal."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from xlm_hf.cli import main
from xlm_hf.trainer import COLLATOR_STATE_FILE

TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "data.max_train_samples=64",
    "data.max_eval_samples=16",
    "training.per_device_train_batch_size=8",
    "training.max_steps=1000000",  # runs until the signal
    "training.eval_strategy=no",
    "training.save_strategy=steps",
    "training.save_steps=2",
    "training.save_total_limit=1",
    "training.logging_steps=1000",
    "training.disable_tqdm=true",
]


def ignore_sigint() -> None:
    # what a non-interactive shell does to a job it starts in the background: training must stop all the same
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def interrupt_training(output_dir: Path, signal_number: int) -> tuple[int, str]:
    """Starts `xlm-hf train`, waits until it has saved a checkpoint (so it is training), sends the signal."""
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xlm_hf.cli",
            "train",
            "star_easy_mlm",
            *TINY,
            f"training.output_dir={output_dir}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=ignore_sigint,
    )
    try:
        deadline = time.monotonic() + 300  # a guard against a broken child, not a measurement
        while not list(output_dir.glob("checkpoint-*/trainer_state.json")):
            assert child.poll() is None, child.stderr.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        child.send_signal(signal_number)
        _, stderr = child.communicate(timeout=300)
    finally:
        child.kill()
    return child.returncode, stderr


def check_interrupted(returncode: int, stderr: str, expected_code: int, name: str, output_dir: Path) -> Path:
    assert returncode == expected_code, stderr[-3000:]
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.startswith("interrupted:")]
    assert len(lines) == 1 and stderr.strip().splitlines()[-1] == lines[0]
    assert lines[0].startswith(
        f"interrupted: {name}: saved a resumable checkpoint to {output_dir}/checkpoint-"
    )
    assert lines[0].endswith("resume with training.resume_from_checkpoint=true")
    checkpoint = Path(lines[0].split(" to ")[1].split(";")[0])
    assert (checkpoint / "trainer_state.json").is_file() and (checkpoint / COLLATOR_STATE_FILE).is_file()
    assert (checkpoint / "optimizer.pt").is_file() and (checkpoint / "rng_state.pth").is_file()
    assert not (output_dir / "model.safetensors").exists()  # no export of an unfinished run
    return checkpoint


def test_ctrl_c_saves_a_checkpoint_that_resumes(tmp_path, data_dir, capsys):
    output_dir = tmp_path / "run"
    returncode, stderr = interrupt_training(output_dir, signal.SIGINT)
    checkpoint = check_interrupted(returncode, stderr, 130, "SIGINT", output_dir)
    step = json.loads((checkpoint / "trainer_state.json").read_text())["global_step"]

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    resumed = ["training.resume_from_checkpoint=true", f"training.max_steps={step + 2}"]
    assert main(["train", "star_easy_mlm", *TINY, f"training.output_dir={output_dir}", *resumed]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["global_step"] == step + 2
    assert (output_dir / "model.safetensors").is_file()
    # the handlers are training's only
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers


@pytest.mark.parametrize("signal_number, code", [(signal.SIGTERM, 143)])
def test_sigterm_saves_a_checkpoint(signal_number, code, tmp_path, data_dir):
    output_dir = tmp_path / "run"
    returncode, stderr = interrupt_training(output_dir, signal_number)
    check_interrupted(returncode, stderr, code, signal.Signals(signal_number).name, output_dir)
