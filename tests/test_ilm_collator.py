"""ILM drop process and collators."""

from collections import Counter

import pytest
import torch
from collator_contract import CollatorContract

from xlm_hf.ilm import (
    ILMCollatorForLM,
    ILMCollatorForSeq2Seq,
    ILMCollatorForSeq2SeqPrediction,
    attribute_deletions,
    ilm_drop,
)
from xlm_hf.tokenization import build_number_tokenizer

CLS, BOS, PAD = 1, 4, 0


@pytest.fixture(scope="module")
def tokenizer():
    return build_number_tokenizer(20)


def reinsert(kept: list[int], gaps: list[int], deleted: list[int]) -> list[int]:
    """Puts every deleted token back into its gap (gap g = after the g-th kept token), in order."""
    by_gap = {}
    for gap, token in zip(gaps, deleted):
        by_gap.setdefault(gap, []).append(token)
    out = list(by_gap.get(0, []))
    for k, token in enumerate(kept, start=1):
        out += [token, *by_gap.get(k, [])]
    return out


def test_gap_attribution_on_hand_made_sequences():
    a, b, c, d, e = 10, 11, 12, 13, 14
    assert attribute_deletions([a, b, c, d, e], [1, 4]) == ([a, c, d], [1, 3], [b, e])
    # deletions at the start belong to the gap anchored by [BOS] (gap 0); a run shares one gap
    assert attribute_deletions([a, b, c, d, e], [0, 1, 3]) == ([c, e], [0, 0, 1], [a, b, d])
    assert attribute_deletions([a, b], []) == ([a, b], [], [])
    assert attribute_deletions([a, b], [0, 1]) == ([], [0, 0], [a, b])
    # repeated tokens in one gap are counted once each
    assert attribute_deletions([a, a, a, b], [1, 2]) == ([a, b], [1, 1], [a, a])


def test_drop_process_statistics():
    generator = torch.Generator().manual_seed(0)
    tokens = [10, 11, 12, 13]
    trials = 4000
    num_deleted, deleted_at = Counter(), Counter()
    for _ in range(trials):
        kept, gaps, deleted = ilm_drop(tokens, generator)
        assert reinsert(kept, gaps, deleted) == tokens  # the targets always rebuild the sequence
        num_deleted[len(deleted)] += 1
        deleted_at.update(deleted)
    # n ~ Uniform{0..4}: each count near trials / 5 (sd ~ 25)
    assert set(num_deleted) == {0, 1, 2, 3, 4}
    for n in range(5):
        assert abs(num_deleted[n] - trials / 5) < 120, num_deleted
    # positions uniform given n: every token deleted with probability E[n] / L = 1/2
    for token in tokens:
        assert abs(deleted_at[token] - trials / 2) < 150, deleted_at


def test_lm_collator_layout_and_targets(tokenizer):
    collator = ILMCollatorForLM(tokenizer=tokenizer, block_size=8, seed=0)
    examples = [{"input_ids": [10, 11, 12, 13, 14, 15, 16, 17, 18]}, {"input_ids": [19, 20]}]
    for _ in range(20):
        batch = collator(examples)
        assert batch["input_ids"].shape[1] <= 8
        assert batch["cls_position"].tolist() == [0, 0]
        for row, example in enumerate(examples):
            ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
            assert ids[:2] == [CLS, BOS]
            kept = ids[2:]
            valid = batch["target_tokens"][row].ne(-100)
            positions = batch["target_positions"][row][valid].tolist()
            tokens = batch["target_tokens"][row][valid].tolist()
            assert batch["labels"][row].item() == len(tokens)
            assert all(1 <= p < len(ids) for p in positions)  # [BOS] (column 1) or a kept token; never [CLS]
            # pre-truncation to block_size - 2: the first 6 tokens, rebuilt exactly from the targets
            assert reinsert(kept, [p - 1 for p in positions], tokens) == example["input_ids"][:6]


def test_lm_collator_hand_example_columns(tokenizer, monkeypatch):
    import xlm_hf.ilm.collator_ilm as module

    monkeypatch.setattr(
        module, "ilm_drop", lambda tokens, generator=None: attribute_deletions(tokens, [1, 4])
    )
    batch = ILMCollatorForLM(tokenizer=tokenizer, block_size=10)([{"input_ids": [10, 11, 12, 13, 14]}])
    assert batch["input_ids"].tolist() == [[CLS, BOS, 10, 12, 13]]
    # b (11) belongs after a (column 2), e (14) after d (column 4)
    assert batch["target_positions"].tolist() == [[2, 4]]
    assert batch["target_tokens"].tolist() == [[11, 14]]
    assert batch["labels"].tolist() == [2]


def test_seq2seq_collator_drops_only_in_the_target(tokenizer, monkeypatch):
    import xlm_hf.ilm.collator_ilm as module

    monkeypatch.setattr(
        module, "ilm_drop", lambda tokens, generator=None: attribute_deletions(tokens, [0, 2])
    )
    collator = ILMCollatorForSeq2Seq(tokenizer=tokenizer, input_block_size=8, block_size=6)
    batch = collator(
        [
            {"prompt_ids": [10, 11], "target_ids": [20, 21, 22]},
            {"prompt_ids": [12, 13, 14], "target_ids": [23]},
        ]
    )
    # prefixes [CLS] prompt left-padded to the longest (4), suffixes [BOS] kept right-padded to the longest (2)
    assert batch["input_ids"].tolist() == [[PAD, CLS, 10, 11, BOS, 21], [CLS, 12, 13, 14, BOS, PAD]]
    assert batch["attention_mask"].tolist() == [[0, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 0]]
    assert batch["cls_position"].tolist() == [1, 0]
    # row 0 lost 20 (gap of [BOS], column 4) and 22 (after 21, column 5); row 1 lost 23 (gap of [BOS])
    assert batch["target_positions"].tolist() == [[4, 5], [4, -100]]
    assert batch["target_tokens"].tolist() == [[20, 22], [23, -100]]
    assert batch["labels"].tolist() == [2, 1]

    fixed = ILMCollatorForSeq2Seq(
        tokenizer=tokenizer, input_block_size=8, block_size=6, pad_to_block_size=True
    )
    assert fixed([{"prompt_ids": [10], "target_ids": [20]}])["input_ids"].shape == (1, 8 + 6)


def test_seq2seq_collator_with_real_randomness_rebuilds_the_target(tokenizer):
    collator = ILMCollatorForSeq2Seq(tokenizer=tokenizer, input_block_size=8, block_size=6, seed=1)
    example = {"prompt_ids": [10, 11, 12], "target_ids": [20, 21, 22, 23, 24]}
    for _ in range(20):
        batch = collator([example])
        ids = batch["input_ids"][0].tolist()
        bos_column = ids.index(BOS)
        assert ids[:bos_column] == [CLS, 10, 11, 12]  # the prompt is never dropped from
        kept = [t for t in ids[bos_column + 1 :] if t != PAD]
        valid = batch["target_tokens"][0].ne(-100)
        gaps = (batch["target_positions"][0][valid] - bos_column).tolist()
        assert reinsert(kept, gaps, batch["target_tokens"][0][valid].tolist()) == example["target_ids"]


def test_prediction_collator_layout(tokenizer):
    collator = ILMCollatorForSeq2SeqPrediction(tokenizer=tokenizer, input_block_size=6, block_size=4)
    batch = collator(
        [
            {"prompt_ids": [10, 11], "target_ids": [20, 21]},
            {"prompt_ids": [12, 13, 14, 15], "target_ids": [22]},
        ]
    )
    assert batch["input_ids"].tolist() == [[PAD, PAD, CLS, 10, 11, BOS], [CLS, 12, 13, 14, 15, BOS]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1, 1], [1] * 6]
    assert batch["cls_position"].tolist() == [2, 0]
    assert batch["target_ids"].tolist() == [[20, 21, PAD, PAD], [22, PAD, PAD, PAD]]  # no [EOS] in ILM
    with pytest.raises(ValueError, match="input_block_size"):
        collator([{"prompt_ids": [10] * 5, "target_ids": [20]}])
    with pytest.raises(ValueError, match="block_size"):
        collator([{"prompt_ids": [10], "target_ids": [20] * 5}])


def test_training_batches_let_trainer_count_rows(tokenizer, tmp_path):
    from transformers import TrainingArguments

    from xlm_hf.ilm import ILMConfig, ILMModelForInsertionLM, ILMTrainer

    model = ILMModelForInsertionLM(
        ILMConfig(vocab_size=27, hidden_size=16, num_hidden_layers=1, num_attention_heads=2)
    )
    trainer = ILMTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), report_to="none"))
    collator = ILMCollatorForSeq2Seq(tokenizer=tokenizer, input_block_size=8, block_size=6)
    batches = [collator([{"prompt_ids": [10], "target_ids": [20, 21]}] * size) for size in (3, 5)]
    assert trainer.model_accepts_loss_kwargs
    assert int(trainer._get_num_items_in_batch(batches, torch.device("cpu"))) == 8


def test_lm_layout_trains_on_the_joined_text(tokenizer):
    collator = ILMCollatorForSeq2Seq(
        tokenizer=tokenizer, input_block_size=8, block_size=6, layout="lm", seed=0
    )
    example = {"prompt_ids": [10, 11, 12], "target_ids": [20, 21]}
    for _ in range(10):
        batch = collator([example])
        ids = batch["input_ids"][0][batch["attention_mask"][0].bool()].tolist()
        assert ids[:2] == [CLS, BOS]
        valid = batch["target_tokens"][0].ne(-100)
        gaps = (batch["target_positions"][0][valid] - 1).tolist()
        assert reinsert(ids[2:], gaps, batch["target_tokens"][0][valid].tolist()) == [10, 11, 12, 20, 21]


def test_infill_prediction_collator_masks_target_runs_deterministically(tokenizer):
    from xlm_hf.ilm import ILMCollatorForInfillPrediction

    MASK = tokenizer.mask_token_id
    collator = ILMCollatorForInfillPrediction(tokenizer=tokenizer, input_block_size=6, block_size=6, seed=3)
    examples = [
        {"prompt_ids": [10, 11], "target_ids": [20, 21, 22, 23, 24, 25]},
        {"prompt_ids": [12], "target_ids": [26]},
    ]
    batch = collator(examples)
    assert torch.equal(batch["input_ids"], collator(examples)["input_ids"])  # same gaps every evaluation
    assert batch["target_start"].tolist() == [4, 3]
    assert batch["target_ids"].tolist() == [[20, 21, 22, 23, 24, 25], [26, PAD, PAD, PAD, PAD, PAD]]
    for row, example in enumerate(examples):
        ids = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        assert ids[: 2 + len(example["prompt_ids"])] == [CLS, BOS, *example["prompt_ids"]]
        gapped = ids[2 + len(example["prompt_ids"]) :]
        assert MASK in gapped and all(not (a == b == MASK) for a, b in zip(gapped, gapped[1:]))
        given = [t for t in gapped if t != MASK]
        it = iter(example["target_ids"])
        assert all(any(t == u for u in it) for t in given)  # kept target tokens, in order
    assert batch["input_ids"][1].tolist()[-2:] == [12, MASK]  # a one-token target is always masked


class TestILMCollatorContract(CollatorContract):
    family = "ilm"
    token_labels = False  # one item per row: the deletions are in target_positions / target_tokens
