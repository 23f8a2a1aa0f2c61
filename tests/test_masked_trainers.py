"""MLM and MDLM Trainers: the losses, their normalisation through num_items_in_batch (gradient accumulation gives
the gradients of one big batch), and predict_targets."""

import pytest
import torch
from datasets import Dataset
from torch.utils.data import DataLoader
from trainer_contract import TrainerContract
from transformers import TrainingArguments
from xlm_hf.modeling.noise_schedules import LogLinearNoiseSchedule

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
from xlm_hf.trainer import EvalTask

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


@pytest.mark.parametrize("cap", [1.0, 3.0])
def test_mdlm_loss_weight_cap_bounds_the_one_over_t_weights(tmp_path, star_tokenizer, cap):
    model, trainer = make_trainer(tmp_path, "mdlm")
    batch = MDLMCollatorForSeq2Seq(tokenizer=star_tokenizer, input_block_size=6, block_size=6, seed=0)(
        EXAMPLES
    )
    elbo = trainer.compute_loss(model, batch)
    model.config.loss_weight_cap = cap
    logits = model(
        input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], noise_level=batch["total_noise"]
    ).logits
    masked = batch["input_ids"].eq(MASK)
    ce = torch.nn.functional.cross_entropy(logits[masked], batch["labels"][masked], reduction="none")
    weights = (1 / batch["t"]).clamp(max=cap)[:, None].expand_as(masked)[masked]
    capped = trainer.compute_loss(model, batch)
    torch.testing.assert_close(capped, (ce * weights).sum() / (6 * len(EXAMPLES)), rtol=1e-5, atol=1e-6)
    # every t < 1 has a weight 1/t > 1, so a cap at or below the largest weight lowers the loss
    assert capped < elbo
    if cap == 1.0:  # equal weights: the masked tokens' summed cross-entropy over the slot positions
        torch.testing.assert_close(capped, ce.sum() / (6 * len(EXAMPLES)), rtol=1e-5, atol=1e-6)


def test_mdlm_with_cap_one_and_masked_mean_trains_as_the_mlm(tmp_path, star_tokenizer):
    # docs/benchmarks.md (sudoku): this MDLM and the MLM differ only in how they draw t, so one batch gives both
    # the same loss and the same gradients
    mlm, mlm_trainer = make_trainer(tmp_path, "mlm")
    _, mdlm_trainer = make_trainer(tmp_path, "mdlm")
    # as the recipes have it: without time conditioning the two models have the same weights
    mdlm = MDLMForMaskedDiffusionLM(MDLMConfig(**TINY, time_conditioning=False, loss_weight_cap=1.0))
    mdlm.load_state_dict(mlm.state_dict())
    batch = MDLMCollatorForSeq2Seq(
        tokenizer=star_tokenizer, input_block_size=6, block_size=6, seed=0, loss_normalization="masked_mean"
    )(EXAMPLES)
    assert batch["t"].lt(1).all() and batch["input_ids"].eq(MASK).any()  # every uncapped weight 1/t > 1
    mlm_loss = mlm_trainer.compute_loss(mlm, {k: batch[k] for k in ("input_ids", "attention_mask", "labels")})
    mdlm_loss = mdlm_trainer.compute_loss(mdlm, batch)
    torch.testing.assert_close(mdlm_loss, mlm_loss, rtol=1e-5, atol=1e-6)
    mlm_loss.backward()
    mdlm_loss.backward()
    for name, parameter in mlm.named_parameters():
        torch.testing.assert_close(mdlm.get_parameter(name).grad, parameter.grad, rtol=1e-4, atol=1e-6)


def test_mdlm_loss_weight_cap_must_be_positive():
    assert MDLMConfig().loss_weight_cap is None  # the NELBO's weights, as xlm-core
    for bad in (0.0, -1.0, "1", True):
        with pytest.raises(ValueError, match="loss_weight_cap"):
            MDLMConfig(loss_weight_cap=bad)


def test_mdlm_trainer_gives_its_collators_the_models_noise_schedule(tmp_path, star_tokenizer):
    torch.manual_seed(0)
    model = MDLMForMaskedDiffusionLM(MDLMConfig(**TINY, time_embedding_dim=16, sigma_max=5.0))

    def collator():
        return MDLMCollatorForSeq2Seq(tokenizer=star_tokenizer, input_block_size=6, block_size=6, seed=0)

    train, evaluation = collator(), collator()
    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", remove_unused_columns=False, use_cpu=True
    )
    MDLMTrainer(
        model=model,
        args=args,
        data_collator=train,
        eval_tasks={"lm": EvalTask("lm", Dataset.from_list(EXAMPLES), evaluation)},
    )
    schedule = model.config.get_noise_schedule()
    for batch in (train(EXAMPLES), evaluation(EXAMPLES)):
        torch.testing.assert_close(batch["total_noise"], schedule.sigma(batch["t"]))
        torch.testing.assert_close(batch["noise_rate"], schedule.rate(batch["t"]))
        # and not the schedule of a default configuration (sigma_max = 10)
        assert not torch.allclose(batch["total_noise"], LogLinearNoiseSchedule(10.0).sigma(batch["t"]))


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


class TestMLMTrainerContract(TrainerContract):
    family = "mlm"


class TestMDLMTrainerContract(TrainerContract):
    family = "mdlm"
    config_overrides = {"zero_init_output": False, "time_embedding_dim": 16}
    accumulation_collator_options = [{}, {"loss_normalization": "masked_mean"}]
