"""`xlm-hf compare`: train and evaluate several families on one task at an equal time budget, and tabulate them.

    xlm-hf compare star_easy --families arlm,mlm,mdlm,ilm --budget-minutes 30 --seeds 42,43 --out outputs/compare

For each family and seed, the family's recipe for the task (the built-in experiment `<task>_<family>`) is trained
with `training.seed` set, until its own `max_steps` or until the budget is spent, whichever comes first:
- the budget is **CPU time** of the training process by default (`--clock cpu`: `time.process_time()`, the CPU
  seconds of every thread of the process, so two threads spend a budget twice as fast as one), or **wall time**
  (`--clock wall`); it counts from the first training step's start, not the data preparation;
- training runs without periodic evaluation (an evaluation would spend the budget), and stops at the end of the
  step where the budget ran out; the export, then the evaluation on the test split, come after;
- the learning-rate schedule follows the recipe's `max_steps`: a budget that stops training well before it stops a
  schedule mid-way (set `--set training.max_steps=N` to end the schedule within the budget). Such a run is
  flagged: a warning names the step it reached, and the table's steps read `N of M`.

Then each exported model is evaluated on the test split (`xlm-hf eval`'s job; `--limit` for the first N examples)
and its generation speed measured: new tokens per second of `generate` over the first test prompts (batch of
`--speed-batch-size`, greedy as the recipe says, on the CPU, after one warm-up batch). The table (`results.md`)
and all numbers (`results.json`) go to `--out`, rewritten after every run: a long comparison that is interrupted or
fails keeps the rows of the runs it finished (`planned_runs` says how many there were to be). Each run's folder is
`<out>/runs/<family>-seed<S>`.

Runs go one after another in this process, or `--jobs N` at a time, each in a fresh process with
`--threads-per-job` torch threads (default 1) and its output in `<out>/runs/<family>-seed<S>.log`. With the CPU
clock the budget is the same whichever way they run; N runs of one thread each want N free cores to finish in the
wall time of one.
"""

import json
import math
import multiprocessing
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import CancelledError, ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.utils import logging

from .atomic_io import atomic_write_text
from .experiment import available_experiments

CLOCKS = ("cpu", "wall")
RESULTS_JSON, RESULTS_MD = "results.json", "results.md"
# a budget-stopped run that reached less than this fraction of its schedule is warned about: its learning rate was
# still far from the schedule's end
SCHEDULE_WARNING_FRACTION = 0.9

logger = logging.get_logger(__name__)


class TimeBudget(TrainerCallback):
    """Stops training at the end of the step where `seconds` of `clock` time (see the module docstring) have been
    spent since training began; the stopping step is saved like a last step."""

    def __init__(self, seconds: float, clock: str = "cpu"):
        if clock not in CLOCKS:
            raise ValueError(f"The budget clock is one of {CLOCKS}, got {clock!r}.")
        self.seconds, self.clock = float(seconds), clock
        self.start_cpu = self.start_wall = 0.0
        self.stopped_by_budget = False
        self.training_time: dict[str, float] = {}  # {"cpu": s, "wall": s} of training alone, set when it ends

    def on_train_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.start_cpu, self.start_wall = time.process_time(), time.perf_counter()

    def spent(self) -> dict[str, float]:
        return {"cpu": time.process_time() - self.start_cpu, "wall": time.perf_counter() - self.start_wall}

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.spent()[self.clock] >= self.seconds:
            self.stopped_by_budget = True
            control.should_training_stop = True
            # saved like a last step: the weights are on disk before the export and the evaluation
            control.should_save = True

    def on_train_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        self.training_time = self.spent()  # before the export and the evaluation


@dataclass
class CompareRow:
    family: str
    experiment: str
    seed: int
    exact_match: float | None
    token_accuracy: float | None
    train_steps: int
    schedule_steps: int  # the recipe's `max_steps`, where its learning-rate schedule ends
    train_cpu_seconds: float
    train_wall_seconds: float
    stopped_by_budget: bool
    generation_tokens_per_second: float
    test_examples: int
    output_dir: str
    metrics: dict[str, float]


def parse_list(text: str, what: str, cast=str) -> list:
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ValueError(f"--{what} needs at least one value (comma-separated).")
    try:
        return [cast(item) for item in items]
    except ValueError:
        raise ValueError(f"--{what} must be comma-separated {cast.__name__} values, got {text!r}.") from None


def output_folder(task: str, out: str | Path | None = None) -> Path:
    """Where a comparison writes its table and runs: `out`, by default outputs/compare/<task>."""
    return Path(out or Path("outputs") / "compare" / task)


def check_request(task: str, families: list[str], budget_minutes: float, clock: str) -> list[str]:
    """One error for anything that would fail later: an unknown task, a family without a recipe for the task, a
    budget that is not positive. Returns the experiment names, in the families' order."""
    from .tasks import get_task

    get_task(task)
    if (
        isinstance(budget_minutes, bool)
        or not isinstance(budget_minutes, (int, float))
        or not budget_minutes > 0
    ):
        raise ValueError(f"--budget-minutes must be a positive number of minutes, got {budget_minutes!r}.")
    if not math.isfinite(budget_minutes):
        raise ValueError(f"--budget-minutes must be finite, got {budget_minutes!r}.")
    if clock not in CLOCKS:
        raise ValueError(f"--clock must be one of {', '.join(CLOCKS)}, got {clock!r}.")
    if len(set(families)) != len(families):
        raise ValueError(f"--families names a family twice: {families}.")
    names = [f"{task}_{family}" for family in families]
    known = set(available_experiments())
    missing = [name for name in names if name not in known]
    if missing:
        have = sorted(name.removeprefix(f"{task}_") for name in known if name.startswith(f"{task}_"))
        raise ValueError(
            f"No experiment {', '.join(missing)}: the families with a recipe for {task} are "
            f"{', '.join(have) or 'none'}. Drop the others from --families, or add xlm_hf/experiments/<task>_<family>.yaml."
        )
    return names


def speed_prompts(split, limit: int) -> list[str]:
    """The prompts `generation_speed` times: a task's `prompt` column, or for a text corpus (no prompts) the first
    eight words of each held-out document, as the model card's examples are made."""
    if "prompt" in split.column_names:
        return list(split["prompt"][:limit])
    return [" ".join(text.split()[:8]) for text in split["text"][:limit]]


def count_new_tokens(output, input_ids: torch.Tensor | None, special_ids: torch.Tensor) -> int:
    """How many tokens `generate` wrote, special tokens (padding, `[EOS]`, layout) left out: what a generation
    speed counts, for every family."""
    from .modeling.generation_utils import new_token_mask

    sequences = output.sequences if hasattr(output, "sequences") else output
    return int((new_token_mask(output, input_ids) & ~torch.isin(sequences, special_ids)).sum())


def generation_speed(
    model_dir: str | Path, task: str, limit: int, batch_size: int, cache_dir: str | None = None
) -> float:
    """New (non-special) tokens per second of `generate` on the first test prompts, after one warm-up batch."""
    from .export import load_model_and_tokenizer
    from .tasks import load_task

    model, tokenizer, _, _ = load_model_and_tokenizer(model_dir)
    model.to("cpu").eval()
    prompts = speed_prompts(load_task(task, cache_dir)["test"], limit)
    tokenizer.padding_side = "left"
    special = torch.tensor(tokenizer.all_special_ids)
    batches = [prompts[start : start + batch_size] for start in range(0, len(prompts), batch_size)]
    # a text prompt may be long in tokens: keep its start, leaving room for what generate adds (layout + new tokens)
    room = model.config.max_position_embeddings - (model.generation_config.max_new_tokens or 0) - 2
    truncation = {"truncation": True, "max_length": room} if room > 0 else {}
    tokens, seconds = 0, 0.0
    torch.manual_seed(0)
    with torch.no_grad():
        for index, batch in enumerate([batches[0], *batches]):  # the first run warms up (not counted)
            encoded = tokenizer(
                batch, return_tensors="pt", padding=True, add_special_tokens=False, **truncation
            )
            start = time.perf_counter()
            output = model.generate(**encoded, return_dict_in_generate=True)
            elapsed = time.perf_counter() - start
            if index == 0:
                continue
            tokens += count_new_tokens(output, encoded["input_ids"], special)
            seconds += elapsed
    return tokens / seconds if seconds > 0 else 0.0


def compare(
    task: str,
    families: list[str],
    budget_minutes: float,
    seeds: list[int] = (42,),
    out: str | Path | None = None,
    clock: str = "cpu",
    overrides: list[str] | None = None,
    limit: int | None = None,
    speed_examples: int = 256,
    speed_batch_size: int = 64,
    parallel_jobs: int = 1,
    threads_per_job: int = 1,
) -> dict[str, Any]:
    """Trains, evaluates and times every family on `task` (see the module docstring); returns what results.json
    holds."""
    from . import jobs

    names = check_request(task, families, budget_minutes, clock)
    if isinstance(speed_examples, bool) or not isinstance(speed_examples, int) or speed_examples < 1:
        raise ValueError(f"--speed-examples must be a positive number of prompts, got {speed_examples!r}.")
    speed_batch_size = min(speed_batch_size, speed_examples)
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
        raise ValueError(f"--limit must be a positive number of test examples, got {limit!r}.")
    for option, value in (("--jobs", parallel_jobs), ("--threads-per-job", threads_per_job)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{option} must be a positive whole number, got {value!r}.")
    out = output_folder(task, out)
    overrides = list(overrides or [])

    def run_overrides(family: str, seed: int) -> list[str]:
        return [
            *overrides,
            f"training.seed={seed}",
            f"training.output_dir={out / 'runs' / f'{family}-seed{seed}'}",
            "training.eval_strategy=no",  # periodic evaluation would spend the budget
            "training.save_strategy=no",
        ]

    # every experiment is read and checked before anything trains
    experiments = {
        (family, seed): jobs.prepare_experiment(name, run_overrides(family, seed))
        for family, name in zip(families, names)
        for seed in seeds
    }
    report = {
        "task": task,
        "budget_minutes": budget_minutes,
        "clock": clock,
        "seeds": list(seeds),
        "overrides": overrides,
        # each run's torch threads: the parent's own when runs go one by one, --threads-per-job in parallel
        "torch_threads": torch.get_num_threads() if parallel_jobs == 1 else threads_per_job,
        "parallel_jobs": parallel_jobs,
        "out": str(out),
        "planned_runs": len(experiments),
        "rows": [],
    }
    out.mkdir(parents=True, exist_ok=True)
    runs = [
        {
            "task": task,
            "family": family,
            "seed": seed,
            "experiment": experiment,
            "budget_minutes": budget_minutes,
            "clock": clock,
            "limit": limit,
            "speed_examples": speed_examples,
            "speed_batch_size": speed_batch_size,
        }
        for (family, seed), experiment in experiments.items()
    ]
    finished: dict[int, dict[str, Any]] = {}

    def record(index: int, row: dict[str, Any]) -> None:
        # after every run, in the planned order, so that an interrupted or failed comparison keeps what it finished
        finished[index] = row
        report["rows"] = [finished[i] for i in sorted(finished)]
        atomic_write_text(out / RESULTS_JSON, json.dumps(report, indent=2) + "\n")
        atomic_write_text(out / RESULTS_MD, markdown_table(report))

    if parallel_jobs == 1:
        for index, run in enumerate(runs):
            record(index, run_one(**run))
    else:
        from .tasks import load_task

        # the task's data is made (or read) here once: parallel runs making it at the same time would contend
        for cache_dir in {experiment["data"].get("cache_dir") for experiment in experiments.values()}:
            load_task(task, cache_dir)
        run_in_parallel(runs, parallel_jobs, threads_per_job, out, record)
    return report


def run_one(
    task: str,
    family: str,
    seed: int,
    experiment: dict[str, Any],
    budget_minutes: float,
    clock: str,
    limit: int | None,
    speed_examples: int,
    speed_batch_size: int,
) -> dict[str, Any]:
    """One row of the table: trains `experiment` under the budget, evaluates it on the test split, times it."""
    from . import jobs

    budget = TimeBudget(budget_minutes * 60, clock)
    summary = jobs.train(experiment, callbacks=[budget])
    spent = budget.training_time
    output_dir = summary["output_dir"]
    results = jobs.evaluate(output_dir, split="test", limit=limit)
    metrics = results["metrics"]
    cache_dir = experiment["data"].get("cache_dir")
    speed = generation_speed(output_dir, task, speed_examples, speed_batch_size, cache_dir)
    schedule_steps = int(experiment["training"].get("max_steps", -1))
    if budget.stopped_by_budget and summary["global_step"] < SCHEDULE_WARNING_FRACTION * schedule_steps:
        logger.warning(
            f"{experiment['name']} (seed {seed}): the budget stopped training at step {summary['global_step']} "
            f"of the {schedule_steps} its learning-rate schedule was made for, so the rate never reached the "
            f"schedule's end. To end the schedule within the budget, add --set "
            f"training.max_steps={summary['global_step']} (and a warmup_steps below it)."
        )
    return asdict(
        CompareRow(
            family=family,
            experiment=experiment["name"],
            seed=seed,
            # the task's own full-answer match: sudoku scores whole grids (`sudoku_exact_match`)
            exact_match=metrics.get(
                "eval_prediction_exact_match", metrics.get("eval_prediction_sudoku_exact_match")
            ),
            token_accuracy=metrics.get("eval_prediction_token_accuracy"),
            train_steps=summary["global_step"],
            schedule_steps=schedule_steps,
            train_cpu_seconds=round(spent["cpu"], 2),
            train_wall_seconds=round(spent["wall"], 2),
            stopped_by_budget=budget.stopped_by_budget,
            generation_tokens_per_second=round(speed, 1),
            test_examples=results["num_examples"],
            output_dir=output_dir,
            metrics=metrics,
        )
    )


def run_logged(log_path: str, threads: int, run: dict[str, Any]) -> dict[str, Any]:
    """`run_one` in a worker process: `threads` torch threads, everything it prints (progress bars, warnings) into
    `log_path`. The worker leads its own session, so a Ctrl-C at the terminal reaches the parent only, which
    passes it on once (a second signal would stop a run at once, without its checkpoint)."""
    if os.getsid(0) != os.getpid():  # a worker that ran a run before (Python 3.10) already leads one
        os.setsid()
    torch.set_num_threads(threads)
    with open(log_path, "w") as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
    try:
        return run_one(**run)
    except BaseException:
        traceback.print_exc()  # the whole story in the log; the parent's error names the run and the log
        raise


def run_in_parallel(
    runs: list[dict[str, Any]],
    parallel_jobs: int,
    threads_per_job: int,
    out: Path,
    record: Callable[[int, dict], None],
) -> None:
    """`parallel_jobs` runs at a time, each in a fresh process; rows are recorded as runs finish. A failed run
    lets the running ones finish (their rows are kept), starts no new one, then raises its error. SIGINT or SIGTERM
    is passed on to the runs, which save a checkpoint and stop, as a single `xlm-hf train` does."""
    context = multiprocessing.get_context("spawn")  # a fork would copy the parent's torch threads and locks
    per_child = {"max_tasks_per_child": 1} if sys.version_info >= (3, 11) else {}
    stop_signal: list[int] = []
    errors: list[str] = []
    futures: dict = {}

    def pass_on(number: int, frame) -> None:
        for child in multiprocessing.active_children():
            os.kill(child.pid, number)
        if stop_signal:  # a second signal: the runs stop at once (their own rule), and so does this process
            signal.signal(
                number, previous[number] if previous[number] not in (signal.SIG_IGN, None) else signal.SIG_DFL
            )
            signal.raise_signal(number)
            return
        stop_signal.append(number)
        for pending in futures:
            pending.cancel()  # the runs not started yet never start

    previous = {number: signal.getsignal(number) for number in (signal.SIGINT, signal.SIGTERM)}
    in_main_thread = threading.current_thread() is threading.main_thread()
    with ProcessPoolExecutor(max_workers=parallel_jobs, mp_context=context, **per_child) as pool:
        if in_main_thread:  # only the main thread may set handlers
            for number in previous:
                signal.signal(number, pass_on)
        try:
            print(
                f"{len(runs)} runs, {parallel_jobs} at a time with {threads_per_job} torch thread(s) each; "
                f"their output goes to {out / 'runs'}/<family>-seed<S>.log",
                file=sys.stderr,
            )
            for index, run in enumerate(runs):
                if stop_signal:
                    break
                log_path = out / "runs" / f"{run['family']}-seed{run['seed']}.log"
                log_path.parent.mkdir(parents=True, exist_ok=True)
                futures[pool.submit(run_logged, str(log_path), threads_per_job, run)] = (index, run, log_path)
            for future in as_completed(futures):
                index, run, log_path = futures[future]
                name = f"{run['experiment']['name']} (seed {run['seed']})"
                try:
                    row = future.result()
                except CancelledError:
                    continue
                except Exception as error:  # noqa: BLE001 - reported below, once the running runs end
                    errors.append(
                        f"{name} failed ({type(error).__name__}: {error}); its output is in {log_path}"
                    )
                    for pending in futures:
                        pending.cancel()  # the ones not started yet
                    continue
                record(index, row)
                print(
                    f"finished {name}: exact match {_percent(row['exact_match'])} %; log {log_path}",
                    file=sys.stderr,
                )
        finally:
            if in_main_thread:
                for number, handler in previous.items():
                    signal.signal(number, handler if handler is not None else signal.SIG_DFL)
    if stop_signal:
        from .trainer import TrainingInterrupted

        # each run saved its own checkpoint in its folder
        raise TrainingInterrupted(stop_signal[0], f"{out / 'runs'}/<family>-seed<S>/checkpoint-<step>")
    if errors:
        raise RuntimeError("; ".join(errors))


def _percent(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.1f}"


def _steps(row: dict[str, Any]) -> str:
    # rows of results.json files written before `schedule_steps` existed have only the steps
    schedule_steps = row.get("schedule_steps", -1)
    if 0 < schedule_steps and row["train_steps"] < schedule_steps:
        return f"{row['train_steps']} of {schedule_steps}"
    return str(row["train_steps"])


def markdown_table(report: dict[str, Any]) -> str:
    """The rows of a results.json as a markdown table, with the budget it was measured under."""
    planned = report.get("planned_runs", len(report["rows"]))
    progress = f" {len(report['rows'])} of {planned} runs done." if len(report["rows"]) < planned else ""
    lines = [
        f"**{report['task']}**, budget {report['budget_minutes']} {report['clock'].upper()}-minutes per run "
        f"(training only; {report['torch_threads']} torch thread(s)); test split.{progress}",
        "",
        "| family | seed | exact match % | token accuracy % | steps | train CPU s | train wall s | stopped by budget "
        "| generation new tokens/s | test examples |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in report["rows"]:
        lines.append(
            f"| {row['family']} | {row['seed']} | {_percent(row['exact_match'])} | {_percent(row['token_accuracy'])} "
            f"| {_steps(row)} | {row['train_cpu_seconds']} | {row['train_wall_seconds']} "
            f"| {'yes' if row['stopped_by_budget'] else 'no'} | {row['generation_tokens_per_second']} "
            f"| {row['test_examples']} |"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "compare",
    "output_folder",
    "TimeBudget",
    "markdown_table",
    "check_request",
    "generation_speed",
    "CLOCKS",
]
