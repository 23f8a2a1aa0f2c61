"""`evaluate` metric modules shipped with xlm_hf, loadable offline with `evaluate.load(<path>)`."""

from functools import cache
from pathlib import Path

import evaluate

METRICS_DIR = Path(__file__).parent
AVAILABLE_METRICS = sorted(p.name for p in METRICS_DIR.iterdir() if (p / f"{p.name}.py").is_file())


def metric_path(name: str) -> str:
    if name not in AVAILABLE_METRICS:
        raise ValueError(f"Unknown metric {name!r}. Available metrics: {', '.join(AVAILABLE_METRICS)}.")
    return str(METRICS_DIR / name)


@cache
def load_metric(name: str) -> evaluate.EvaluationModule:
    """`evaluate.load` on the shipped module folder: never downloads."""
    return evaluate.load(metric_path(name))


__all__ = ["AVAILABLE_METRICS", "load_metric", "metric_path"]
