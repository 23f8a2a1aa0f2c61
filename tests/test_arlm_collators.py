"""ARLM collator layouts against hand-written tensors (spec §1.1), with the star tokenizer's ids:
PAD 0, EOS 3, BOS 4; words a..e are ids 7..11."""

import torch
from collator_contract import CollatorContract

from xlm_hf.arlm import ARLMCollatorForLM, ARLMCollatorForSeq2Seq, ARLMCollatorForSeq2SeqPrediction

A, B, C, D, E = 7, 8, 9, 10, 11
PAD, EOS, BOS, X = 0, 3, 4, -100


def test_lm_collator_layout(star_tokenizer):
    batch = ARLMCollatorForLM(star_tokenizer, block_size=6)([{"input_ids": [A, B, C]}, {"input_ids": [D]}])
    assert batch["input_ids"].tolist() == [[BOS, A, B, C, EOS, PAD], [BOS, D, EOS, PAD, PAD, PAD]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1, 1, 0], [1, 1, 1, 0, 0, 0]]
    assert batch["labels"].tolist() == [[X, A, B, C, EOS, X], [X, D, EOS, X, X, X]]


def test_seq2seq_collator_layout_without_prompt_loss(star_tokenizer):
    collator = ARLMCollatorForSeq2Seq(star_tokenizer, input_block_size=4, block_size=3)
    batch = collator([{"prompt_ids": [A, B], "target_ids": [C, D]}, {"prompt_ids": [E], "target_ids": [A]}])
    assert batch["input_ids"].tolist() == [[PAD, A, B, BOS, C, D, EOS], [PAD, PAD, E, BOS, A, EOS, PAD]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1, 1, 1, 1], [0, 0, 1, 1, 1, 1, 0]]
    assert batch["labels"].tolist() == [[X, X, X, X, C, D, EOS], [X, X, X, X, A, EOS, X]]


def test_seq2seq_collator_original_prompt_loss(star_tokenizer):
    collator = ARLMCollatorForSeq2Seq(star_tokenizer, input_block_size=4, block_size=3, loss_on_prompt=True)
    batch = collator([{"prompt_ids": [A, B], "target_ids": [C, D]}])
    # the prompt's first token has no predecessor; padding gets no target (the original's quirk)
    assert batch["labels"].tolist() == [[X, X, B, BOS, C, D, EOS]]


def test_seq2seq_collator_truncates_prompt_on_the_left(star_tokenizer):
    collator = ARLMCollatorForSeq2Seq(star_tokenizer, input_block_size=3, block_size=2)
    batch = collator([{"prompt_ids": [A, B, C, D], "target_ids": [E]}])
    assert batch["input_ids"].tolist() == [[C, D, BOS, E, EOS]]


def test_prediction_collator_layout(star_tokenizer):
    collator = ARLMCollatorForSeq2SeqPrediction(star_tokenizer, input_block_size=4, block_size=4)
    batch = collator([{"prompt_ids": [A, B], "target_ids": [C, D]}, {"prompt_ids": [E], "target_ids": [A]}])
    assert batch["input_ids"].tolist() == [[PAD, A, B, BOS], [PAD, PAD, E, BOS]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1], [0, 0, 1, 1]]
    assert batch["target_ids"].tolist() == [[C, D, EOS, PAD], [A, EOS, PAD, PAD]]


def test_prediction_collator_rejects_prompts_that_do_not_fit(star_tokenizer):
    collator = ARLMCollatorForSeq2SeqPrediction(star_tokenizer, input_block_size=2, block_size=4)
    try:
        collator([{"prompt_ids": [A, B, C], "target_ids": [D]}])
    except ValueError as error:
        assert "input_block_size" in str(error)
    else:
        raise AssertionError("a prompt longer than input_block_size must be an error")


def test_labels_count_what_trainer_counts(star_tokenizer):
    """Trainer counts labels[..., 1:] != -100 for a ForCausalLM model: that must equal the predicted tokens."""
    collator = ARLMCollatorForSeq2Seq(star_tokenizer, input_block_size=4, block_size=3)
    batch = collator([{"prompt_ids": [A, B], "target_ids": [C, D]}, {"prompt_ids": [E], "target_ids": [A]}])
    assert int(batch["labels"][:, 1:].ne(-100).sum()) == 3 + 2  # C D EOS, A EOS
    assert torch.equal(batch["labels"][:, 0], torch.tensor([X, X]))


class TestARLMCollatorContract(CollatorContract):
    family = "arlm"
