#!/usr/bin/env python
"""Draw the results of `xlm-hf compare` as one self-contained SVG bar chart: one group of bars per task, one bar
colour per family.

    python scripts/plot_compare.py RESULTS [RESULTS ...] --out compare.svg [--metric exact_match] [--title "..."] \
        [--allow-mixed-budgets]

    # one comparison per family (or per seed) in its own --out folder, drawn together
    python scripts/plot_compare.py outputs/cmp-mdlm outputs/cmp-ilm outputs/cmp-ilm-43/results.json \
        --out docs/images/compare.svg

RESULTS is the `--out` folder of `xlm-hf compare` (it holds `results.json`) or that json file itself; the rows of all
of them are drawn together. Each bar is the mean over seeds of `--metric` for one task and family, and each seed's
value is a dot on its bar. `--metric` is `exact_match` (default), `token_accuracy`, or any numeric key of a row or of
its `metrics` (`eval_lm_loss`, `train_steps`, `generation_tokens_per_second`, ...); fractions (keys ending in
`exact_match` or `accuracy`) are drawn in percent on a 0-100 axis. A family without a row for a task has no bar
there ("not run"), and a row whose metric is null (sudoku's token accuracy, say) is left out with a note.

Rows measured under different training budgets are not comparable, so two files for one task whose
(budget_minutes, clock) differ are an error, unless `--allow-mixed-budgets`: then each budget of a task is a group
of its own, labelled with its budget. The same task, family and seed in two files is an error too (a mean would count
it twice). A markdown table of the numbers goes to stdout, so they are in the log too.

The SVG is written by hand (no plotting library) and atomically, with the palette and tick rules of
`plot_learning_curves.py`. A family keeps its colour from picture to picture: the colours follow the fixed order
arlm, mlm, mdlm, ilm, flexmdm, then other families in the order they are first read.
"""

import argparse
import json
import math
import statistics
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

# the sibling script: Python puts a script's own folder first on sys.path, so its helpers import by name
from plot_learning_curves import (
    BOTTOM,
    COLOURS,
    LEFT,
    LEGEND_ROW,
    PLOT_HEIGHT,
    RIGHT,
    WIDTH,
    is_number,
    nice_ticks,
    svg_start,
    write_picture,
)

from xlm_hf.cli import CLIArgumentParser

RESULTS_JSON = "results.json"
FAMILY_ORDER = ("arlm", "mlm", "mdlm", "ilm", "flexmdm")
PERCENT_SUFFIXES = ("exact_match", "accuracy")  # fractions in 0..1, drawn and printed in percent
TOP = 64  # the margin above the plot area: title, subtitle, and room for the value over a full bar
MAX_BAR_WIDTH = 48
GROUP_FILL = 0.8  # the share of a group's width its bars take; the rest separates the groups
SECOND_LABEL_LINE = 14  # a group label's budget line, under the task name

Budget = tuple[float, str]  # (budget_minutes, clock) of results.json


@dataclass
class Results:
    """One results.json: where it was read from, what it was measured under, its rows."""

    file: Path
    task: str
    budget: Budget
    overrides: list[str]
    rows: list[dict[str, Any]]
    planned_runs: int | None  # absent in files written before it existed


@dataclass
class Group:
    """The bars of one task (and, with --allow-mixed-budgets, one budget): per family, (seed, value) pairs in
    reading order, and the seeds whose metric is null."""

    task: str
    budget: Budget
    values: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    skipped: dict[str, list[int]] = field(default_factory=dict)


def read_results(path: Path) -> Results:
    """A results.json of `xlm-hf compare`, checked for the keys this script reads."""
    if not path.exists():
        raise ValueError(
            f"{path} does not exist: give the --out folder of `xlm-hf compare`, or its {RESULTS_JSON}"
        )
    file = path / RESULTS_JSON if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{path} holds no {RESULTS_JSON}: give the --out folder of `xlm-hf compare`")
    try:
        report = json.loads(file.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{file} is not JSON ({error})") from None
    except UnicodeDecodeError:
        raise ValueError(f"{file} is not JSON (not UTF-8 text)") from None
    rows = report.get("rows") if isinstance(report, dict) else None
    well_formed = (
        isinstance(rows, list)
        and isinstance(report.get("task"), str)
        and is_number(report.get("budget_minutes"))
        and isinstance(report.get("clock"), str)
        and all(
            isinstance(row, dict) and isinstance(row.get("family"), str) and is_number(row.get("seed"))
            for row in rows
        )
    )
    if not well_formed:
        raise ValueError(
            f"{file} is not a results.json of `xlm-hf compare`: it needs task, budget_minutes, clock and rows "
            f"(each with a family and a seed)"
        )
    budget = (float(report["budget_minutes"]), report["clock"])
    planned = report.get("planned_runs")
    return Results(file, report["task"], budget, list(report.get("overrides") or []), rows, planned)


def metric_value(row: dict[str, Any], metric: str) -> Any:
    """The row's own key, else its `metrics` entry; `KeyError` when neither has it (None is a value: null)."""
    if metric in row:
        return row[metric]
    metrics = row.get("metrics")
    if isinstance(metrics, dict) and metric in metrics:
        return metrics[metric]
    raise KeyError(metric)


def numeric_keys(rows: list[dict[str, Any]]) -> list[str]:
    """The keys --metric could name: numeric values of the rows or of their `metrics` (not the seed)."""
    keys = set()
    for row in rows:
        metrics = row.get("metrics") if isinstance(row.get("metrics"), dict) else {}
        keys.update(key for key, value in [*row.items(), *metrics.items()] if is_number(value))
    return sorted(keys - {"seed"})


def budget_text(budget: Budget) -> str:
    minutes, clock = budget
    return f"{minutes:g} {'CPU' if clock == 'cpu' else clock}-minutes"


def is_percent(metric: str) -> bool:
    return metric.endswith(PERCENT_SUFFIXES)


def format_value(value: float, metric: str) -> str:
    return f"{100 * value:.1f}" if is_percent(metric) else f"{value:.4g}"


def collect(
    results: list[Results], metric: str, allow_mixed_budgets: bool = False
) -> tuple[list[Group], list[str]]:
    """The groups to draw, in first-read order, and notes for the table. Raises `ValueError` for rows that must not
    be drawn together (two budgets for one task, one seed twice) or when no row has a value for `metric`."""
    first_file: dict[str, Results] = {}  # the first file read for each task, to name it in a budget error
    groups: dict[tuple[str, Budget], Group] = {}
    read_from: dict[tuple[str, Budget, str, Any], Path] = {}  # (task, budget, family, seed) -> its file
    notes, known, has_value = [], False, False
    for result in results:
        first = first_file.setdefault(result.task, result)
        if first.budget != result.budget and not allow_mixed_budgets:
            raise ValueError(
                f"{result.task} was measured under {budget_text(first.budget)} per run in {first.file} but under "
                f"{budget_text(result.budget)} in {result.file}: rows under different budgets are not comparable. "
                f"Plot them separately, or pass --allow-mixed-budgets to draw one group per budget."
            )
        group = groups.setdefault((result.task, result.budget), Group(result.task, result.budget))
        for row in result.rows:
            family, seed = row["family"], row["seed"]
            earlier = read_from.setdefault((result.task, result.budget, family, seed), result.file)
            if earlier != result.file:
                raise ValueError(
                    f"{result.task} {family} seed {seed} is in both {earlier} and {result.file}: a mean over seeds "
                    f"would count it twice. Give only one of them."
                )
            try:
                value = metric_value(row, metric)
            except KeyError:
                group.skipped.setdefault(family, []).append(seed)
                notes.append(f"{result.task} {family} seed {seed} has no {metric}: left out")
                continue
            known = True
            if is_number(value) and math.isfinite(value):
                group.values.setdefault(family, []).append((seed, float(value)))
                has_value = True
            else:
                group.skipped.setdefault(family, []).append(seed)
                notes.append(
                    f"{result.task} {family} seed {seed} has {metric} = {json.dumps(value)}: left out"
                )
        if result.planned_runs is not None and len(result.rows) < result.planned_runs:
            notes.append(f"{result.file}: {len(result.rows)} of {result.planned_runs} runs done")
    for task in first_file:
        # the files of the task, by the overrides they ran with
        by_overrides: dict[tuple[str, ...], list[str]] = {}
        for result in results:
            if result.task == task:
                by_overrides.setdefault(tuple(result.overrides), []).append(str(result.file))
        if len(by_overrides) > 1:
            listed = "; ".join(
                f"[{' '.join(overrides) or 'none'}] in {', '.join(files)}"
                for overrides, files in by_overrides.items()
            )
            notes.append(f"{task}: the files were run with different overrides: {listed}")
    all_rows = [row for result in results for row in result.rows]
    if not known:
        keys = ", ".join(numeric_keys(all_rows))
        raise ValueError(f"no row has a {metric!r}: give --metric one of the rows' numeric keys: {keys}")
    if not has_value:
        raise ValueError(f"every row's {metric!r} is null or not a number: there is nothing to draw")
    return list(groups.values()), notes


def family_order(groups: list[Group]) -> list[str]:
    """The families of all groups: the fixed order first, then the others as first read."""
    seen = [family for group in groups for family in [*group.values, *group.skipped]]
    known = [family for family in FAMILY_ORDER if family in seen]
    return known + list(dict.fromkeys(family for family in seen if family not in FAMILY_ORDER))


def family_colour(family: str, families: list[str]) -> str:
    # the fixed families keep their colour whichever of them a picture shows; the others follow them
    others = [name for name in families if name not in FAMILY_ORDER]
    index = FAMILY_ORDER.index(family) if family in FAMILY_ORDER else len(FAMILY_ORDER) + others.index(family)
    return COLOURS[index % len(COLOURS)]


def attribute(text: str) -> str:
    """`text` for a double-quoted SVG attribute."""
    return escape(text, {'"': "&quot;"})


def group_name(group: Group, with_budget: bool) -> str:
    return f"{group.task} at {budget_text(group.budget)}" if with_budget else group.task


def missing_text(family: str, groups: list[Group], with_budget: bool) -> str:
    """What the legend says after a family's name about the groups where it has no bar."""
    not_run = [
        group_name(group, with_budget) for group in groups if family not in {*group.values, *group.skipped}
    ]
    no_value = [
        group_name(group, with_budget)
        for group in groups
        if family in group.skipped and family not in group.values
    ]
    parts = []
    if not_run:
        parts.append(f"not run: {', '.join(not_run)}")
    if no_value:
        parts.append(f"no value: {', '.join(no_value)}")
    return f" ({'; '.join(parts)})" if parts else ""


def build_svg(groups: list[Group], metric: str, title: str | None = None) -> str:
    """The picture as SVG text: per group and family with a value, one `<rect class="bar">` (its height the mean)
    and one `<circle class="seed">` per seed; a `<text class="not-run">` in the place of a missing bar; one
    `<text class="legend">` per family."""
    families = family_order(groups)
    percent = is_percent(metric)
    scale = 100.0 if percent else 1.0  # fractions are drawn in percent
    values = [value * scale for group in groups for pairs in group.values.values() for _, value in pairs]
    low, high = min(0.0, *values), max(100.0 if percent else 0.0, *values)
    ticks = nice_ticks(low, high if high > low else low + 1)  # the bars stand on 0: it is always on the axis
    y0, y1 = ticks[0], ticks[-1]
    right, bottom = WIDTH - RIGHT, PLOT_HEIGHT - BOTTOM
    with_budget = len({group.budget for group in groups}) > 1  # then each group says its own budget

    def to_y(value: float) -> float:  # SVG's y grows downwards: the largest value is at the top
        return round(bottom - (value * scale - y0) / (y1 - y0) * (bottom - TOP), 2)

    if with_budget:
        subtitle = "budget per run under each task, test split"
    else:
        subtitle = f"{budget_text(groups[0].budget)} per run, test split"
    if any(len(pairs) > 1 for group in groups for pairs in group.values.values()):
        subtitle += "; bars: mean over seeds, dots: each seed"
    height = PLOT_HEIGHT + LEGEND_ROW * len(families) + 8
    out = [
        *svg_start(height, title or f"{metric} by task and family"),
        f'<text class="subtitle" x="{WIDTH / 2}" y="42" text-anchor="middle" fill="#555">{escape(subtitle)}</text>',
    ]
    for tick in ticks:
        y = to_y(tick / scale)
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{right}" y2="{y}" stroke="#e5e5e5"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{tick:g}</text>')
    middle = (TOP + bottom) / 2
    out.append(
        f'<text class="axis-label" x="18" y="{middle}" text-anchor="middle" '
        f'transform="rotate(-90 18 {middle})">{escape(f"{metric} (%)" if percent else metric)}</text>'
    )
    group_width = (right - LEFT) / len(groups)
    slot = min(MAX_BAR_WIDTH, group_width * GROUP_FILL / len(families))
    zero = to_y(0.0)
    for index, group in enumerate(groups):
        centre = LEFT + group_width * (index + 0.5)
        first_slot = centre - slot * len(families) / 2
        for position, family in enumerate(families):
            x = first_slot + slot * position
            middle_x = round(x + slot / 2, 2)
            ids = f'data-task="{attribute(group.task)}" data-family="{attribute(family)}"'
            pairs = group.values.get(family)
            if not pairs:
                label = "no value" if family in group.skipped else "not run"
                out.append(
                    f'<text class="not-run" {ids} '
                    f'x="{middle_x}" y="{zero - 4}" font-size="10" fill="#777" '
                    f'transform="rotate(-90 {middle_x} {zero - 4})">{label}</text>'
                )
                continue
            mean = statistics.fmean(value for _, value in pairs)
            top = to_y(mean)
            seeds = ", ".join(str(seed) for seed, _ in pairs)
            tooltip = (
                f"{group_name(group, with_budget)}, {family}: {format_value(mean, metric)} (seeds {seeds})"
            )
            out.append(
                f'<rect class="bar" {ids} '
                f'x="{round(x + 1, 2)}" y="{min(top, zero)}" width="{round(slot - 2, 2)}" '
                f'height="{round(abs(zero - top), 2)}" fill="{family_colour(family, families)}">'
                f"<title>{escape(tooltip)}</title></rect>"
            )
            # the seeds' dots spread across the bar, so that equal values still show as several dots
            for number, (seed, value) in enumerate(pairs, start=1):
                out.append(
                    f'<circle class="seed" {ids} data-seed="{seed}" '
                    f'cx="{round(x + slot * number / (len(pairs) + 1), 2)}" cy="{to_y(value)}" r="3" '
                    'fill="white" stroke="#222" stroke-width="1.2"/>'
                )
            label_y = min(zero, top, *(to_y(value) for _, value in pairs)) - 6
            out.append(
                f'<text class="value" x="{middle_x}" y="{label_y}" text-anchor="middle" font-size="11">'
                f"{format_value(mean, metric)}{'%' if percent else ''}</text>"
            )
        out.append(
            f'<text class="group" x="{round(centre, 2)}" y="{bottom + 18}" text-anchor="middle">'
            f"{escape(group.task)}</text>"
        )
        if with_budget:
            out.append(
                f'<text class="group-budget" x="{round(centre, 2)}" y="{bottom + 18 + SECOND_LABEL_LINE}" '
                f'text-anchor="middle" fill="#555">{escape(budget_text(group.budget))}</text>'
            )
    out.append(
        f'<polyline points="{LEFT},{TOP} {LEFT},{bottom} {right},{bottom}" fill="none" stroke="#444"/>'
    )
    if y0 < 0:  # the bars' base inside the plot
        out.append(f'<line x1="{LEFT}" y1="{zero}" x2="{right}" y2="{zero}" stroke="#444"/>')
    for index, family in enumerate(families):
        row = PLOT_HEIGHT + LEGEND_ROW * index + 4
        out.append(
            f'<rect x="{LEFT}" y="{row - 6}" width="28" height="12" fill="{family_colour(family, families)}"/>'
        )
        out.append(
            f'<text class="legend" x="{LEFT + 36}" y="{row + 4}">'
            f"{escape(family + missing_text(family, groups, with_budget))}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def markdown_table(groups: list[Group], metric: str) -> str:
    """Per group and family: the budget, the number of seeds, the mean and each seed's value."""
    unit = " %" if is_percent(metric) else ""
    lines = [
        f"| task | budget | family | seeds | {metric}{unit} (mean) | per seed |",
        "|---|---|---|---|---|---|",
    ]
    for group in groups:
        for family in family_order(groups):
            pairs, skipped = group.values.get(family, []), group.skipped.get(family, [])
            if pairs or skipped:
                mean = format_value(statistics.fmean(value for _, value in pairs), metric) if pairs else "–"
                per_seed = [f"{seed}: {format_value(value, metric)}" for seed, value in pairs]
                per_seed += [f"{seed}: null" for seed in skipped]
                cells = [str(len(pairs)), mean, ", ".join(per_seed)]
            else:
                cells = ["0", "not run", ""]
            lines.append(f"| {group.task} | {budget_text(group.budget)} | {family} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = CLIArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "results",
        nargs="+",
        type=Path,
        metavar="RESULTS",
        help="an `xlm-hf compare` --out folder or its results.json",
    )
    parser.add_argument("--out", required=True, type=Path, help="the SVG file to write")
    parser.add_argument(
        "--metric",
        default="exact_match",
        help="the key of a row or of its metrics to draw (default: exact_match)",
    )
    parser.add_argument("--title", default=None)
    parser.add_argument(
        "--allow-mixed-budgets",
        action="store_true",
        help="draw a task measured under several budgets as one group per budget instead of refusing",
    )
    args = parser.parse_args(argv)

    def make() -> tuple[str, str, list[str]]:
        results, files = [], set()
        for path in args.results:
            result = read_results(path)
            if result.file.resolve() not in files:  # a folder and its results.json are one file
                files.add(result.file.resolve())
                results.append(result)
        groups, notes = collect(results, args.metric, args.allow_mixed_budgets)
        return build_svg(groups, args.metric, args.title), markdown_table(groups, args.metric), notes

    return write_picture(args.out, make)


if __name__ == "__main__":
    sys.exit(main())
