"""Files and folders are whole or absent: results.json, predictions and exports under failures and concurrency."""

import errno
import json
import multiprocessing
import os
import subprocess
import sys
from pathlib import Path

import pytest

from xlm_hf.atomic_io import atomic_open, atomic_write_text
from xlm_hf.export import export_model, load_model_and_tokenizer, recover_export
from xlm_hf.families import get_family
from xlm_hf.tokenization import build_number_tokenizer

TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "results.json"
    target.write_text('{"old": true}')
    with pytest.raises(OSError) as raised:
        with atomic_open(target) as handle:
            handle.write('{"new": ')
            disk_full()  # the disk fills in the middle of writing
    assert raised.value.errno == errno.ENOSPC
    assert target.read_text() == '{"old": true}'
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


def test_a_new_file_gets_the_usual_permissions(tmp_path):
    atomic_write_text(tmp_path / "results.json", "{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "results.json").stat().st_mode & 0o777 == 0o666 & ~umask


def _write_results(folder: str, writer: int) -> None:
    for round_ in range(40):
        atomic_write_text(
            Path(folder) / "results.json", json.dumps({"writer": writer, "round": round_, "pad": "x" * 4096})
        )


def test_four_processes_writing_results_json_in_one_folder(tmp_path):
    context = multiprocessing.get_context("fork")  # nothing but file writes in the children
    processes = [context.Process(target=_write_results, args=(str(tmp_path), writer)) for writer in range(4)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [process.exitcode for process in processes] == [0, 0, 0, 0]  # a shared temporary name fails some
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["round"] == 39
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.fixture
def tokenizer():
    return build_number_tokenizer(20)


def build(tokenizer, layers: int = 1):
    return get_family("arlm").build_model(tokenizer, **{**TINY, "num_hidden_layers": layers})


def test_disk_full_during_an_export_keeps_the_old_folder(tmp_path, tokenizer, monkeypatch):
    target = tmp_path / "model"
    export_model(build(tokenizer), tokenizer, target, "arlm")
    before = {p.name: p.read_bytes() for p in target.iterdir()}
    monkeypatch.setattr(type(tokenizer), "save_pretrained", disk_full)
    with pytest.raises(OSError):
        export_model(build(tokenizer, layers=2), tokenizer, target, "arlm")
    assert {p.name: p.read_bytes() for p in target.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no staging folder left


def test_an_export_replaces_the_export_and_keeps_the_rest(tmp_path, tokenizer):
    target = tmp_path / "model"
    export_model(build(tokenizer), tokenizer, target, "arlm")
    (target / "results.json").write_text('{"metrics": {}}')
    (target / "predictions" / "prediction").mkdir(parents=True)
    (target / "predictions" / "prediction" / "step=5.jsonl").write_text("{}\n")
    (target / "checkpoint-5").mkdir()
    (target / "checkpoint-5" / "trainer_state.json").write_text("{}")
    (target / "model-00002-of-00002.safetensors").write_text("a shard of an older export")
    (target / "modeling_ilm.py").write_text("# another family's code")
    export_model(build(tokenizer, layers=2), tokenizer, target, "arlm")
    names = {p.name for p in target.iterdir()}
    assert {"results.json", "predictions", "checkpoint-5", "model.safetensors", "README.md"} <= names
    assert "model-00002-of-00002.safetensors" not in names and "modeling_ilm.py" not in names
    assert (target / "checkpoint-5" / "trainer_state.json").read_text() == "{}"
    assert load_model_and_tokenizer(target)[0].config.num_hidden_layers == 2
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_recovery_after_a_kill_between_the_two_renames(tmp_path):
    pid = dead_pid()
    target = tmp_path / "model"
    (tmp_path / f".model.old-{pid}").mkdir()
    (tmp_path / f".model.old-{pid}" / "config.json").write_text("old")
    (tmp_path / f".model.staging-{pid}").mkdir()
    (tmp_path / f".model.staging-{pid}" / "config.json").write_text("new")
    recover_export(target)
    assert (
        target / "config.json"
    ).read_text() == "new"  # the staging folder was complete: the swap is finished
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_recovery_restores_the_old_folder_and_removes_unfinished_stagings(tmp_path):
    pid = dead_pid()
    target = tmp_path / "model"
    (tmp_path / f".model.old-{pid}").mkdir()
    (tmp_path / f".model.old-{pid}" / "config.json").write_text("old")
    recover_export(target)
    assert (target / "config.json").read_text() == "old"
    (tmp_path / f".model.staging-{pid}").mkdir()  # an export killed while writing
    recover_export(target)
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_recovery_leaves_a_running_export_alone(tmp_path):
    staging = tmp_path / f".model.staging-{os.getppid()}"  # a live process that is not this one
    staging.mkdir()
    recover_export(tmp_path / "model")
    assert staging.is_dir()
