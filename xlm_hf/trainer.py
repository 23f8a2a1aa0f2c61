"""`XLMTrainer`: transformers' Trainer with XLM's named eval tasks.

An eval task is the HF form of an xlm-core dataset manager: a dataset, its own collator, a kind and metrics.
- kind `loss` (e.g. `lm`): the family's `compute_loss` over the dataset, logged as `eval_<task>_loss`;
- kind `generate` (e.g. `prediction`): the family's `predict_targets` generates from the prompts, the shipped
  `evaluate` metrics score the result (`eval_<task>_<metric>`), and every generation is written to
  `<output_dir>/predictions/<task>/step=<S>.jsonl` (prompt, generated text, target).

Under several processes (torchrun, accelerate launch), loss tasks are sharded by Trainer itself; generation tasks
deal whole batches out to the processes and gather the predictions back in dataset order, so metrics and the
predictions file are those of a one-process evaluation.

Family trainers subclass this and implement `compute_loss` (sum over the batch divided by
`num_items_in_batch`, see `normalize_loss`) and `predict_targets`.
"""

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from accelerate.utils import gather_object
from datasets import Dataset
from torch.utils.data import DataLoader
from tqdm.auto import tqdm
from transformers import Trainer

from .metrics import load_metric

EVAL_KINDS = ("loss", "generate")


@dataclass
class EvalTask:
    """One named evaluation: `dataset` batched by `collator`, scored by `kind` and `metrics`."""

    name: str
    dataset: Dataset
    collator: Callable
    kind: str = "loss"
    metrics: list[str] = field(default_factory=list)

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
        super().__init__(*args, **kwargs)

    # ----- helpers for family losses ---------------------------------------------------------------------------

    def normalize_loss(
        self,
        loss_sum: torch.Tensor,
        local_count: torch.Tensor | int,
        num_items_in_batch: torch.Tensor | int | None,
    ) -> torch.Tensor:
        """`loss_sum / num_items_in_batch` in training (exact under gradient accumulation and DDP), or the mean
        over this batch's `local_count` items when Trainer gives no count (evaluation)."""
        if num_items_in_batch is None:
            count = local_count if isinstance(local_count, torch.Tensor) else torch.tensor(local_count)
            return loss_sum / count.to(loss_sum.device).clamp(min=1)
        loss = loss_sum / num_items_in_batch
        if self.args.average_tokens_across_devices and self.args.world_size > 1:
            # num_items_in_batch counts every device's items and DDP averages gradients over devices.
            loss = loss * self.accelerator.num_processes
        return loss

    def predict_targets(self, model: torch.nn.Module, batch: dict[str, Any]) -> torch.Tensor:
        """Generates for a prediction batch; returns ids laid out like `batch["target_ids"]`."""
        raise NotImplementedError(f"{type(self).__name__} does not implement predict_targets.")

    # ----- evaluation ------------------------------------------------------------------------------------------

    def evaluate(
        self,
        eval_dataset: Dataset | dict[str, Dataset] | None = None,
        ignore_keys: list[str] | None = None,
        metric_key_prefix: str = "eval",
    ) -> dict[str, float]:
        if eval_dataset is not None or not self.eval_tasks:
            return super().evaluate(eval_dataset, ignore_keys, metric_key_prefix)
        metrics: dict[str, float] = {}
        for name, task in self.eval_tasks.items():
            prefix = f"{metric_key_prefix}_{name}"
            if task.kind == "loss":
                metrics.update(self._evaluate_loss(task, ignore_keys, prefix))
            else:
                metrics.update(self._evaluate_generation(task, prefix))
        self.last_evaluation = (self.state.global_step, metrics)
        return metrics

    def final_evaluation(self) -> dict[str, float]:
        """The eval-task metrics of the model as training left it.

        Trainer already evaluates at the last step (`eval_strategy` "steps" or "epoch"); evaluating again after
        `train()` would log a second, different result for the same step (the masked families' loss draws new
        noise) and, with TensorBoard, open a second event file. So this returns that evaluation's metrics, and
        evaluates only when training ran none at its last step.
        """
        if self.last_evaluation is not None and self.last_evaluation[0] == self.state.global_step:
            return dict(self.last_evaluation[1])
        return self.evaluate()

    def _evaluate_loss(self, task: EvalTask, ignore_keys: list[str] | None, prefix: str) -> dict[str, float]:
        training_collator = self.data_collator
        self.data_collator = task.collator
        try:
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
            result = load_metric(metric_name).compute(predictions=predictions, references=references, **kwargs)
            for key, value in result.items():
                metrics[f"{prefix}_{key}"] = float(value)
        metrics[f"{prefix}_runtime"] = round(runtime, 4)
        metrics[f"{prefix}_samples"] = len(predictions)

        if self.is_world_process_zero():
            out_dir = Path(self.args.output_dir) / "predictions" / task.name
            out_dir.mkdir(parents=True, exist_ok=True)
            with open(out_dir / f"step={self.state.global_step}.jsonl", "w") as handle:
                for _, prediction, reference, record in rows:
                    handle.write(json.dumps({**record, "exact_match": float(prediction == reference)}) + "\n")

        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


__all__ = ["EvalTask", "XLMTrainer", "EVAL_KINDS"]
