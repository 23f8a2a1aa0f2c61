"""`scripts/bench.py`: one experiment's training and generation speed, printed as a table and one JSON line, on
the CPU here (the GPU path, `--device cuda`, runs in scripts/gpu_check.sh on a GPU machine)."""

import json
import os
import subprocess
import sys

import pytest
import torch
from script_module import SCRIPTS_DIR

SCRIPT = SCRIPTS_DIR / "bench.py"


TINY_ONE_THREAD = ("--threads", "1", "model.hidden_size=32")


def run_bench(*arguments: str, data_dir) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *arguments],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "XLM_HF_DATA_DIR": str(data_dir)},
    )


def test_bench_times_training_and_generation_with_the_cache_on_and_off(data_dir):
    completed = run_bench(
        "star_easy_mdlm",
        "--steps",
        "2",
        "--generation-batches",
        "1",
        "--generation-batch-size",
        "4",
        *TINY_ONE_THREAD,
        data_dir=data_dir,
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert (result["device"], result["dtype"], result["threads"]) == ("cpu", "float32", 1)
    assert result["train_seconds_per_step"] > 0 and result["peak_memory_mib"] > 0
    # tokens/s is the whole batch's positions over the step time
    expected = result["batch_size"] * result["sequence_length"] / result["train_seconds_per_step"]
    assert result["train_tokens_per_s"] == pytest.approx(expected, rel=0.01)
    achieved_over_peak = result["achieved_gflops"] / result["matmul_peak_gflops"]
    assert result["fraction_of_peak"] > 0
    assert result["fraction_of_peak"] == pytest.approx(achieved_over_peak, rel=0.01)
    # the MDLM's cache option is switched: both settings are timed, each with its model calls counted
    assert set(result["generation"]) == {"cache on", "cache off"}
    for numbers in result["generation"].values():
        assert numbers["new_tokens_per_s"] > 0 and numbers["model_calls_per_sample"] > 0


def test_zero_generation_batches_times_training_only(data_dir):
    completed = run_bench(
        "star_easy_arlm", "--steps", "1", "--generation-batches", "0", *TINY_ONE_THREAD, data_dir=data_dir
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["train_seconds_per_step"] > 0
    assert result["generation"] == {}


@pytest.mark.parametrize("option, value", [("--generation-batches", "-1"), ("--generation-batch-size", "0")])
def test_a_bad_generation_count_is_refused_before_any_work(tmp_path, option, value):
    completed = run_bench("star_easy_arlm", option, value, data_dir=tmp_path)
    assert completed.returncode == 2
    assert "--generation-batches must be 0 or more and --generation-batch-size 1 or more" in completed.stderr
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without a GPU")
def test_cuda_without_a_gpu_is_refused_before_any_work(tmp_path):
    completed = run_bench("star_easy_arlm", "--device", "cuda", data_dir=tmp_path)
    assert completed.returncode == 2
    assert "--device cuda: torch sees no GPU" in completed.stderr
    assert list(tmp_path.iterdir()) == []  # no task was prepared
