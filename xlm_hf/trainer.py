"""`XLMTrainer`: transformers' Trainer with XLM's named eval tasks.

An eval task is the HF form of an xlm-core dataset manager: a dataset, its own collator, a kind and metrics.
- kind `loss` (e.g. `lm`): the family's `compute_loss` over the dataset, logged as `eval_<task>_loss`;
- kind `generate` (e.g. `prediction`): the family's `predict_targets` generates from the prompts, the shipped
  `evaluate` metrics score the result (`eval_<task>_<metric>`), and every generation is written to
  `<output_dir>/predictions/<task>/step=<S>.jsonl` (prompt, generated text, target).

Under several processes (torchrun, accelerate launch), loss tasks are sharded by Trainer itself; generation tasks
deal whole batches out to the processes and gather the predictions back in dataset order, so metrics and the
predictions file are those of a one-process evaluation.

Family trainers subclass this and implement `compute_loss` and `predict_targets`. The loss is the family's
`<family>_loss` function on the Hub side (`modeling/modeling_<family>.py`), which returns a (sum, count) pair;
`compute_loss` gets it from the model's `forward` (labels and `num_items_in_batch` given), which divides the sum
by `num_items_in_batch` (or by the count), then `scale_loss_for_devices`. There is no second implementation.

Training can be stopped and resumed without changing its result:
- the collators' noise is a pure function of the batch's position in training (`xlm_hf.collator_utils`); each
  checkpoint records how many batches were trained (`collator_state.json`), so a resumed run draws exactly the
  noise an uninterrupted one would, and its final eval loss is the same;
- loss evaluations draw the same noise at every step (their collators start at batch 0 of the run's seed each
  time, and the training random state is left untouched), so eval losses of different steps and runs compare;
- `train(resume_from_checkpoint=...)` takes a checkpoint folder, absolute or relative to `output_dir`, or True
  for the latest one, and refuses anything else with one clear error (`find_checkpoint`);
- SIGINT (Ctrl-C) and SIGTERM end training at the end of the current step with a resumable checkpoint, then
  `train` raises `TrainingInterrupted`; a second signal stops the process at once;
- training always ends with a checkpoint of its last step, so the trained weights are on disk before anything
  else (evaluation, export) can fail.
"""

import json
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import Trainer, TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, TrainOutput, get_last_checkpoint
from transformers.utils import logging

from .atomic_io import atomic_open
from .collator_utils import set_batch_noise
from .ema import ema_weights, load_ema_state, save_ema_state
from .metrics import load_metric
from .metrics.text_eval import TEXT_EVAL_KINDS, run_text_eval

logger = logging.get_logger(__name__)

EVAL_KINDS = ("loss", "generate", *TEXT_EVAL_KINDS)  # text kinds: xlm_hf/metrics/text_eval.py
# Written into every checkpoint next to Trainer's own files: the number of batches each process has trained.
COLLATOR_STATE_FILE = "collator_state.json"
TRAINER_STATE_FILE = "trainer_state.json"  # Trainer writes it last: a checkpoint that has it is complete
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class TrainingInterrupted(Exception):
    """Training stopped on SIGINT or SIGTERM after saving a resumable checkpoint."""

    def __init__(self, signal_number: int, checkpoint: str):
        self.signal_number = signal_number
        self.checkpoint = checkpoint
        # the shell's convention for "ended by signal N": 130 for SIGINT, 143 for SIGTERM
        self.exit_code = 128 + signal_number
        super().__init__(
            f"{signal.Signals(signal_number).name}: saved a resumable checkpoint to {checkpoint}; resume with "
            "training.resume_from_checkpoint=true"
        )

    def __reduce__(self):
        # rebuilt from its own arguments, so that it crosses a process boundary (`xlm-hf compare --jobs`) intact
        return type(self), (self.signal_number, self.checkpoint)


def find_checkpoint(resume_from_checkpoint: str | bool, output_dir: str) -> str:
    """The checkpoint folder that `resume_from_checkpoint` names: True is the latest `checkpoint-N` in
    `output_dir`; a path is absolute, or relative to `output_dir` (then to the working directory). Anything
    that is not a complete Trainer checkpoint is one error saying what to do."""
    option = f"training.resume_from_checkpoint={resume_from_checkpoint}"
    if resume_from_checkpoint is True:
        latest = get_last_checkpoint(output_dir) if os.path.isdir(output_dir) else None
        if latest is None:
            raise ValueError(
                f"{option.lower()}: {output_dir} holds no {PREFIX_CHECKPOINT_DIR}-N folder to resume from; train "
                "without it, or name a checkpoint folder."
            )
        if not os.path.isfile(os.path.join(latest, TRAINER_STATE_FILE)):
            raise ValueError(
                f"{option.lower()}: the latest checkpoint {latest} is incomplete (no {TRAINER_STATE_FILE}: the run "
                "stopped while saving it); delete it to resume from the one before, or name a checkpoint folder."
            )
        return latest
    given = Path(resume_from_checkpoint).expanduser()
    candidates = [given] if given.is_absolute() else [Path(output_dir) / given, given]
    path = next((candidate for candidate in candidates if candidate.exists()), None)
    if path is None:
        raise ValueError(
            f"{option}: no such folder (looked for {' and '.join(map(str, candidates))}); name a "
            f"{PREFIX_CHECKPOINT_DIR}-N folder of the run, or use true for the latest one in {output_dir}."
        )
    if not (path / TRAINER_STATE_FILE).is_file():
        raise ValueError(
            f"{option}: {path} is not a complete Trainer checkpoint (it has no {TRAINER_STATE_FILE}); name a "
            f"{PREFIX_CHECKPOINT_DIR}-N folder of the run, or use true for the latest one in {output_dir}."
        )
    return str(path)


@dataclass
class EvalTask:
    """One named evaluation: `dataset` batched by `collator`, scored by `kind` and `metrics`."""

    name: str
    dataset: Dataset
    collator: Callable
    kind: str = "loss"
    metrics: list[str] = field(default_factory=list)
    options: dict[str, Any] = field(default_factory=dict)  # the text kinds' options (num_samples, judge, ...)

    def __post_init__(self):
        if self.kind not in EVAL_KINDS:
            raise ValueError(f"Eval task {self.name!r}: kind must be one of {EVAL_KINDS}, got {self.kind!r}.")
        if len(self.dataset) == 0:
            raise ValueError(f"Eval task {self.name!r} has an empty dataset.")
        if self.kind == "generate" and not self.metrics:
            raise ValueError(f"Eval task {self.name!r} generates but names no metrics.")
        for metric in self.metrics:
            load_metric(metric)  # fail now, not after training


class XLMTrainer(Trainer):
    """Trainer with named eval tasks; family subclasses provide the loss and the generation for scoring."""

    # Family losses are sums divided by `num_items_in_batch` (the whole accumulated batch), so Trainer must not
    # divide by the number of accumulation steps again.
    loss_is_scaled_for_ga = True

    def __init__(
        self,
        *args,
        eval_tasks: dict[str, EvalTask] | None = None,
        generation_kwargs: dict[str, Any] | None = None,
        **kwargs,
    ):
        self.eval_tasks = eval_tasks or {}
        self.generation_kwargs = dict(generation_kwargs or {})
        # (global step, metrics) of the latest evaluation; see `final_evaluation`
        self.last_evaluation: tuple[int, dict[str, float]] | None = None
        if kwargs.get("eval_dataset") is None and self.eval_tasks:
            # Trainer insists on an eval dataset when eval_strategy is set; ours come from the tasks.
            kwargs["eval_dataset"] = next(iter(self.eval_tasks.values())).dataset
        self.batches_trained = 0  # by this process, in this run (restored on resume): the collator's position
        self.stop_signal: int | None = None  # set by a SIGINT / SIGTERM during `train`
        super().__init__(*args, **kwargs)
        self.add_callback(_ResumableTraining(self))

    # ----- helpers for family losses ---------------------------------------------------------------------------

    def scale_loss_for_devices(
        self, loss: torch.Tensor, num_items_in_batch: torch.Tensor | int | None
    ) -> torch.Tensor:
        """The loss a family's `forward` returned (its loss sum divided by `num_items_in_batch`, which counts every
        device's items), multiplied by the number of processes because DDP averages gradients over them: the
        gradients of one big batch, as transformers' own `compute_loss` does. Unchanged without a count
        (evaluation: `forward` took this batch's mean)."""
        if (
            num_items_in_batch is None
            or not self.args.average_tokens_across_devices
            or self.args.world_size == 1
        ):
            return loss
        return loss * self.accelerator.num_processes

    def predict_targets(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Generates for a prediction batch; returns ids laid out like `batch["target_ids"]`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict_targets.")

    # ----- training: exact resume, signals, final checkpoint -----------------------------------------------------

    def train(
        self,
        resume_from_checkpoint: str | bool | None = None,
        trial=None,
        ignore_keys_for_eval=None,
        **kwargs,
    ):
        """Trainer's `train`, resumable exactly (see the module docstring). Raises `TrainingInterrupted` after
        saving a checkpoint when SIGINT or SIGTERM stopped it."""
        checkpoint = (
            find_checkpoint(resume_from_checkpoint, self.args.output_dir) if resume_from_checkpoint else None
        )
        if checkpoint:
            load_ema_state(self, checkpoint)
        if checkpoint and self._is_finished(checkpoint):
            # Trainer would train one step past the end (it runs at least one step of the resumed epoch)
            return self._load_finished_run(checkpoint)
        self.batches_trained = self._read_batches_trained(checkpoint) if checkpoint else 0
        self.stop_signal = None
        with self._stop_on_signals():
            output = super().train(
                resume_from_checkpoint=checkpoint,
                trial=trial,
                ignore_keys_for_eval=ignore_keys_for_eval,
                **kwargs,
            )
        if self.stop_signal is not None:
            saved = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
            if not (saved / TRAINER_STATE_FILE).is_file():  # the signal came after the last step's save
                self._save_checkpoint(self.model, trial)
            raise TrainingInterrupted(self.stop_signal, str(saved))
        return output

    def _is_finished(self, checkpoint: str) -> bool:
        """Whether `checkpoint` is the last step of the run these arguments describe."""
        state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_FILE))
        max_steps = self.args.max_steps if self.args.max_steps > 0 else state.max_steps
        return state.global_step >= max_steps

    def _load_finished_run(self, checkpoint: str) -> TrainOutput:
        """The model and state of a checkpoint at the run's last step (e.g. one whose export failed), without
        training; like Trainer's, the output's loss and runtime are those of this call (no step)."""
        self._load_from_checkpoint(checkpoint)
        self.state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_FILE))
        logger.info(f"{checkpoint} is the last step of the run: nothing left to train.")
        return TrainOutput(self.state.global_step, 0.0, {"train_runtime": 0.0})

    def training_step(self, model, inputs, num_items_in_batch=None):
        self.batches_trained += 1
        return super().training_step(model, inputs, num_items_in_batch)

    def _save_rng_state(self, output_dir: str) -> None:
        super()._save_rng_state(output_dir)
        if self.args.should_save:
            state = {"batches_trained": self.batches_trained}
            (Path(output_dir) / COLLATOR_STATE_FILE).write_text(json.dumps(state) + "\n")
        save_ema_state(self, output_dir)

    def _read_batches_trained(self, checkpoint: str) -> int:
        path = Path(checkpoint) / COLLATOR_STATE_FILE
        if not path.is_file():
            # a checkpoint of another trainer: Trainer's own count, which is exact unless an epoch ended in a
            # partial accumulation
            state = TrainerState.load_from_json(os.path.join(checkpoint, TRAINER_STATE_FILE))
            logger.warning(f"{checkpoint} has no {COLLATOR_STATE_FILE}: the noise after resuming may differ.")
            return state.global_step * self.args.gradient_accumulation_steps
        try:
            return int(json.loads(path.read_text())["batches_trained"])
        except (ValueError, KeyError, TypeError) as error:
            raise ValueError(
                f"{path} is damaged ({error!r}); resume from another checkpoint of the run."
            ) from error

    def _place_training_noise(self) -> None:
        """Numbers the training collator's next batch: this process's batches take every `world_size`-th place
        of the run, so the noise does not depend on how the batches are shared out among processes."""
        world_size, rank = self.args.world_size, self.args.process_index
        placed = set_batch_noise(
            self.data_collator,
            self.batches_trained * world_size + rank,
            seed=self.args.seed,
            stride=world_size,
        )
        if placed and self.args.dataloader_num_workers > 0 and self.args.dataloader_persistent_workers:
            logger.warning(
                "dataloader_persistent_workers keeps the collator copies of the first epoch: the noise of later "
                "epochs, and of a resumed run, is not the noise of an uninterrupted run."
            )

    @contextmanager
    def _stop_on_signals(self) -> Iterator[None]:
        """While training: SIGINT and SIGTERM ask for a stop at the end of the current step (`stop_signal`);
        a second signal gets the handler of before training (Python's default when it was ignored) at once."""
        if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
            yield
            return
        previous = {number: signal.getsignal(number) for number in STOP_SIGNALS}

        def request_stop(number: int, frame) -> None:
            if self.stop_signal is None:
                self.stop_signal = number
                return
            handler = previous[number]
            signal.signal(number, handler if handler not in (signal.SIG_IGN, None) else signal.SIG_DFL)
            signal.raise_signal(number)

        # set explicitly, so a process started with SIGINT ignored (in the background of a script) still stops
        for number in STOP_SIGNALS:
            signal.signal(number, request_stop)
        try:
            yield
        finally:
            for number, handler in previous.items():
                signal.signal(number, handler if handler is not None else signal.SIG_DFL)

    def _stop_requested(self) -> bool:
        """Whether a signal asked to stop, on any process: all must stop at the same step (they are synchronised
        by their collectives), so the processes agree at every step end."""
        if (
            self.args.world_size > 1
            and torch.distributed.is_available()
            and torch.distributed.is_initialized()
        ):
            flag = torch.tensor([self.stop_signal or 0], device=self.args.device)
            torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
            self.stop_signal = int(flag.item()) or None
        return self.stop_signal is not None

    # ----- evaluation ------------------------------------------------------------------------------------------

    def evaluate(
        self,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        with ema_weights(self):  # the moving average of the weights, when the experiment keeps one (ema.py)
            if eval_dataset is not None or not self.eval_tasks:
                return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
            metrics: dict[str, float] = {}
            for name, task in self.eval_tasks.items():
                prefix = f"{metric_key_prefix}_{name}"
                if task.kind == "loss":
                    metrics.update(self._evaluate_loss(task, ignore_keys, prefix))
                elif task.kind in TEXT_EVAL_KINDS:
                    metrics.update(run_text_eval(self, task, prefix))
                else:
                    metrics.update(self._evaluate_generation(task, prefix))
        self.last_evaluation = (self.state.global_step, metrics)
        return metrics

    def final_evaluation(self) -> dict[str, float]:
        """The eval-task metrics of the model as training left it.

        Trainer already evaluates at the last step (`eval_strategy` "steps" or "epoch"); evaluating again after
        `train()` would log a second result for the same step, spend the time of a second evaluation and, with
        TensorBoard, open a second event file. So this returns that evaluation's metrics, and evaluates only when
        training ran none at its last step.
        """
        if self.last_evaluation is not None and self.last_evaluation[0] == self.state.global_step:
            return dict(self.last_evaluation[1])
        return self.evaluate()

    def _evaluate_loss(self, task: EvalTask, ignore_keys: list[str] | None, prefix: str) -> dict[str, float]:
        # The same noise at every evaluation (batch i of the task always draws the noise of batch i of the run's
        # seed, whichever process evaluates it), and the training's random state untouched: eval losses of
        # different steps compare, and a resumed run reports those of an uninterrupted one.
        set_batch_noise(
            task.collator, self.args.process_index, seed=self.args.seed, stride=self.args.world_size
        )
        model = self.accelerator.unwrap_model(self.model)
        training_collator = self.data_collator
        self.data_collator = task.collator
        try:
            with torch.random.fork_rng(devices=[model.device] if model.device.type == "cuda" else []):
                torch.manual_seed(self.args.seed)  # for collators that draw from torch's global generator
                return super().evaluate(task.dataset, ignore_keys, prefix)
        finally:
            self.data_collator = training_collator

    @torch.no_grad()
    def _evaluate_generation(self, task: EvalTask, prefix: str) -> dict[str, float]:
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        tokenizer = self.processing_class
        # Whole batches are dealt out round robin, so each one is exactly the batch a single process would
        # generate (same rows, same padding): the gathered predictions do not depend on the number of processes.
        batch_size = self.args.per_device_eval_batch_size
        batches = [
            list(range(start, min(start + batch_size, len(task.dataset))))
            for start in range(0, len(task.dataset), batch_size)
        ]
        shard = list(range(len(batches)))[self.args.process_index :: self.args.world_size]
        loader = DataLoader(task.dataset, batch_sampler=[batches[i] for i in shard], collate_fn=task.collator)
        # Each batch draws from its own seeded generator state (sampled decoding gives the same text whichever
        # process generates it), and the training run's random state is left as it was.
        rng_devices = [model.device] if model.device.type == "cuda" else []
        start = time.perf_counter()
        rows = []  # (example index, prediction ids, reference ids, row of the predictions file)
        show_progress = self.is_local_process_zero() and not self.args.disable_tqdm
        progress = tqdm(loader, desc=f"Generating ({task.name})", leave=False, disable=not show_progress)
        for batch_index, batch in zip(shard, progress):
            batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            with torch.random.fork_rng(devices=rng_devices):
                torch.manual_seed(self.args.seed + batch_index)
                predicted = self.predict_targets(model, batch).cpu()
            targets = batch["target_ids"].cpu()
            for row, index in enumerate(batches[batch_index]):
                record = {
                    "prompt": tokenizer.decode(batch["input_ids"][row], skip_special_tokens=True),
                    "generated": tokenizer.decode(predicted[row], skip_special_tokens=True),
                    "target": tokenizer.decode(targets[row], skip_special_tokens=True),
                }
                rows.append((index, predicted[row].tolist(), targets[row].tolist(), record))
        if self.args.world_size > 1:
            rows = gather_object(rows)  # every process gets every row, so all compute the same metrics
        rows.sort(key=lambda item: item[0])
        predictions = [prediction for _, prediction, _, _ in rows]
        references = [reference for _, _, reference, _ in rows]
        runtime = time.perf_counter() - start
        if was_training:
            model.train()

        metrics = {}
        for metric_name in task.metrics:
            kwargs = {"ignore_index": tokenizer.pad_token_id} if metric_name == "token_accuracy" else {}
            metric = load_metric(metric_name)
            # text metrics (sudoku_*) score the decoded rows, with their prompts
            if getattr(metric.features["predictions"], "dtype", None) == "string":
                texts = [record for _, _, _, record in rows]
                result = metric.compute(
                    predictions=[text["generated"] for text in texts],
                    references=[text["target"] for text in texts],
                    prompts=[text["prompt"] for text in texts],
                )
            else:
                result = metric.compute(predictions=predictions, references=references, **kwargs)
            for key, value in result.items():
                metrics[f"{prefix}_{key}"] = float(value)
        metrics[f"{prefix}_runtime"] = round(runtime, 4)
        metrics[f"{prefix}_samples"] = len(predictions)

        if self.is_world_process_zero():
            out_dir = Path(self.args.output_dir) / "predictions" / task.name
            out_dir.mkdir(parents=True, exist_ok=True)
            # whole or absent: a full disk leaves no truncated file (and no temporary one)
            with atomic_open(out_dir / f"step={self.state.global_step}.jsonl") as handle:
                for _, prediction, reference, record in rows:
                    handle.write(json.dumps({**record, "exact_match": float(prediction == reference)}) + "\n")

        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


class _ResumableTraining(TrainerCallback):
    """Places the training collator's noise at each epoch's start, and saves a checkpoint at the last step and
    at the step a signal asked to stop at (see `XLMTrainer.train`)."""

    def __init__(self, trainer: XLMTrainer):
        self.trainer = trainer

    def on_epoch_begin(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        # before the epoch's DataLoader iterator (and its workers, which copy the collator) is created
        self.trainer._place_training_noise()

    def on_step_end(self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs):
        if self.trainer._stop_requested():
            control.should_evaluate = False  # stop within seconds: this step's evaluation is skipped
            control.should_save = True
            control.should_training_stop = True
        elif state.global_step >= state.max_steps:
            control.should_save = True  # the trained weights are on disk before evaluation and export


__all__ = [
    "EvalTask",
    "XLMTrainer",
    "EVAL_KINDS",
    "TrainingInterrupted",
    "find_checkpoint",
    "COLLATOR_STATE_FILE",
]
