"""Resuming: `training.resume_from_checkpoint` (a folder or true) continues a run where it stopped, and a run
killed after a checkpoint and resumed ends with the same eval loss as one that never stopped, for every family."""

import errno
import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from torch.utils.data import DataLoader

from xlm_hf import jobs
from xlm_hf.cli import main
from xlm_hf.collator_utils import BatchNoise, batch_generator, set_batch_noise
from xlm_hf.experiment import dump_experiment, load_experiment
from xlm_hf.trainer import COLLATOR_STATE_FILE, XLMTrainer

FAMILIES = ["arlm", "mlm", "mdlm", "ilm"]
TINY = [
    "model.hidden_size=32",
    "model.num_hidden_layers=1",
    "model.num_attention_heads=2",
    "model.intermediate_size=64",
    "model.hidden_dropout=0.1",  # dropout draws from torch's generator: its state must be restored too
    "data.max_train_samples=40",  # 5 batches an epoch: the run crosses epochs
    "data.max_eval_samples=16",
    "training.per_device_train_batch_size=8",
    "training.per_device_eval_batch_size=16",
    "training.max_steps=8",
    "training.eval_strategy=steps",
    "training.eval_steps=3",  # evaluations in the middle must not change what follows
    "training.save_strategy=steps",
    "training.save_steps=4",
    "training.logging_steps=2",
    "training.disable_tqdm=true",
]
CHECKPOINT_STEP = 4


def write_experiment(path: Path, family: str, *overrides: str) -> Path:
    experiment = load_experiment(f"star_easy_{family}", [*TINY, *overrides])
    experiment["eval_tasks"] = {"lm": {"kind": "loss", "split": "validation"}}  # the loss is what must agree
    dump_experiment(experiment, path)
    return path


def train_counting_batches(experiment: Path, output_dir: Path, *overrides: str) -> tuple[dict, int]:
    """`jobs.train` of the experiment file; also returns the number of batches this call trained."""
    counted = []
    original = XLMTrainer.training_step

    def counting(self, *args, **kwargs):
        counted.append(1)
        return original(self, *args, **kwargs)

    XLMTrainer.training_step = counting
    try:
        summary = jobs.train(
            jobs.prepare_experiment(str(experiment), [f"training.output_dir={output_dir}", *overrides])
        )
    finally:
        XLMTrainer.training_step = original
    return summary, len(counted)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, data_dir):
    """Final eval loss of each family's run without a stop."""
    root = tmp_path_factory.mktemp("uninterrupted")
    losses = {}
    for family in FAMILIES:
        experiment = write_experiment(root / f"{family}.yaml", family)
        summary, _ = train_counting_batches(experiment, root / family)
        losses[family] = summary["eval_lm_loss"]
    return losses


def crash_after_checkpoint(experiment: Path, output_dir: Path) -> None:
    """Trains until two batches past the checkpoint (the next ones are already collated), then dies."""
    original = XLMTrainer.training_step

    def dying(self, *args, **kwargs):
        if self.batches_trained == CHECKPOINT_STEP + 2:
            raise RuntimeError("killed")
        return original(self, *args, **kwargs)

    XLMTrainer.training_step = dying
    try:
        with pytest.raises(RuntimeError, match="killed"):
            jobs.train(jobs.prepare_experiment(str(experiment), [f"training.output_dir={output_dir}"]))
    finally:
        XLMTrainer.training_step = original


@pytest.mark.parametrize("family", [f for f in FAMILIES if f != "ilm"])
def test_resumed_run_ends_like_an_uninterrupted_one(family, uninterrupted, tmp_path):
    experiment = write_experiment(tmp_path / "experiment.yaml", family)
    crash_after_checkpoint(experiment, tmp_path / "run")
    assert sorted(p.name for p in (tmp_path / "run").glob("checkpoint-*")) == [
        f"checkpoint-{CHECKPOINT_STEP}"
    ]

    summary, batches = train_counting_batches(
        experiment, tmp_path / "run", "training.resume_from_checkpoint=true"
    )
    assert batches == 8 - CHECKPOINT_STEP  # resumed, not restarted
    assert summary["global_step"] == 8
    assert summary["eval_lm_loss"] == pytest.approx(uninterrupted[family], abs=1e-6)


# The child stops for good two batches after the checkpoint, so the SIGKILL always lands mid-run (no timing).
KILLED_CHILD = """
import sys, threading
from pathlib import Path
from xlm_hf.trainer import XLMTrainer
from xlm_hf.cli import main

original = XLMTrainer.training_step

def hold(self, *args, **kwargs):
    if self.batches_trained == {hold_at}:
        Path(sys.argv[1]).write_text("held")
        threading.Event().wait()
    return original(self, *args, **kwargs)

XLMTrainer.training_step = hold
sys.exit(main(["train", sys.argv[2], "training.output_dir=" + sys.argv[3]]))
"""


def test_run_killed_by_sigkill_resumes_exactly(uninterrupted, tmp_path):
    experiment = write_experiment(tmp_path / "experiment.yaml", "ilm")
    marker, output_dir = tmp_path / "held", tmp_path / "run"
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLED_CHILD.format(hold_at=CHECKPOINT_STEP + 2),
            marker,
            experiment,
            output_dir,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 300  # a guard against a broken child, not a measurement
        while not marker.exists():
            assert child.poll() is None, child.stderr.read()[-3000:]
            assert time.monotonic() < deadline
            time.sleep(0.2)
        child.send_signal(signal.SIGKILL)
        assert child.wait() == -signal.SIGKILL
    finally:
        child.kill()
        child.stderr.close()
    assert (output_dir / f"checkpoint-{CHECKPOINT_STEP}" / COLLATOR_STATE_FILE).is_file()
    assert not (output_dir / "model.safetensors").exists()  # killed before the export

    summary, batches = train_counting_batches(experiment, output_dir, "training.resume_from_checkpoint=true")
    assert batches == 8 - CHECKPOINT_STEP
    assert summary["eval_lm_loss"] == pytest.approx(uninterrupted["ilm"], abs=1e-6)


def test_resume_from_a_checkpoint_path(uninterrupted, tmp_path):
    """A path relative to output_dir, and an absolute one; the run continues from that step."""
    experiment = write_experiment(tmp_path / "experiment.yaml", "mlm")
    crash_after_checkpoint(experiment, tmp_path / "run")
    _, batches = train_counting_batches(
        experiment, tmp_path / "run", f"training.resume_from_checkpoint=checkpoint-{CHECKPOINT_STEP}"
    )
    assert batches == 8 - CHECKPOINT_STEP
    state = json.loads((tmp_path / "run" / "trainer_state.json").read_text())
    assert state["global_step"] == 8
    # the checkpoint it resumed from is kept, not overwritten by a new run
    resumed_from = tmp_path / "run" / f"checkpoint-{CHECKPOINT_STEP}"
    assert json.loads((resumed_from / "trainer_state.json").read_text())["global_step"] == CHECKPOINT_STEP

    summary, batches = train_counting_batches(
        experiment, tmp_path / "other", f"training.resume_from_checkpoint={resumed_from}"
    )
    assert batches == 8 - CHECKPOINT_STEP
    assert summary["eval_lm_loss"] == pytest.approx(uninterrupted["mlm"], abs=1e-6)


@pytest.mark.parametrize(
    "value, message",
    [
        ("checkpoint-99", "no such folder"),
        ("true", "holds no checkpoint-N folder"),
        ("not_a_checkpoint", "not a complete Trainer checkpoint"),
    ],
)
def test_bad_resume_is_one_clear_error(value, message, tmp_path, capsys):
    (tmp_path / "not_a_checkpoint").mkdir()
    argv = ["train", "star_easy_arlm", *TINY, f"training.output_dir={tmp_path}"]
    assert main([*argv, f"training.resume_from_checkpoint={value}"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()  # one line, no traceback
    assert line.startswith("error: training.resume_from_checkpoint=") and message in line


def test_full_disk_at_export_keeps_the_trained_weights(tmp_path, data_dir, monkeypatch, capsys):
    """The export fails with ENOSPC: the error says where the weights are, and resuming exports them."""
    experiment = write_experiment(tmp_path / "experiment.yaml", "mlm", "training.save_strategy=no")

    def full_disk(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(jobs, "export_model", full_disk)
    output_dir = tmp_path / "run"
    assert main(["train", str(experiment), f"training.output_dir={output_dir}"]) == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    final = output_dir / "checkpoint-8"
    assert error.startswith("error: exporting the trained model") and str(final) in error
    assert (final / "model.safetensors").is_file() and (final / "trainer_state.json").is_file()
    log = json.loads((final / "trainer_state.json").read_text())["log_history"]
    logged_loss = next(
        entry["eval_lm_loss"] for entry in log if entry.get("step") == 8 and "eval_lm_loss" in entry
    )

    monkeypatch.undo()
    summary, batches = train_counting_batches(experiment, output_dir, "training.resume_from_checkpoint=true")
    assert batches == 0  # nothing left to train: only the evaluation and the export
    # the masked loss draws the same noise at every evaluation: the run's own number again
    assert summary["eval_lm_loss"] == pytest.approx(logged_loss, abs=1e-6)
    assert (output_dir / "model.safetensors").is_file()
    assert not final.exists()  # save_strategy=no: the safety net goes once the export is there


def test_batch_noise_is_a_function_of_the_position_only(star_tokenizer):
    """Batch k draws the same noise whether the collator got there by collating k batches, was placed there
    (resume), or collates it in a DataLoader worker; each process of a run takes every world_size-th batch."""
    from xlm_hf.mlm.collator_mlm import MLMCollatorForLM

    examples = [{"input_ids": list(range(4, 14))} for _ in range(20)]
    walked = MLMCollatorForLM(tokenizer=star_tokenizer, block_size=12)
    set_batch_noise(walked, 0, seed=7)
    batches = [walked(examples[4 * i : 4 * i + 4]) for i in range(5)]
    assert not batches[3]["input_ids"].equal(batches[4]["input_ids"])  # different batches, different noise

    placed = MLMCollatorForLM(tokenizer=star_tokenizer, block_size=12)
    set_batch_noise(placed, 3, seed=7)
    assert all(batches[3][key].equal(value) for key, value in placed(examples[12:16]).items())

    in_workers = MLMCollatorForLM(tokenizer=star_tokenizer, block_size=12)
    set_batch_noise(in_workers, 1, seed=7)
    loader = DataLoader(examples[4:], batch_size=4, collate_fn=in_workers, num_workers=2)
    for expected, batch in zip(batches[1:], loader):
        assert batch["input_ids"].equal(expected["input_ids"])

    # the collator's own seed wins over the one the trainer offers
    own = MLMCollatorForLM(tokenizer=star_tokenizer, block_size=12, seed=7)
    set_batch_noise(own, 0, seed=123)
    assert own(examples[:4])["input_ids"].equal(batches[0]["input_ids"])

    run = BatchNoise(seed=7)
    seeds = [run.next_generator().initial_seed() for _ in range(4)]
    rank_1_of_2 = BatchNoise(seed=7, first_batch=1, stride=2)
    assert [rank_1_of_2.next_generator().initial_seed() for _ in range(2)] == [seeds[1], seeds[3]]
    # a collator without a seed and outside a Trainer draws from torch's global generator, as before
    assert batch_generator(MLMCollatorForLM(tokenizer=star_tokenizer, block_size=12)) is None
