"""`scripts/plot_compare.py`: results.json files of `xlm-hf compare` drawn as one SVG bar chart (a group per task in
first-read order, families in a fixed order and colour, bar height the mean over seeds, a dot per seed, no bar where
nothing was run), a markdown table of the numbers, and user errors as one `error:` line with exit status 2 and no
file written."""

import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from script_module import SCRIPTS_DIR, load_script

SCRIPT = SCRIPTS_DIR / "plot_compare.py"
SVG = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def plot():
    return load_script("plot_compare.py")


def row(
    family: str, seed: int, exact_match: float | None, token_accuracy: float | None = 0.5, **metrics
) -> dict:
    """A row as `xlm-hf compare` writes it."""
    return {
        "family": family,
        "experiment": f"star_easy_{family}",
        "seed": seed,
        "exact_match": exact_match,
        "token_accuracy": token_accuracy,
        "train_steps": 6000,
        "schedule_steps": 6000,
        "train_cpu_seconds": 1800.2,
        "train_wall_seconds": 1811.0,
        "stopped_by_budget": True,
        "generation_tokens_per_second": 4100.5,
        "test_examples": 500,
        "output_dir": f"outputs/runs/{family}-seed{seed}",
        "metrics": {"eval_lm_loss": 0.25, "eval_prediction_exact_match": exact_match, **metrics},
    }


def write_results(
    folder: Path, task: str, rows: list[dict], budget_minutes: float = 30.0, clock: str = "cpu", **extra
) -> Path:
    """The --out folder of one `xlm-hf compare` run, holding results.json."""
    folder.mkdir(parents=True)
    report = {
        "task": task,
        "budget_minutes": budget_minutes,
        "clock": clock,
        "seeds": sorted({r["seed"] for r in rows}),
        "overrides": [],
        "torch_threads": 1,
        "out": str(folder),
        "planned_runs": len(rows),
        "rows": rows,
        **extra,
    }
    (folder / "results.json").write_text(json.dumps(report, indent=2))
    return folder


def elements(path: Path, tag: str, css_class: str) -> list[ET.Element]:
    return [e for e in ET.parse(path).getroot().iter(f"{SVG}{tag}") if e.get("class") == css_class]


def bars(path: Path) -> dict[tuple[str, str], ET.Element]:
    return {(bar.get("data-task"), bar.get("data-family")): bar for bar in elements(path, "rect", "bar")}


def texts(path: Path, css_class: str) -> list[str]:
    return [text.text for text in elements(path, "text", css_class)]


def table_rows(stdout: str) -> dict[tuple[str, str], list[str]]:
    """The markdown table's rows by (task, family): the cells after them."""
    cells = [[cell.strip() for cell in line.strip("|").split("|")] for line in stdout.splitlines()]
    return {(row[0], row[2]): row[3:] for row in cells if len(row) == 6 and row[0] not in ("task", "---")}


def test_groups_in_first_read_order_and_families_in_fixed_order(plot, tmp_path, capsys):
    medium = write_results(tmp_path / "medium", "star_medium", [row("ilm", 42, 0.9)])
    easy = write_results(
        tmp_path / "easy", "star_easy", [row("newfam", 42, 0.3), row("ilm", 42, 0.8), row("arlm", 42, 0.6)]
    )
    more_easy = write_results(tmp_path / "easy-mdlm", "star_easy", [row("mdlm", 42, 0.7)])
    out = tmp_path / "compare.svg"

    assert plot.main([str(medium), str(easy), str(more_easy / "results.json"), "--out", str(out)]) == 0

    assert texts(out, "group") == ["star_medium", "star_easy"]
    legend = texts(out, "legend")
    assert [entry.split()[0] for entry in legend] == ["arlm", "mdlm", "ilm", "newfam"]
    # a family keeps its colour whichever families a picture shows: the palette follows the fixed order
    drawn = bars(out)
    colours = plot.COLOURS
    assert drawn["star_easy", "arlm"].get("fill") == colours[0]
    assert drawn["star_easy", "mdlm"].get("fill") == colours[2]
    assert drawn["star_easy", "ilm"].get("fill") == colours[3]
    assert drawn["star_easy", "newfam"].get("fill") == colours[5]
    # within a group the bars stand left to right in the legend's order, and each group right of the one before
    easy_x = [float(drawn["star_easy", family].get("x")) for family in ("arlm", "mdlm", "ilm", "newfam")]
    assert easy_x == sorted(easy_x)
    assert float(drawn["star_medium", "ilm"].get("x")) < easy_x[0]
    # star_medium ran ilm only: the other families have no bar there, and say so
    assert set(drawn) == {
        ("star_medium", "ilm"),
        *(("star_easy", f) for f in ("arlm", "mdlm", "ilm", "newfam")),
    }
    not_run = {(text.get("data-task"), text.get("data-family")) for text in elements(out, "text", "not-run")}
    assert not_run == {("star_medium", family) for family in ("arlm", "mdlm", "newfam")}
    assert legend[0] == "arlm (not run: star_medium)" and legend[2] == "ilm"
    table = table_rows(capsys.readouterr().out)
    assert table["star_medium", "arlm"] == ["0", "not run", ""]
    assert table["star_easy", "newfam"] == ["1", "30.0", "42: 30.0"]


def test_bar_height_is_the_mean_over_seeds_and_each_seed_is_a_dot(plot, tmp_path, capsys):
    # one comparison per seed, in separate folders, as people run them
    seed42 = write_results(tmp_path / "s42", "star_easy", [row("arlm", 42, 1.0), row("mdlm", 42, 0.5)])
    seed43 = write_results(tmp_path / "s43", "star_easy", [row("mdlm", 43, 0.7)])
    out = tmp_path / "compare.svg"

    assert plot.main([str(seed42), str(seed43), "--out", str(out)]) == 0

    drawn = bars(out)
    full = drawn["star_easy", "arlm"]  # exact match 1.0 reaches the top of the 0-100 % axis
    top, bottom = float(full.get("y")), float(full.get("y")) + float(full.get("height"))
    mdlm = drawn["star_easy", "mdlm"]
    assert float(mdlm.get("y")) + float(mdlm.get("height")) == pytest.approx(bottom)
    assert float(mdlm.get("height")) / (bottom - top) == pytest.approx(0.6, abs=1e-3)
    assert texts(out, "tick") == ["0", "20", "40", "60", "80", "100"]
    dots = {
        (dot.get("data-family"), int(dot.get("data-seed"))): dot for dot in elements(out, "circle", "seed")
    }
    assert set(dots) == {("arlm", 42), ("mdlm", 42), ("mdlm", 43)}
    for (family, seed), value in {("mdlm", 42): 0.5, ("mdlm", 43): 0.7, ("arlm", 42): 1.0}.items():
        assert (bottom - float(dots[family, seed].get("cy"))) / (bottom - top) == pytest.approx(
            value, abs=1e-3
        )
    # the two dots of one bar lie on it, side by side
    mdlm_left, mdlm_right = float(mdlm.get("x")), float(mdlm.get("x")) + float(mdlm.get("width"))
    xs = [float(dots["mdlm", seed].get("cx")) for seed in (42, 43)]
    assert mdlm_left < xs[0] < xs[1] < mdlm_right
    assert texts(out, "value") == ["100.0%", "60.0%"]
    subtitle = texts(out, "subtitle")[0]
    assert subtitle.startswith("30 CPU-minutes per run, test split")
    table = table_rows(capsys.readouterr().out)
    assert table["star_easy", "mdlm"] == ["2", "60.0", "42: 50.0, 43: 70.0"]
    assert table["star_easy", "arlm"] == ["1", "100.0", "42: 100.0"]


def test_null_metric_is_left_out_with_a_note(plot, tmp_path, capsys):
    results = write_results(
        tmp_path / "sudoku",
        "sudoku",
        [row("arlm", 42, 0.0, token_accuracy=0.54), row("ilm", 42, 0.0, token_accuracy=None)],
    )
    out = tmp_path / "compare.svg"

    assert plot.main([str(results), "--metric", "token_accuracy", "--out", str(out)]) == 0

    assert set(bars(out)) == {("sudoku", "arlm")}
    assert [t.get("data-family") for t in elements(out, "text", "not-run")] == ["ilm"]
    assert texts(out, "legend") == ["arlm", "ilm (no value: sudoku)"]
    stdout = capsys.readouterr().out
    assert table_rows(stdout)["sudoku", "ilm"] == ["0", "–", "42: null"]
    assert "note: sudoku ilm seed 42 has token_accuracy = null: left out" in stdout.splitlines()


def test_a_key_of_metrics_is_drawn_as_a_number_from_zero(plot, tmp_path, capsys):
    results = write_results(
        tmp_path / "text",
        "text_pydoc",
        [row("arlm", 42, None, None, eval_lm_loss=2.0), row("mdlm", 42, None, None, eval_lm_loss=3.5)],
    )
    out = tmp_path / "loss.svg"

    assert plot.main([str(results), "--metric", "eval_lm_loss", "--out", str(out)]) == 0

    ticks = [float(tick) for tick in texts(out, "tick")]
    assert ticks[0] == 0 and ticks[-1] >= 3.5 and ticks[-2] < 3.5  # 0 to a round value just above the data
    drawn = bars(out)
    heights = [float(drawn["text_pydoc", family].get("height")) for family in ("arlm", "mdlm")]
    assert heights[1] / heights[0] == pytest.approx(3.5 / 2.0, rel=1e-3)
    assert texts(out, "value") == ["2", "3.5"]
    assert table_rows(capsys.readouterr().out)["text_pydoc", "mdlm"] == ["1", "3.5", "42: 3.5"]


def error_line(capsys) -> str:
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    assert captured.out == ""
    return lines[0]


def test_different_budgets_for_one_task_are_an_error_unless_allowed(plot, tmp_path, capsys):
    long_run = write_results(tmp_path / "long", "star_hard", [row("ilm", 42, 0.1)])
    short_run = write_results(tmp_path / "short", "star_hard", [row("mdlm", 42, 0.0)], budget_minutes=6)
    other_task = write_results(tmp_path / "easy", "star_easy", [row("ilm", 42, 1.0)], clock="wall")
    out = tmp_path / "compare.svg"

    assert plot.main([str(long_run), str(other_task), str(short_run), "--out", str(out)]) == 2

    line = error_line(capsys)
    assert str(long_run / "results.json") in line and str(short_run / "results.json") in line
    assert "30 CPU-minutes" in line and "6 CPU-minutes" in line and "--allow-mixed-budgets" in line
    assert not out.exists() and list(tmp_path.glob("*.svg*")) == []

    args = [str(long_run), str(other_task), str(short_run), "--allow-mixed-budgets", "--out", str(out)]
    assert plot.main(args) == 0

    # one group per task and budget, each labelled with its budget; no bar mixes the two budgets
    assert texts(out, "group") == ["star_hard", "star_easy", "star_hard"]
    assert texts(out, "group-budget") == ["30 CPU-minutes", "30 wall-minutes", "6 CPU-minutes"]
    assert "budget per run under each task" in texts(out, "subtitle")[0]
    table = capsys.readouterr().out.splitlines()
    assert "| star_hard | 6 CPU-minutes | mdlm | 1 | 0.0 | 42: 0.0 |" in table
    assert "| star_hard | 30 CPU-minutes | mdlm | 0 | not run |  |" in table


def test_one_seed_in_two_files_is_an_error(plot, tmp_path, capsys):
    first = write_results(tmp_path / "a", "star_easy", [row("ilm", 42, 0.8)])
    second = write_results(tmp_path / "b", "star_easy", [row("ilm", 42, 0.6)])
    out = tmp_path / "compare.svg"

    assert plot.main([str(first), str(second), "--out", str(out)]) == 2

    line = error_line(capsys)
    assert (
        "ilm seed 42" in line and str(first / "results.json") in line and str(second / "results.json") in line
    )
    assert not out.exists()
    # the same file named twice (its folder and itself) is read once
    assert plot.main([str(first), str(first / "results.json"), "--out", str(out)]) == 0
    assert len(elements(out, "circle", "seed")) == 1


@pytest.mark.parametrize(
    "content, expected",
    [
        (None, "does not exist"),
        ("{not json", "is not JSON"),
        (json.dumps({"task": "star_easy", "budget_minutes": 30, "clock": "cpu"}), "is not a results.json"),
        (json.dumps([1, 2]), "is not a results.json"),
    ],
)
def test_bad_input_is_one_error_line_and_writes_nothing(plot, tmp_path, capsys, content, expected):
    good = write_results(tmp_path / "good", "star_easy", [row("ilm", 42, 0.8)])
    bad = tmp_path / "bad.json"
    if content is not None:
        bad.write_text(content)
    out = tmp_path / "compare.svg"

    assert plot.main([str(good), str(bad), "--out", str(out)]) == 2

    line = error_line(capsys)
    assert str(bad) in line and expected in line
    assert not out.exists() and list(tmp_path.glob("*.svg*")) == []


def test_unknown_metric_names_the_keys_there_are(plot, tmp_path, capsys):
    results = write_results(tmp_path / "r", "star_easy", [row("ilm", 42, 0.8)])
    out = tmp_path / "compare.svg"

    assert plot.main([str(results), "--metric", "eval_lm_los", "--out", str(out)]) == 2

    line = error_line(capsys)
    assert "'eval_lm_los'" in line and "eval_lm_loss" in line and "token_accuracy" in line
    assert not out.exists()


def test_a_folder_without_results_fails_from_the_command_line(tmp_path):
    good = write_results(tmp_path / "good", "star_easy", [row("ilm", 42, 0.8)])
    empty = tmp_path / "empty"
    empty.mkdir()
    out = tmp_path / "compare.svg"

    result = subprocess.run(
        [sys.executable, str(SCRIPT), str(good), str(empty), "--out", str(out)],
        capture_output=True,
        text=True,
    )

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(empty) in lines[0]
    assert result.stdout == "" and not out.exists()
