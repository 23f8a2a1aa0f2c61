"""Loss normalisation under gradient accumulation: one batch of B and k accumulated batches of B/k give the same
gradients, because the loss is a sum divided by `num_items_in_batch` of the whole accumulated batch."""

import torch
from transformers import TrainerCallback, TrainingArguments

from xlm_hf.arlm import ARLMCollatorForSeq2Seq, ARLMConfig, ARLMForCausalLM, ARLMTrainer


def gradients_after_one_step(tmp_path, batch_size: int, accumulation: int, examples, tokenizer):
    torch.manual_seed(0)
    model = ARLMForCausalLM(
        ARLMConfig(vocab_size=27, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    )
    args = TrainingArguments(
        output_dir=str(tmp_path / f"b{batch_size}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.0,  # keep the weights: we read the accumulated gradients
        max_grad_norm=0.0,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_pin_memory=False,
        use_cpu=True,
    )
    from datasets import Dataset

    trainer = ARLMTrainer(
        model=model,
        args=args,
        train_dataset=Dataset.from_list(examples),
        data_collator=ARLMCollatorForSeq2Seq(tokenizer, input_block_size=6, block_size=6),
        processing_class=tokenizer,
    )
    trainer.get_train_dataloader = _unshuffled(trainer)  # same example order in both runs
    capture = CaptureGradients(model)
    trainer.add_callback(capture)
    trainer.train()
    return capture.grads


class CaptureGradients(TrainerCallback):
    """Copies the accumulated gradients just before the optimizer step."""

    def __init__(self, model):
        self.model = model
        self.grads = {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        for name, param in self.model.named_parameters():
            if param.grad is not None:
                self.grads[name] = param.grad.detach().clone()


def _unshuffled(trainer):
    from torch.utils.data import DataLoader

    def loader():
        return DataLoader(
            trainer.train_dataset,
            batch_size=trainer.args.per_device_train_batch_size,
            collate_fn=trainer.data_collator,
            shuffle=False,
        )

    return loader


def test_gradient_accumulation_matches_one_big_batch(tmp_path, star_tokenizer):
    # targets of different lengths, so a per-batch mean would weight tokens differently
    examples = [
        {"prompt_ids": [7 + i, 8 + i], "target_ids": list(range(9, 9 + 1 + (i % 4)))} for i in range(8)
    ]
    one_batch = gradients_after_one_step(tmp_path, 8, 1, examples, star_tokenizer)
    accumulated = gradients_after_one_step(tmp_path, 2, 4, examples, star_tokenizer)
    assert one_batch and one_batch.keys() == accumulated.keys()
    for name in one_batch:
        torch.testing.assert_close(one_batch[name], accumulated[name], rtol=1e-4, atol=1e-6, msg=name)
