"""`scripts/ab_generate.py`: two exported folders timed side by side, each with its own code, and the numbers
printed (one JSON line last) for the non-autoregressive families and the ARLM alike."""

import json
import os
import subprocess
import sys

import pytest
from demo_models import export_tiny
from script_module import SCRIPTS_DIR

SCRIPT = SCRIPTS_DIR / "ab_generate.py"


@pytest.mark.parametrize("family", ["mdlm", "arlm"])
def test_two_folders_are_timed_and_their_new_tokens_counted(tmp_path, family):
    export_tiny(family, tmp_path / "a")
    export_tiny(family, tmp_path / "b")
    completed = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            str(tmp_path / "a"),
            str(tmp_path / "b"),
            "--samples",
            "4",
            "--max-new-tokens",
            "6",
            "--rounds",
            "2",
            "--set",
            "do_sample=true",
            "--set",
            "top_p=0.9",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"},
    )
    assert completed.returncode == 0, completed.stderr[-2000:]
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["options"] == {
        "num_return_sequences": 4,
        "max_new_tokens": 6,
        "do_sample": True,
        "top_p": 0.9,
    }
    for side in ("A", "B"):
        assert result[side]["median_seconds"] > 0
        # 4 samples of at most 6 new tokens each: the count is what the model wrote, padding left out
        new_tokens = result[side]["new_tokens_per_second"] * result[side]["median_seconds"]
        assert 0 < round(new_tokens) <= 24
    assert result["ratio_a_over_b"] > 0


def test_an_option_without_a_value_is_refused(tmp_path):
    completed = subprocess.run(
        [sys.executable, str(SCRIPT), str(tmp_path), str(tmp_path), "--set", "top_p"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert completed.returncode == 2
    assert "--set wants KEY=VALUE" in completed.stderr
