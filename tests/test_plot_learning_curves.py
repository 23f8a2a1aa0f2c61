"""`scripts/plot_learning_curves.py`: trainer_state.json files drawn as an SVG (one polyline per run, points where the
metric was logged, larger values higher up, equal ratios equally far apart on a log axis), round ticks that cover
the data, and user errors as one `error:` line with exit status 2 and no file written."""

import json
import math
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from script_module import SCRIPTS_DIR, load_script

SCRIPT = SCRIPTS_DIR / "plot_learning_curves.py"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def plot():
    return load_script("plot_learning_curves.py")


def write_run(folder: Path, losses: list[float], eval_every: int = 0) -> Path:
    """A run folder whose trainer_state.json logs `losses` at steps 10, 20, ... and, every `eval_every` entries,
    an evaluation entry without `loss` (as the Trainer logs them)."""
    history = []
    for index, loss in enumerate(losses, start=1):
        history.append({"step": 10 * index, "epoch": index / 4, "loss": loss, "learning_rate": 1e-3})
        if eval_every and index % eval_every == 0:
            history.append({"step": 10 * index, "epoch": index / 4, "eval_lm_loss": loss + 0.1})
    folder.mkdir(parents=True)
    (folder / "trainer_state.json").write_text(
        json.dumps({"global_step": 10 * len(losses), "log_history": history})
    )
    return folder


def curves(path: Path) -> list[list[tuple[float, float]]]:
    root = ET.parse(path).getroot()
    return [
        [tuple(map(float, pair.split(","))) for pair in line.get("points").split()]
        for line in root.iter(f"{SVG}polyline")
        if line.get("class") == "curve"
    ]


def test_one_polyline_per_run_with_one_point_per_logged_value(plot, tmp_path, capsys):
    first = write_run(tmp_path / "a" / "run", [3.0, 1.0, 2.0, 0.5, 0.75], eval_every=2)
    second = write_run(tmp_path / "b" / "run", [2.5, 2.0, 1.5])
    out = tmp_path / "curves.svg"

    assert plot.main([f"{first}=first run", str(second / "trainer_state.json"), "--out", str(out)]) == 0

    drawn = curves(out)
    assert [len(points) for points in drawn] == [5, 3]  # the evaluation entries carry no `loss`: skipped
    # a larger loss is drawn higher up (a smaller SVG y); later steps further right
    for points, losses in zip(drawn, ([3.0, 1.0, 2.0, 0.5, 0.75], [2.5, 2.0, 1.5])):
        ys = [y for _, y in points]
        assert sorted(range(len(ys)), key=lambda i: ys[i]) == sorted(
            range(len(losses)), key=lambda i: -losses[i]
        )
        assert [x for x, _ in points] == sorted(x for x, _ in points)
    root = ET.parse(out).getroot()
    legend = [text.text for text in root.iter(f"{SVG}text") if text.get("class") == "legend"]
    # the unlabelled run's folder name ("run") is shared with the other run: its parent tells them apart
    assert legend == ["first run", "b/run"]
    # the table on stdout: first, minimum with its step, last
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[-4:] == ["3", "0.5", "(40)", "0.75"]
    assert table[2].split()[:1] == ["b/run"]


def test_other_metric_and_x_key(plot, tmp_path):
    run = write_run(tmp_path / "run", [3.0, 2.0, 1.0, 0.5], eval_every=2)
    out = tmp_path / "eval.svg"

    assert plot.main([str(run), "--metric", "eval_lm_loss", "--x", "epoch", "--out", str(out)]) == 0

    (points,) = curves(out)
    assert len(points) == 2
    assert points[0][1] < points[1][1]  # eval loss 2.1 drawn above 0.6 (a smaller SVG y)
    assert points[0][0] < points[1][0]  # epoch 0.5 left of epoch 1


def test_log_y_puts_equal_ratios_at_equal_distances(plot, tmp_path):
    run = write_run(tmp_path / "run", [8.0, 4.0, 2.0, 1.0, 0.5])
    out = tmp_path / "log.svg"

    assert plot.main([str(run), "--log-y", "--out", str(out)]) == 0

    ys = [y for _, y in curves(out)[0]]
    gaps = [later - earlier for earlier, later in zip(ys, ys[1:])]
    assert gaps[0] > 0 and max(gaps) - min(gaps) < 0.05  # halving always moves the same distance down
    # on a linear axis distances follow differences: 8 -> 4 is twice as far as 4 -> 2
    linear = tmp_path / "linear.svg"
    assert plot.main([str(run), "--out", str(linear)]) == 0
    ys = [y for _, y in curves(linear)[0]]
    assert math.isclose(ys[1] - ys[0], 2 * (ys[2] - ys[1]), rel_tol=0.02)


@pytest.mark.parametrize(
    "low, high",
    [(0.0, 12000.0), (50.0, 6000.0), (0.087, 2.77), (0.9, 0.95), (-2.0, 5.0), (3.0, 3.0), (1e-4, 7e-4)],
)
def test_nice_ticks_cover_the_data_with_round_even_steps(plot, low, high):
    ticks = plot.nice_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high
    assert 3 <= len(ticks) <= 11
    steps = [b - a for a, b in zip(ticks, ticks[1:])]
    assert max(steps) - min(steps) < 1e-9 * max(1.0, abs(high))
    mantissa = steps[0] / 10 ** math.floor(math.log10(steps[0]))
    assert any(math.isclose(mantissa, m) for m in (1, 2, 5))


@pytest.mark.parametrize("low, high", [(0.087, 2.77), (1e-10, 1.5e-3), (0.5, 0.9), (1.0, 1.0), (2.0, 2000.0)])
def test_log_ticks_cover_the_data(plot, low, high):
    ticks = plot.log_ticks(low, high)
    assert ticks[0] <= low and ticks[-1] >= high and len(ticks) >= 2
    assert ticks == sorted(ticks)


def test_thinning_keeps_the_last_point(plot):
    points = [(float(step), 1.0 / step) for step in range(1, 2502)]
    kept = plot.thin(points, 1000)
    assert len(kept) <= 1000 and kept[0] == points[0] and kept[-1] == points[-1]
    assert plot.thin(points[:10], 1000) == points[:10]


def error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    return lines[0]


def test_missing_metric_names_the_run_and_its_keys(plot, tmp_path, capsys):
    good = write_run(tmp_path / "good", [1.0, 0.5], eval_every=1)
    bad = write_run(tmp_path / "bad", [1.0, 0.5])
    out = tmp_path / "out.svg"

    assert plot.main([str(good), str(bad), "--metric", "eval_lm_loss", "--out", str(out)]) == 2

    line = error_line(capsys)
    assert str(bad) in line and "'eval_lm_loss'" in line and "learning_rate" in line and "loss" in line
    assert not out.exists() and list(tmp_path.glob("*.svg*")) == []


def test_missing_run_is_one_error_line_and_writes_nothing(tmp_path):
    run = write_run(tmp_path / "run", [1.0, 0.5])
    out = tmp_path / "out.svg"
    missing = tmp_path / "no-such-run"

    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(run), f"{missing}=label", "--out", str(out)],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(missing) in lines[0]
    assert result.stdout == "" and not out.exists() and list(tmp_path.glob("*.svg*")) == []
