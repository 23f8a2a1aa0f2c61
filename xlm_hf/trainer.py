"""`XLMTrainer`: transformers' Trainer with XLM's named eval tasks.

An eval task is the HF form of an xlm-core dataset manager: a dataset, its own collator, a kind and metrics.
- kind `loss` (e.g. `lm`): the family's `compute_loss` over the dataset, logged as `eval_<task>_loss`;
- kind `generate` (e.g. `prediction`): the family's `predict_targets` generates from the prompts, the shipped
  `evaluate` metrics score the result (`eval_<task>_<metric>`), and every generation is written to
  `<output_dir>/predictions/<task>/step=<S>.jsonl` (prompt, generated text, target).

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
        return metrics

    def _evaluate_loss(self, task: EvalTask, ignore_keys: list[str] | None, prefix: str) -> dict[str, float]:
        training_collator = self.data_collator
        self.data_collator = task.collator
        try:
            return super().evaluate(task.dataset, ignore_keys, prefix)
        finally:
            self.data_collator = training_collator

    @torch.no_grad()
    def _evaluate_generation(self, task: EvalTask, prefix: str) -> dict[str, float]:
        if not self.is_world_process_zero():
            return {}
        model = self.accelerator.unwrap_model(self.model)
        was_training = model.training
        model.eval()
        tokenizer = self.processing_class
        loader = DataLoader(
            task.dataset,
            batch_size=self.args.per_device_eval_batch_size,
            collate_fn=task.collator,
            shuffle=False,
        )
        start = time.perf_counter()
        predictions, references, rows = [], [], []
        for batch in tqdm(loader, desc=f"Generating ({task.name})", leave=False):
            batch = {k: v.to(model.device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
            predicted = self.predict_targets(model, batch).cpu()
            targets = batch["target_ids"].cpu()
            for row in range(len(predicted)):
                predictions.append(predicted[row].tolist())
                references.append(targets[row].tolist())
                rows.append(
                    {
                        "prompt": tokenizer.decode(batch["input_ids"][row], skip_special_tokens=True),
                        "generated": tokenizer.decode(predicted[row], skip_special_tokens=True),
                        "target": tokenizer.decode(targets[row], skip_special_tokens=True),
                    }
                )
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

        for row, prediction, reference in zip(rows, predictions, references):
            row["exact_match"] = float(prediction == reference)
        out_dir = Path(self.args.output_dir) / "predictions" / task.name
        out_dir.mkdir(parents=True, exist_ok=True)
        with open(out_dir / f"step={self.state.global_step}.jsonl", "w") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")

        self.log(metrics)
        self.control = self.callback_handler.on_evaluate(self.args, self.state, self.control, metrics)
        return metrics


__all__ = ["EvalTask", "XLMTrainer", "EVAL_KINDS"]
