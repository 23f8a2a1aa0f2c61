"""Every case of scripts/probe_bad_inputs.py ends in one clear error or the right result (CI fails on any BAD)."""

import importlib.util
from pathlib import Path

import pytest

PROBE_PATH = Path(__file__).resolve().parent.parent / "scripts" / "probe_bad_inputs.py"
spec = importlib.util.spec_from_file_location("probe_bad_inputs", PROBE_PATH)
probe = importlib.util.module_from_spec(spec)
spec.loader.exec_module(probe)


@pytest.fixture(scope="module")
def workspace(tmp_path_factory, data_dir):
    return probe.build_workspace(tmp_path_factory.mktemp("probe"))


@pytest.mark.parametrize("case", probe.CASES, ids=[case.name for case in probe.CASES])
def test_bad_input(case, workspace):
    verdict, detail = probe.run_case(case, workspace)
    assert verdict.startswith("ok"), f"{verdict}: {detail}"


def test_the_verdicts_tell_bad_from_good():
    """The judge itself: a traceback, an accepted input and a vague message are BAD."""
    case = probe.Case("x", run=None, message="num_beams")
    assert probe.judge(case, probe.Outcome(error=ZeroDivisionError("integer division"))) == "BAD: traceback"
    assert probe.judge(case, probe.Outcome(status=0)) == "BAD: accepted"
    assert probe.judge(case, probe.Outcome(status=2, stderr="error: something\n")) == "BAD: unclear error"
    assert (
        probe.judge(case, probe.Outcome(status=2, stderr="Traceback (most recent call last):\n"))
        == "BAD: traceback"
    )
    assert (
        probe.judge(case, probe.Outcome(status=2, stderr="error: num_beams must be >= 1\n"))
        == "ok: clear error"
    )
    assert probe.judge(case, probe.Outcome(error=ValueError("num_beams must be >= 1"))) == "ok: clear error"
