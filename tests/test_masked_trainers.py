"""MLM and MDLM Trainers: the losses, their normalisation through num_items_in_batch (gradient accumulation gives
the gradients of one big batch), and predict_targets."""

import pytest
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from transformers import TrainerCallback, TrainingArguments

from xlm_hf.mdlm import MDLMCollatorForSeq2Seq, MDLMConfig, MDLMForMaskedDiffusionLM, MDLMTrainer
from xlm_hf.mlm import (
    MLMCollatorForInfillPrediction,
    MLMCollatorForSeq2Seq,
    MLMCollatorForSeq2SeqPrediction,
    MLMCollatorForUnconditionalPrediction,
    MLMConfig,
    MLMForMaskedLM,
    MLMTrainer,
)

MASK = 2
TINY = dict(
    vocab_size=27,
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=32,
)
EXAMPLES = [{"prompt_ids": [7 + i, 8 + i], "target_ids": list(range(9, 9 + 1 + (i % 4)))} for i in range(8)]


def make(family):
    torch.manual_seed(0)
    if family == "mlm":
        return MLMForMaskedLM(MLMConfig(**TINY)), MLMTrainer, MLMCollatorForSeq2Seq
    model = MDLMForMaskedDiffusionLM(MDLMConfig(**TINY, time_embedding_dim=16, zero_init_output=False))
    return model, MDLMTrainer, MDLMCollatorForSeq2Seq


class PerExampleNoise:
    """The family collator applied to each example with its own seed, so that the noise of an example does not
    depend on how examples are grouped into batches."""

    def __init__(self, collator_class, tokenizer, **options):
        self.make = lambda seed: collator_class(
            tokenizer=tokenizer, input_block_size=6, block_size=6, seed=seed, **options
        )

    def __call__(self, examples):
        parts = [self.make(1000 + ex["prompt_ids"][0])([ex]) for ex in examples]
        return {key: torch.cat([p[key] for p in parts]) for key in parts[0]}


class CaptureGradients(TrainerCallback):
    def __init__(self, model):
        self.model, self.grads = model, {}

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        self.grads = {
            n: p.grad.detach().clone() for n, p in self.model.named_parameters() if p.grad is not None
        }


def make_trainer(tmp_path, family, batch_size=8, accumulation=1, collator=None, **options):
    model, trainer_class, collator_class = make(family)
    args = TrainingArguments(
        output_dir=str(tmp_path / f"{family}-{batch_size}-{accumulation}"),
        per_device_train_batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        max_steps=1,
        learning_rate=0.0,
        max_grad_norm=0.0,
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        dataloader_pin_memory=False,
        use_cpu=True,
    )
    trainer = trainer_class(
        model=model, args=args, train_dataset=Dataset.from_list(EXAMPLES), data_collator=collator, **options
    )
    trainer.get_train_dataloader = lambda: DataLoader(
        trainer.train_dataset, batch_size=batch_size, collate_fn=trainer.data_collator, shuffle=False
    )
    return model, trainer


@pytest.mark.parametrize(
    "family, options", [("mlm", {}), ("mdlm", {}), ("mdlm", {"loss_normalization": "masked_mean"})]
)
def test_gradient_accumulation_matches_one_big_batch(tmp_path, star_tokenizer, family, options):
    collator_class = make(family)[2]
    grads = []
    for batch_size, accumulation in ((8, 1), (2, 4)):
        collator = PerExampleNoise(collator_class, star_tokenizer, **options)
        model, trainer = make_trainer(tmp_path, family, batch_size, accumulation, collator=collator)
        capture = CaptureGradients(model)
        trainer.add_callback(capture)
        trainer.train()
        grads.append(capture.grads)
    assert grads[0] and grads[0].keys() == grads[1].keys()
    for name in grads[0]:
        torch.testing.assert_close(grads[0][name], grads[1][name], rtol=1e-4, atol=1e-6, msg=name)


def test_mlm_loss_is_the_cross_entropy_at_masked_positions(tmp_path, star_tokenizer):
    model, trainer = make_trainer(tmp_path, "mlm")
    batch = MLMCollatorForSeq2Seq(tokenizer=star_tokenizer, input_block_size=6, block_size=6, seed=0)(
        EXAMPLES
    )
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    masked = batch["input_ids"].eq(MASK)
    manual = torch.nn.functional.cross_entropy(logits[masked], batch["labels"][masked], reduction="sum")
    torch.testing.assert_close(trainer.compute_loss(model, batch), manual / masked.sum())
    torch.testing.assert_close(
        trainer.compute_loss(model, batch, num_items_in_batch=torch.tensor(100)), manual / 100
    )


@pytest.mark.parametrize("normalization", ["elbo", "masked_mean"])
def test_mdlm_loss_weights_masked_tokens_by_one_over_t(tmp_path, star_tokenizer, normalization):
    model, trainer = make_trainer(tmp_path, "mdlm")
    batch = MDLMCollatorForSeq2Seq(
        tokenizer=star_tokenizer, input_block_size=6, block_size=6, seed=0, loss_normalization=normalization
    )(EXAMPLES)
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], noise_level=batch["total_noise"]
    ).logits
    masked = batch["input_ids"].eq(MASK)
    ce = torch.nn.functional.cross_entropy(logits[masked], batch["labels"][masked], reduction="none")
    weights = (1 / batch["t"])[:, None].expand_as(masked)[masked]
    denominator = masked.sum() if normalization == "masked_mean" else 6 * len(EXAMPLES)  # slot positions
    torch.testing.assert_close(
        trainer.compute_loss(model, batch), (ce * weights).sum() / denominator, rtol=1e-5, atol=1e-6
    )


def test_mdlm_trainer_rejects_a_collator_with_another_schedule(tmp_path, star_tokenizer):
    model, trainer = make_trainer(tmp_path, "mdlm")
    batch = MDLMCollatorForSeq2Seq(
        tokenizer=star_tokenizer, input_block_size=6, block_size=6, seed=0, sigma_max=5.0
    )(EXAMPLES)
    with pytest.raises(ValueError, match="different noise schedules"):
        trainer.compute_loss(model, batch)


@pytest.mark.parametrize("family", ["mlm", "mdlm"])
def test_predict_targets_lays_out_predictions_like_the_targets(tmp_path, star_tokenizer, family):
    model, trainer = make(family)[:2]
    model.eval()
    args = TrainingArguments(output_dir=str(tmp_path / "p"), report_to="none", use_cpu=True)
    trainer = trainer(
        model=model,
        args=args,
        generation_kwargs={
            "num_steps": 3,
            "temperature": 0.0,
            "seed": 0,
            "max_new_tokens": 99,
            "do_sample": False,
        },
    )
    batch = MLMCollatorForSeq2SeqPrediction(tokenizer=star_tokenizer, input_block_size=6, block_size=6)(
        EXAMPLES[:3]
    )
    predicted = trainer.predict_targets(model, batch)
    assert predicted.shape == batch["target_ids"].shape
    expected = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=6,
        num_steps=3,
        temperature=0.0,
        seed=0,
    ).sequences[:, -6:]
    assert torch.equal(predicted, expected)
    assert trainer.last_model_calls > 0

    infill = MLMCollatorForInfillPrediction(tokenizer=star_tokenizer, block_size=5)(
        [{"prompt_ids": [7, MASK, 9], "target_ids": [7, 8, 9]}]
    )
    filled = trainer.predict_targets(model, infill)
    assert (
        filled.shape == (1, 5) and filled[0, [0, 1, 2, 4]].tolist() == [0, 0, 7, 9] and filled[0, 3] != MASK
    )

    unconditional = MLMCollatorForUnconditionalPrediction(tokenizer=star_tokenizer, block_size=4)([{}] * 2)
    samples = trainer.predict_targets(model, unconditional)
    assert samples.shape == (2, 4) and not bool(samples.eq(MASK).any())
