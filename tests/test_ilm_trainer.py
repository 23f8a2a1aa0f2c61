"""ILMTrainer: the loss normalisation (exact under gradient accumulation), prediction layout, a short training."""

import pytest
import torch
from datasets import Dataset
from trainer_contract import TrainerContract
from transformers import TrainingArguments

from xlm_hf.ilm import (
    ILMCollatorForSeq2Seq,
    ILMCollatorForSeq2SeqPrediction,
    ILMConfig,
    ILMModelForInsertionLM,
    ILMTrainer,
    ilm_loss,
)
from xlm_hf.ilm.trainer_ilm import generated_part
from xlm_hf.tokenization import build_number_tokenizer

PAD = 0


@pytest.fixture(scope="module")
def tokenizer():
    return build_number_tokenizer(20)


def make_trainer(tmp_path, **model_overrides) -> ILMTrainer:
    torch.manual_seed(0)
    options = dict(
        vocab_size=27, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=32
    )
    options.update(model_overrides)
    model = ILMModelForInsertionLM(ILMConfig(**options))
    args = TrainingArguments(
        output_dir=str(tmp_path), report_to="none", remove_unused_columns=False, use_cpu=True
    )
    return ILMTrainer(model=model, args=args)


def examples(count: int) -> list[dict]:
    generator = torch.Generator().manual_seed(count)
    rows = []
    for _ in range(count):
        prompt = torch.randint(
            7, 27, (int(torch.randint(2, 6, (1,), generator=generator)),), generator=generator
        )
        target = torch.randint(
            7, 27, (int(torch.randint(1, 6, (1,), generator=generator)),), generator=generator
        )
        rows.append({"prompt_ids": prompt.tolist(), "target_ids": target.tolist()})
    return rows


def test_compute_loss_is_the_row_mean_of_ilm_loss(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path, stopping_loss_weight=0.5, stopping_class_weight=0.8)
    model = trainer.model.eval()
    batch = ILMCollatorForSeq2Seq(tokenizer=tokenizer, input_block_size=8, block_size=6, seed=0)(examples(6))
    loss, outputs = trainer.compute_loss(model, batch, return_outputs=True)
    loss_sum, count, insertion, stopping = ilm_loss(
        outputs.logits,
        outputs.stopping_logits,
        batch["attention_mask"],
        batch["cls_position"],
        batch["target_positions"],
        batch["target_tokens"],
        stopping_loss_weight=0.5,
        stopping_class_weight=0.8,
        return_row_losses=True,
    )
    assert int(count) == 6
    expected = loss_sum / count
    torch.testing.assert_close(loss, expected)
    torch.testing.assert_close(outputs.insertion_loss, insertion)
    torch.testing.assert_close(loss, (insertion + 0.5 * stopping).mean())
    # the model's own forward with targets agrees
    torch.testing.assert_close(model(**{k: v for k, v in batch.items() if k != "labels"}).loss, expected)


def test_generated_part_lays_out_like_the_targets():
    # prompts of 3 and 2 real tokens ([CLS] p [BOS]), left-padded sequences after generation
    target_start = torch.tensor([3, 2])
    sequences = torch.tensor([[1, 9, 4, 20, 21], [PAD, PAD, 1, 4, 22]])
    out = generated_part(sequences, target_start, PAD, block_size=4)
    assert out.tolist() == [[20, 21, PAD, PAD], [22, PAD, PAD, PAD]]
    assert generated_part(sequences, target_start, PAD, block_size=1).tolist() == [[20], [22]]


def test_predict_targets_returns_the_generated_tokens(tmp_path, tokenizer):
    trainer = make_trainer(tmp_path)
    trainer.generation_kwargs = {"stopping_threshold": 1.0}
    model = trainer.model.eval()
    rows = examples(4)
    batch = ILMCollatorForSeq2SeqPrediction(tokenizer=tokenizer, input_block_size=8, block_size=5)(rows)
    predicted = trainer.predict_targets(model, batch)
    assert predicted.shape == batch["target_ids"].shape == (4, 5)
    direct = model.generate(
        input_ids=batch["input_ids"],
        attention_mask=batch["attention_mask"],
        max_new_tokens=5,
        stopping_threshold=1.0,
    )
    for row, example in enumerate(rows):
        tokens = [t for t in direct.sequences[row].tolist() if t != PAD]
        assert tokens[: len(example["prompt_ids"]) + 2] == [1, *example["prompt_ids"], 4]
        assert predicted[row].tolist() == tokens[len(example["prompt_ids"]) + 2 :]


def test_a_short_training_run_lowers_the_loss(tmp_path, tokenizer):
    torch.manual_seed(0)
    model = ILMModelForInsertionLM(
        ILMConfig(
            vocab_size=27,
            hidden_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            max_position_embeddings=32,
        )
    )
    data = Dataset.from_list([{"prompt_ids": [10, 11], "target_ids": [12, 13, 14]}] * 64)
    args = TrainingArguments(
        output_dir=str(tmp_path),
        report_to="none",
        remove_unused_columns=False,
        label_names=["labels"],
        per_device_train_batch_size=16,
        gradient_accumulation_steps=2,
        # 120 steps left the greedy output one token short of the target on one machine's float arithmetic
        # (2026-11-30); 200 give it on every seed tried (0, 1, 2)
        max_steps=200,
        learning_rate=4e-3,
        lr_scheduler_type="constant",
        logging_steps=10,
        save_strategy="no",
        use_cpu=True,
        disable_tqdm=True,
    )
    collator = ILMCollatorForSeq2Seq(tokenizer=tokenizer, input_block_size=8, block_size=6)
    trainer = ILMTrainer(model=model, args=args, train_dataset=data, data_collator=collator)
    trainer.train()
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert losses[-1] < 0.3 * losses[0]
    out = model.eval().generate(input_ids=torch.tensor([[10, 11]]), max_new_tokens=5)
    assert [t for t in out.sequences[0].tolist() if t != PAD] == [1, 10, 11, 4, 12, 13, 14]


def test_predict_targets_for_infilling_keeps_the_given_target_tokens(tmp_path, tokenizer):
    from xlm_hf.ilm import ILMCollatorForInfillPrediction

    trainer = make_trainer(tmp_path)
    trainer.generation_kwargs = {"max_new_tokens": 2, "stopping_threshold": 1.0}
    model = trainer.model.eval()
    rows = [{"prompt_ids": [10, 11], "target_ids": [20, 21, 22, 23]}]
    batch = ILMCollatorForInfillPrediction(tokenizer=tokenizer, input_block_size=8, block_size=6, seed=0)(
        rows
    )
    gapped = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()[4:]
    predicted = trainer.predict_targets(model, batch)[0].tolist()
    given = [t for t in gapped if t != tokenizer.mask_token_id]
    assert len([t for t in predicted if t != PAD]) == len(given) + 2  # two insertions, all inside the target
    it = iter(predicted)
    assert all(any(t == u for u in it) for t in given)


class TestILMTrainerContract(TrainerContract):
    family = "ilm"
