#!/usr/bin/env python
"""Draw learning curves from the `trainer_state.json` of training runs as one self-contained SVG picture.

    python scripts/plot_learning_curves.py RUN[=LABEL] [RUN[=LABEL] ...] --metric loss --out curves.svg \
        [--title "..."] [--log-y] [--x step] [--x-label "..."] [--y-label "..."] [--max-points 1000]

    # two runs of `xlm-hf compare`, their evaluation loss against the samples seen (runs with different batch sizes)
    python scripts/plot_learning_curves.py outputs/cmp/runs/mdlm-seed42=MDLM outputs/cmp/runs/ilm-seed42=ILM \
        --metric eval_lm_loss --x epoch --log-y --out docs/images/mdlm-vs-ilm.svg

RUN is a run folder written by `xlm-hf train` / `xlm-hf compare` (it holds `trainer_state.json`) or that json file
itself; LABEL names the run in the legend (default: the run folder's name, with as many parent folders as it takes to
tell the runs apart). `--metric` is any key of the Trainer's `log_history` (`loss`, `eval_lm_loss`,
`eval_prediction_exact_match`, `learning_rate`, ...), one metric per picture; `--x` is the key along the x axis
(`step`, or `epoch` to compare runs whose batch sizes differ). Log entries without the metric are skipped; a run with
no entry for it is an error that lists the keys the run did log. With `--log-y`, values <= 0 cannot be drawn and are
left out (the table says how many).

The SVG is written by hand (no plotting library) and atomically: axes with round tick values, one line per run in
colours that colour-blind readers tell apart, a legend under the plot. A run with more than `--max-points` points is
thinned to every k-th point (plus the last) to keep the file small. A table of the numbers (first value, minimum and
where, last value per run) goes to stdout, so they are in the log too.
"""

import argparse
import json
import math
import sys
from collections.abc import Callable
from pathlib import Path
from xml.sax.saxutils import escape

from xlm_hf.atomic_io import atomic_write_text
from xlm_hf.cli import ENVIRONMENT_ERRNOS, CLIArgumentParser

# Okabe & Ito's palette, told apart by colour-blind readers (its yellow is left out: too light on white)
COLOURS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000")
WIDTH, PLOT_HEIGHT = 760, 400  # the plot area, axes and labels; the legend adds one row per run below
LEFT, RIGHT, TOP, BOTTOM = 72, 24, 44, 56  # margins around the plot area
LEGEND_ROW = 20
MARKERS_UP_TO = 40  # runs with this many points or fewer also get a dot per point (evaluations are sparse)

Series = list[tuple[float, float]]


def read_series(path: Path, metric: str, x_key: str = "step") -> Series:
    """The (x, metric) points of one run, in logging order; entries without both keys (or not finite) are skipped."""
    if not path.exists():
        raise ValueError(f"{path} does not exist: give a run folder holding trainer_state.json, or that file")
    file = path / "trainer_state.json" if path.is_dir() else path
    if not file.is_file():
        raise ValueError(f"{path} holds no trainer_state.json: give the output folder of a training run")
    try:
        history = json.loads(file.read_text())["log_history"]
    except (json.JSONDecodeError, KeyError, TypeError) as error:
        raise ValueError(f"{file} is not a Trainer state with a log_history ({error!r})") from None
    points = []
    for entry in history:
        x, y = entry.get(x_key), entry.get(metric)
        if is_number(x) and is_number(y) and math.isfinite(x) and math.isfinite(y):
            points.append((float(x), float(y)))
    if not points:
        keys = sorted({key for entry in history for key in entry})
        raise ValueError(
            f"{file} logged no {metric!r} against {x_key!r}: give --metric/--x one of its keys: {', '.join(keys)}"
        )
    return points


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def thin(points: Series, max_points: int) -> Series:
    """Every k-th point (k the smallest stride that keeps at most `max_points`), always with the last one."""
    if len(points) <= max_points:
        return points
    stride = math.ceil(len(points) / (max_points - 1))
    kept = points[::stride]
    return kept if kept[-1] == points[-1] else [*kept, points[-1]]


def nice_ticks(low: float, high: float, count: int = 6) -> list[float]:
    """Evenly spaced round values (1, 2 or 5 times a power of ten apart), the first <= `low` and the last >= `high`:
    of the round spacings, the one whose number of ticks is closest to `count` (fewer on a tie)."""
    if high <= low:  # a flat curve: a range around it
        low, high = low - (abs(low) or 1) / 2, high + (abs(high) or 1) / 2
    power = 10.0 ** math.floor(math.log10((high - low) / count))
    candidates = []
    for step in (m * power for m in (1, 2, 5, 10, 20, 50)):
        first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
        candidates.append(
            (abs(last - first + 1 - count), last - first, [_round(i * step) for i in range(first, last + 1)])
        )
    return min(candidates)[2]


def log_ticks(low: float, high: float) -> list[float]:
    """Round values for a log axis from the largest one <= `low` to the smallest one >= `high`: 1, 2 and 5 times
    each power of ten when the range spans few decades, the powers of ten alone otherwise."""
    if high <= low:  # a flat curve: a factor of two either side
        low, high = low / 2, high * 2
    first, last = math.floor(math.log10(low)), math.ceil(math.log10(high))
    mantissas = (1, 2, 5) if last - first <= 3 else (1,)
    ticks = [_round(m * 10.0**e) for e in range(first, last + 1) for m in mantissas]
    below = [t for t in ticks if t <= low * (1 + 1e-9)]
    above = [t for t in ticks if t >= high * (1 - 1e-9)]
    return [t for t in ticks if below[-1] <= t <= above[0]]


def _round(value: float) -> float:
    return float(f"{value:.12g}")  # 0.30000000000000004 -> 0.3


def svg_start(height: int, title: str) -> list[str]:
    """The opening lines of a picture: the svg element, a white background and the title."""
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" font-family="sans-serif" font-size="12">',
        f'<rect width="{WIDTH}" height="{height}" fill="white"/>',
        f'<text class="title" x="{WIDTH / 2}" y="24" text-anchor="middle" font-size="15">{escape(title)}</text>',
    ]


def build_svg(
    runs: list[tuple[str, Series]],
    metric: str,
    x_key: str = "step",
    title: str | None = None,
    log_y: bool = False,
    x_label: str | None = None,
    y_label: str | None = None,
) -> str:
    """The picture as SVG text: one `<polyline class="curve">` per run (in `runs` order) and one
    `<text class="legend">` per run with its label."""
    xs = [x for _, points in runs for x, _ in points]
    ys = [y for _, points in runs for _, y in points]
    x_ticks = nice_ticks(min(xs), max(xs))
    y_ticks = log_ticks(min(ys), max(ys)) if log_y else nice_ticks(min(ys), max(ys))
    scale = math.log10 if log_y else float
    x0, x1 = x_ticks[0], x_ticks[-1]
    y0, y1 = scale(y_ticks[0]), scale(y_ticks[-1])
    right, bottom = WIDTH - RIGHT, PLOT_HEIGHT - BOTTOM

    def to_x(x: float) -> float:
        return round(LEFT + (x - x0) / (x1 - x0) * (right - LEFT), 2)

    def to_y(y: float) -> float:  # SVG's y grows downwards: the largest value is at the top
        return round(bottom - (scale(y) - y0) / (y1 - y0) * (bottom - TOP), 2)

    height = PLOT_HEIGHT + LEGEND_ROW * len(runs) + 8
    out = svg_start(height, title or f"{metric} against {x_key}")
    for tick in x_ticks:
        x = to_x(tick)
        out.append(f'<line x1="{x}" y1="{TOP}" x2="{x}" y2="{bottom}" stroke="#e5e5e5"/>')
        out.append(f'<text class="tick" x="{x}" y="{bottom + 16}" text-anchor="middle">{tick:g}</text>')
    for tick in y_ticks:
        y = to_y(tick)
        out.append(f'<line x1="{LEFT}" y1="{y}" x2="{right}" y2="{y}" stroke="#e5e5e5"/>')
        out.append(f'<text class="tick" x="{LEFT - 6}" y="{y + 4}" text-anchor="end">{tick:g}</text>')
    out.append(
        f'<polyline points="{LEFT},{TOP} {LEFT},{bottom} {right},{bottom}" fill="none" stroke="#444"/>'
    )
    out.append(
        f'<text class="axis-label" x="{(LEFT + right) / 2}" y="{bottom + 38}" text-anchor="middle">'
        f"{escape(x_label or x_key)}</text>"
    )
    y_text = y_label or (f"{metric} (log scale)" if log_y else metric)
    middle = (TOP + bottom) / 2
    out.append(
        f'<text class="axis-label" x="18" y="{middle}" text-anchor="middle" '
        f'transform="rotate(-90 18 {middle})">{escape(y_text)}</text>'
    )
    for index, (label, points) in enumerate(runs):
        colour = COLOURS[index % len(COLOURS)]
        coordinates = " ".join(f"{to_x(x):g},{to_y(y):g}" for x, y in points)
        out.append(
            f'<polyline class="curve" points="{coordinates}" fill="none" stroke="{colour}" stroke-width="1.6" '
            f'stroke-linejoin="round"><title>{escape(label)}</title></polyline>'
        )
        if len(points) <= MARKERS_UP_TO:
            out.extend(f'<circle cx="{to_x(x)}" cy="{to_y(y)}" r="2.5" fill="{colour}"/>' for x, y in points)
        row = PLOT_HEIGHT + LEGEND_ROW * index + 4
        out.append(
            f'<line x1="{LEFT}" y1="{row}" x2="{LEFT + 28}" y2="{row}" stroke="{colour}" stroke-width="3"/>'
        )
        out.append(f'<text class="legend" x="{LEFT + 36}" y="{row + 4}">{escape(label)}</text>')
    out.append("</svg>")
    return "\n".join(out) + "\n"


def table(runs: list[tuple[str, Series]], metric: str, x_key: str) -> str:
    """First value, minimum (and its x) and last value of each run, as aligned text."""
    width = max(len("run"), *(len(label) for label, _ in runs))
    lines = [f"{'run':<{width}}  {'first':>10}  {f'min ({x_key})':>22}  {'last':>10}   [{metric}]"]
    for label, points in runs:
        x_min, y_min = min(points, key=lambda point: point[1])
        at_min = f"{y_min:.4g} ({x_min:.0f})" if x_min.is_integer() else f"{y_min:.4g} ({x_min:.4g})"
        lines.append(f"{label:<{width}}  {points[0][1]:>10.4g}  {at_min:>22}  {points[-1][1]:>10.4g}")
    return "\n".join(lines)


def parse_run(spec: str) -> tuple[Path, str | None]:
    """`RUN=LABEL` as (path, label); a path that exists as given (it may hold "=") has no label."""
    if "=" not in spec or Path(spec).exists():
        return Path(spec), None
    path, label = spec.split("=", 1)
    return Path(path), label or None


def default_labels(paths: list[Path]) -> list[str]:
    """Each run folder's name, with as many parent folders as it takes to tell them apart."""
    folders = [path.resolve().parent if path.is_file() else path.resolve() for path in paths]
    for depth in range(1, max(len(folder.parts) for folder in folders) + 1):
        labels = ["/".join(folder.parts[-depth:]) for folder in folders]
        if len(set(labels)) == len(labels):
            return labels
    return [str(folder) for folder in folders]


def main(argv: list[str] | None = None) -> int:
    parser = CLIArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "runs", nargs="+", metavar="RUN[=LABEL]", help="a run folder or its trainer_state.json"
    )
    parser.add_argument("--metric", default="loss", help="the key of log_history to draw (default: loss)")
    parser.add_argument("--out", required=True, type=Path, help="the SVG file to write")
    parser.add_argument(
        "--x", dest="x_key", default="step", help="the key along the x axis: step (default) or epoch"
    )
    parser.add_argument("--title", default=None)
    parser.add_argument("--x-label", default=None, help="default: the --x key")
    parser.add_argument("--y-label", default=None, help="default: the metric")
    parser.add_argument("--log-y", action="store_true", help="a logarithmic y axis")
    parser.add_argument(
        "--max-points", type=int, default=1000, help="thin each run to at most this many points"
    )
    args = parser.parse_args(argv)
    if args.max_points < 2:
        parser.error("--max-points must be at least 2")

    def make() -> tuple[str, str, list[str]]:
        paths, labels = zip(*(parse_run(spec) for spec in args.runs))
        series = [read_series(path, args.metric, args.x_key) for path in paths]
        labels = [label or default for label, default in zip(labels, default_labels(paths))]
        runs, notes = [], []
        for label, points in zip(labels, series):
            if args.log_y:
                positive = [(x, y) for x, y in points if y > 0]
                if not positive:
                    raise ValueError(
                        f"run {label!r} has no {args.metric} > 0 to draw on a log scale: drop --log-y"
                    )
                if len(positive) < len(points):
                    notes.append(
                        f"{label}: {len(points) - len(positive)} values <= 0 left out on the log scale"
                    )
                points = positive
            if len(points) > args.max_points:
                notes.append(f"{label}: {len(points)} points thinned to at most {args.max_points}")
            runs.append((label, points))
        svg = build_svg(
            [(label, thin(points, args.max_points)) for label, points in runs],
            args.metric,
            args.x_key,
            args.title,
            args.log_y,
            args.x_label,
            args.y_label,
        )
        return svg, table(runs, args.metric, args.x_key), notes

    return write_picture(args.out, make)


def write_picture(out: Path, make: Callable[[], tuple[str, str, list[str]]]) -> int:
    """The end of a plotting script's `main`: `make()` gives the SVG, a table of its numbers and notes; the SVG is
    written atomically to `out`, then the table and notes are printed. A ValueError (bad input), a full disk or a
    read-only folder is one `error:` line and exit status 2, with nothing written."""
    try:
        svg, numbers, notes = make()
        out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out, svg)
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except OSError as error:  # a full disk or a read-only folder: say which file; anything else is a bug
        if error.errno not in ENVIRONMENT_ERRNOS:
            raise
        print(
            f"error: {error.strerror} ({error.filename}): free disk space or choose another --out",
            file=sys.stderr,
        )
        return 2
    print(numbers)
    for note in notes:
        print(f"note: {note}")
    print(f"wrote {out} ({len(svg) / 1024:.1f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
