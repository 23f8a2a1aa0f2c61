"""The Trainer contract every family passes: its loss is a sum divided by `num_items_in_batch`, so gradient
accumulation gives exactly the gradients of one big batch.

A family's Trainer test module subclasses `TrainerContract` and sets `family` (and `config_overrides` where the
default tiny model would be degenerate, e.g. a zero-initialised output layer):

    class TestARLMTrainerContract(TrainerContract):
        family = "arlm"

The batches come from the family's `seq2seq` collator, collated once for all 8 examples: both runs then see the
same noise (masks, times, deletions) and differ only in how Trainer groups the rows, which is what is tested.
"""

import torch
from collator_contract import FamilyBatches
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import TrainerCallback, TrainingArguments

from xlm_hf.families import get_family


class CaptureGradients(TrainerCallback):
    """Copies the accumulated gradients just before the optimizer step."""

    def __init__(self, model):
        self.model, self.grads = model, {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.grads = {
            name: param.grad.detach().clone()
            for name, param in self.model.named_parameters()
            if param.grad is not None
        }


class RowsOf:
    """A collator that hands out rows of one batch collated beforehand (examples are `{"row": i}`)."""

    def __init__(self, batch: dict[str, torch.Tensor]):
        self.batch = batch

    def __call__(self, examples: list[dict]) -> dict[str, torch.Tensor]:
        rows = torch.tensor([example["row"] for example in examples])
        return {key: value[rows] for key, value in self.batch.items()}


class TrainerContract(FamilyBatches):
    total_batch_size = 8
    # Each entry: seq2seq collator options to run the accumulation check with (e.g. another loss normalisation).
    accumulation_collator_options: list[dict] = [{}]

    def make_trainer(self, tmp_path, model, batch_size: int = 8, accumulation: int = 1, collator=None):
        args = TrainingArguments(
            output_dir=str(tmp_path / f"b{batch_size}x{accumulation}"),
            per_device_train_batch_size=batch_size,
            gradient_accumulation_steps=accumulation,
            max_steps=1,
            learning_rate=0.0,  # keep the weights: the accumulated gradients are read
            max_grad_norm=0.0,
            report_to="none",
            remove_unused_columns=False,
            label_names=["labels"],
            dataloader_pin_memory=False,
            save_strategy="no",
            disable_tqdm=True,
            use_cpu=True,
        )
        dataset = Dataset.from_list([{"row": i} for i in range(self.total_batch_size)])
        trainer = get_family(self.family).trainer_class(
            model=model, args=args, train_dataset=dataset, data_collator=collator
        )
        # the same rows in the same order in both runs
        trainer.get_train_dataloader = lambda: DataLoader(
            dataset, batch_size=batch_size, collate_fn=trainer.data_collator, shuffle=False
        )
        return trainer

    def trainer_with_one_batch(self, tmp_path, model, batch_size: int = 8, accumulation: int = 1, **options):
        """The family's Trainer, whose `seq2seq` collator (set up by the Trainer as in a run, e.g. given the
        model's noise schedule) collates all examples once; the Trainer then gets rows of that one batch."""
        collator = self.make_collator("seq2seq", seed=0, **options)
        trainer = self.make_trainer(tmp_path, model, batch_size, accumulation, collator)
        batch = collator(self.make_examples("seq2seq", count=self.total_batch_size))
        trainer.data_collator = RowsOf(batch)
        return trainer, batch

    def accumulated_gradients(self, tmp_path, batch_size: int, accumulation: int, **options) -> dict:
        model = self.make_model().train()
        trainer, _ = self.trainer_with_one_batch(tmp_path, model, batch_size, accumulation, **options)
        capture = CaptureGradients(model)
        trainer.add_callback(capture)
        trainer.train()
        return capture.grads

    # ----- the contract -------------------------------------------------------------------------------------

    def test_gradient_accumulation_gives_the_gradients_of_one_big_batch(self, tmp_path):
        for options in self.accumulation_collator_options:
            one_batch = self.accumulated_gradients(tmp_path, 8, 1, **options)
            accumulated = self.accumulated_gradients(tmp_path, 4, 2, **options)
            assert one_batch and one_batch.keys() == accumulated.keys()
            assert any(bool(grad.abs().gt(0).any()) for grad in one_batch.values()), "no gradient at all"
            for name in one_batch:
                torch.testing.assert_close(
                    accumulated[name], one_batch[name], rtol=1e-4, atol=1e-6, msg=f"{options} {name}"
                )

    def test_loss_is_a_sum_divided_by_num_items_in_batch(self, tmp_path):
        model = self.make_model()
        trainer, batch = self.trainer_with_one_batch(tmp_path, model)
        with torch.no_grad():
            over_10 = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(10))
            over_40 = trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(40))
            torch.testing.assert_close(over_10, 4 * over_40)
            # without a count (evaluation) the loss is the mean over the items Trainer would count
            count = trainer._get_num_items_in_batch([batch], torch.device("cpu"))
            assert int(count) > 0
            torch.testing.assert_close(
                trainer.compute_loss(model, batch),
                trainer.compute_loss(model, batch, num_items_in_batch=count),
            )
        assert trainer.loss_is_scaled_for_ga, (
            "Trainer must not divide the loss by the accumulation steps again"
        )
