"""MLM and MDLM collators: layouts, where masks may fall, labels, time fields."""

import pytest
import torch
from collator_contract import CollatorContract
from xlm_hf.modeling.noise_schedules import LogLinearNoiseSchedule

from xlm_hf.collator_utils import left_align_slots
from xlm_hf.families import get_family
from xlm_hf.mdlm.collator_mdlm import (
    MDLMCollatorForInfill,
    MDLMCollatorForLM,
    MDLMCollatorForSeq2Seq,
    MDLMCollatorForSeq2SeqPrediction,
)
from xlm_hf.mlm.collator_mlm import (
    MLMCollatorForInfill,
    MLMCollatorForInfillPrediction,
    MLMCollatorForLM,
    MLMCollatorForSeq2Seq,
    MLMCollatorForSeq2SeqPrediction,
    MLMCollatorForUnconditionalPrediction,
)
from xlm_hf.mlm.trainer_mlm import masked_predict_targets

PAD, MASK, EOS, BOS = 0, 2, 3, 4


def seq2seq_examples(n=64, seed=0):
    rng = torch.Generator().manual_seed(seed)
    examples = []
    for _ in range(n):
        p = int(torch.randint(1, 8, (1,), generator=rng))
        q = int(torch.randint(1, 6, (1,), generator=rng))
        examples.append(
            {
                "prompt_ids": torch.randint(7, 27, (p,), generator=rng).tolist(),
                "target_ids": torch.randint(7, 27, (q,), generator=rng).tolist(),
            }
        )
    return examples


@pytest.mark.parametrize("collator_class", [MLMCollatorForSeq2Seq, MDLMCollatorForSeq2Seq])
@pytest.mark.parametrize("loss_on_padding", [True, False])
def test_seq2seq_masks_fall_only_inside_the_target_slot(star_tokenizer, collator_class, loss_on_padding):
    examples = seq2seq_examples()
    collator = collator_class(
        tokenizer=star_tokenizer, input_block_size=9, block_size=7, loss_on_padding=loss_on_padding, seed=0
    )
    batch = collator(examples)
    ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert ids.shape == (64, 16)
    assert labels.shape == ids.shape
    for row, example in enumerate(examples):
        n = len(example["prompt_ids"])
        slot = [*example["target_ids"], EOS] + [PAD] * (7 - len(example["target_ids"]) - 1)
        # prompt and [BOS] are never masked; after the slot nothing is visible
        assert ids[row, :n].tolist() == example["prompt_ids"] and ids[row, n] == BOS
        assert bool(ids[row, n + 8 :].eq(PAD).all()) and bool(mask[row, n + 8 :].eq(0).all())
        masked = ids[row].eq(MASK)
        assert not bool(masked[: n + 1].any()) and not bool(masked[n + 8 :].any())
        # masked positions hold the clean slot token in labels
        clean = torch.tensor(slot)
        slot_masked = masked[n + 1 : n + 8]
        assert torch.equal(labels[row, n + 1 : n + 8][slot_masked], clean[slot_masked])
        visible_slot = torch.ones(7, dtype=torch.bool) if loss_on_padding else clean.ne(PAD)
        assert mask[row, n + 1 : n + 8].bool().tolist() == visible_slot.tolist()
        if not loss_on_padding:
            assert not bool(slot_masked[clean.eq(PAD)].any()), (
                "padding is never masked without loss_on_padding"
            )
        assert torch.equal(ids[row, n + 1 : n + 8][~slot_masked], clean[~slot_masked])
    assert bool(ids.eq(MASK).any())


def test_mlm_labels_are_exactly_the_masked_positions(star_tokenizer):
    batch = MLMCollatorForSeq2Seq(tokenizer=star_tokenizer, input_block_size=9, block_size=7, seed=1)(
        seq2seq_examples()
    )
    assert torch.equal(batch["labels"].ne(-100), batch["input_ids"].eq(MASK))
    assert batch["t"].shape == (64,)


def test_mlm_masking_rate_follows_t(star_tokenizer):
    collator = MLMCollatorForLM(tokenizer=star_tokenizer, block_size=64, seed=0)
    batch = collator([{"input_ids": list(range(7, 27)) * 3}] * 256)
    rate = batch["input_ids"].eq(MASK).float().mean(-1)
    # each row is masked at its own rate t: the per-row fraction tracks t
    assert float((rate - batch["t"]).abs().mean()) < 0.06
    assert float(torch.corrcoef(torch.stack([rate, batch["t"]]))[0, 1]) > 0.95


def test_lm_layout_bos_eos_truncation_and_padding(star_tokenizer):
    collator = MLMCollatorForLM(
        tokenizer=star_tokenizer, block_size=6, add_bos=True, loss_on_padding=False, seed=0
    )
    batch = collator([{"input_ids": [7, 8]}, {"input_ids": list(range(7, 17))}])
    clean = torch.where(batch["labels"].ne(-100), batch["labels"], batch["input_ids"])
    assert clean[0].tolist() == [BOS, 7, 8, EOS, PAD, PAD]
    assert clean[1].tolist() == [BOS, 7, 8, 9, 10, EOS]
    assert batch["attention_mask"][0].tolist() == [1, 1, 1, 1, 0, 0]
    assert not bool(batch["input_ids"][:, 0].eq(MASK).any())  # [BOS] is never masked
    assert not bool(batch["input_ids"][0, 4:].eq(MASK).any())


def test_seq2seq_prediction_layout(star_tokenizer):
    batch = MLMCollatorForSeq2SeqPrediction(tokenizer=star_tokenizer, input_block_size=6, block_size=5)(
        [
            {"prompt_ids": [7, 8, 9], "target_ids": [10, 11]},
            {"prompt_ids": [12], "target_ids": [13, 14, 15, 16]},
        ]
    )
    assert batch["input_ids"].tolist() == [[PAD, PAD, 7, 8, 9, BOS], [PAD, PAD, PAD, PAD, 12, BOS]]
    assert batch["attention_mask"].tolist() == [[0, 0, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]]
    assert batch["target_ids"].tolist() == [[10, 11, EOS, PAD, PAD], [13, 14, 15, 16, EOS]]
    same = MDLMCollatorForSeq2SeqPrediction(tokenizer=star_tokenizer, input_block_size=6, block_size=5)(
        [{"prompt_ids": [7, 8, 9], "target_ids": [10, 11]}]
    )
    assert same["input_ids"][0].tolist() == batch["input_ids"][0].tolist()
    with pytest.raises(ValueError, match="does not fit block_size"):
        MLMCollatorForSeq2SeqPrediction(tokenizer=star_tokenizer, input_block_size=6, block_size=3)(
            [{"prompt_ids": [7], "target_ids": [10, 11, 12]}]
        )
    with pytest.raises(ValueError, match="input_block_size"):
        MLMCollatorForSeq2SeqPrediction(tokenizer=star_tokenizer, input_block_size=2, block_size=5)(
            [{"prompt_ids": [7, 8], "target_ids": [10]}]
        )


@pytest.mark.parametrize("collator_class", [MLMCollatorForInfill, MDLMCollatorForInfill])
def test_infill_masks_only_where_the_prompt_has_masks(star_tokenizer, collator_class):
    solution = list(range(7, 19))
    holes = [i % 3 == 0 for i in range(12)]
    prompt = [MASK if h else tok for tok, h in zip(solution, holes)]
    batch = collator_class(tokenizer=star_tokenizer, block_size=14, seed=0)(
        [{"prompt_ids": prompt, "target_ids": solution}] * 50
    )
    masked = batch["input_ids"].eq(MASK)
    allowed = torch.tensor(holes + [False, False])
    assert not bool(masked[:, ~allowed].any())
    assert bool(masked.any())
    assert (
        batch["input_ids"][:, :12][~masked[:, :12]].tolist()
        == torch.tensor([solution] * 50)[~masked[:, :12]].tolist()
    )
    assert batch["attention_mask"][0].tolist() == [1] * 12 + [0, 0]


def test_infill_and_unconditional_prediction_batches(star_tokenizer):
    batch = MLMCollatorForInfillPrediction(tokenizer=star_tokenizer, block_size=5)(
        [{"prompt_ids": [7, MASK, 9], "target_ids": [7, 8, 9]}]
    )
    assert batch["input_ids"].tolist() == [[PAD, PAD, 7, MASK, 9]]
    assert batch["target_ids"].tolist() == [[PAD, PAD, 7, 8, 9]]
    assert batch["infill"] is True
    with pytest.raises(ValueError, match="same length"):
        MLMCollatorForInfillPrediction(tokenizer=star_tokenizer, block_size=5)(
            [{"prompt_ids": [7], "target_ids": [7, 8]}]
        )
    unconditional = MLMCollatorForUnconditionalPrediction(tokenizer=star_tokenizer, block_size=4)(
        [{"prompt_ids": [7], "target_ids": [8, 9]}] * 3
    )
    assert unconditional["input_ids"].shape == (3, 0)
    assert unconditional["target_ids"][0].tolist() == [8, 9, EOS, PAD]


def test_mdlm_batches_carry_time_sigma_and_rate_and_mask_with_probability_a_t(star_tokenizer):
    collator = MDLMCollatorForLM(tokenizer=star_tokenizer, block_size=80, seed=0)
    collator.noise_schedule = schedule = LogLinearNoiseSchedule(5.0)  # the model's, set by MDLMTrainer
    batch = collator([{"input_ids": list(range(7, 27)) * 4}] * 256)
    t, sigma, rate = batch["t"], batch["total_noise"], batch["noise_rate"]
    assert t.shape == sigma.shape == rate.shape == (256,)
    assert float(t.min()) >= 1e-3
    torch.testing.assert_close(sigma, schedule.sigma(t))
    torch.testing.assert_close(rate, schedule.rate(t))
    fraction = batch["input_ids"].eq(MASK).float().mean(-1)
    assert float((fraction - schedule.mask_probability(t)).abs().mean()) < 0.06


def test_mdlm_antithetic_times_are_spread(star_tokenizer):
    collator = MDLMCollatorForSeq2Seq(
        tokenizer=star_tokenizer, input_block_size=9, block_size=7, antithetic=True, time_eps=0.0, seed=0
    )
    t = collator(seq2seq_examples(n=16))["t"]
    assert sorted((t * 16).floor().long().tolist()) == list(range(16))


def test_mdlm_loss_normalization_decides_the_labels(star_tokenizer):
    examples = seq2seq_examples()
    elbo = MDLMCollatorForSeq2Seq(tokenizer=star_tokenizer, input_block_size=9, block_size=7, seed=0)(
        examples
    )
    masked_mean = MDLMCollatorForSeq2Seq(
        tokenizer=star_tokenizer, input_block_size=9, block_size=7, seed=0, loss_normalization="masked_mean"
    )(examples)
    assert torch.equal(elbo["input_ids"], masked_mean["input_ids"])  # same noise, different labels
    # elbo: every maskable (slot) position is labelled; masked_mean: only the masked ones
    assert torch.equal(elbo["labels"].ne(-100).sum(-1), torch.full((64,), 7))
    assert torch.equal(masked_mean["labels"].ne(-100), masked_mean["input_ids"].eq(MASK))
    with pytest.raises(ValueError, match="loss_normalization"):
        MDLMCollatorForSeq2Seq(
            tokenizer=star_tokenizer, input_block_size=9, block_size=7, loss_normalization="x"
        )


class TestMLMCollatorContract(CollatorContract):
    family = "mlm"
    # prompt from column 0, then the target slot: the row is right-padded as a whole
    padding_sides = {**CollatorContract.padding_sides, "seq2seq": "right"}


class TestMDLMCollatorContract(TestMLMCollatorContract):
    family = "mdlm"


class TestMDLMMaskedMeanCollatorContract(TestMDLMCollatorContract):
    collator_options = {"seq2seq": {"loss_normalization": "masked_mean"}, "lm": {"loss_on_padding": False}}


@pytest.mark.parametrize("collator_class", [MLMCollatorForSeq2Seq, MDLMCollatorForSeq2Seq])
def test_a_right_aligned_answer_ends_in_the_slots_last_position(star_tokenizer, collator_class):
    examples = [
        {"prompt_ids": [7, 8], "target_ids": [10, 11]},
        {"prompt_ids": [9], "target_ids": [12, 13, 14]},
    ]
    batch = collator_class(
        tokenizer=star_tokenizer, input_block_size=4, block_size=6, target_alignment="right", seed=0
    )(examples)
    clean = torch.where(batch["labels"].ne(-100), batch["labels"], batch["input_ids"])
    # prompt [BOS] slot, the slot padding first and [EOS] last; the row is right-padded to 4 + 6
    assert clean.tolist() == [
        [7, 8, BOS, PAD, PAD, PAD, 10, 11, EOS, PAD],
        [9, BOS, PAD, PAD, 12, 13, 14, EOS, PAD, PAD],
    ]
    assert batch["attention_mask"].tolist() == [[1] * 9 + [0], [1] * 8 + [0, 0]]
    left = collator_class(tokenizer=star_tokenizer, input_block_size=4, block_size=6, seed=0)(examples)
    clean = torch.where(left["labels"].ne(-100), left["labels"], left["input_ids"])
    assert clean[0].tolist() == [7, 8, BOS, 10, 11, EOS, PAD, PAD, PAD, PAD]  # the default: left-aligned


@pytest.mark.parametrize("collator_class", [MLMCollatorForSeq2Seq, MDLMCollatorForSeq2Seq])
def test_the_padding_before_a_right_aligned_answer_carries_loss(star_tokenizer, collator_class):
    examples = [{"prompt_ids": [7, 8], "target_ids": [10]}] * 64  # slot [PAD PAD PAD PAD 10 EOS]
    batch = collator_class(
        tokenizer=star_tokenizer, input_block_size=4, block_size=6, target_alignment="right", seed=0
    )(examples)
    leading = slice(3, 7)  # the slot's padding, after `7 8 [BOS]`
    masked = batch["input_ids"][:, leading].eq(MASK)
    assert bool(masked.any())  # padding is masked like any slot token ...
    assert bool(batch["labels"][:, leading][masked].eq(PAD).all())  # ... and predicted as padding
    assert not bool(batch["input_ids"][:, :3].eq(MASK).any())


def test_target_alignment_must_be_left_or_right_and_right_needs_loss_on_padding(star_tokenizer):
    for collator_class in (MLMCollatorForSeq2Seq, MDLMCollatorForSeq2Seq, MDLMCollatorForSeq2SeqPrediction):
        with pytest.raises(ValueError, match="target_alignment must be one of"):
            collator_class(
                tokenizer=star_tokenizer, input_block_size=4, block_size=6, target_alignment="center"
            )
    with pytest.raises(ValueError, match="needs loss_on_padding=true"):
        MDLMCollatorForSeq2Seq(
            tokenizer=star_tokenizer,
            input_block_size=4,
            block_size=6,
            target_alignment="right",
            loss_on_padding=False,
        )


def test_left_align_slots_moves_only_the_leading_padding(star_tokenizer):
    slots = torch.tensor(
        [[PAD, PAD, 10, 11, EOS], [10, 11, EOS, PAD, PAD], [PAD, 10, PAD, 11, EOS], [PAD] * 5]
    )
    assert left_align_slots(slots, PAD).tolist() == [
        [10, 11, EOS, PAD, PAD],
        [10, 11, EOS, PAD, PAD],
        [10, PAD, 11, EOS, PAD],
        [PAD] * 5,
    ]


@pytest.mark.parametrize("family", ["mlm", "mdlm"])
def test_right_aligned_predictions_are_scored_in_the_references_layout(star_tokenizer, family):
    """A model that writes `[PAD PAD 10 11 EOS]` into the slot predicted the reference `10 11 [EOS]`."""
    model = (
        get_family(family)
        .build_model(
            star_tokenizer,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            intermediate_size=32,
            max_position_embeddings=16,
        )
        .eval()
    )
    answer = [PAD, PAD, 10, 11, EOS]

    def denoising_logits(input_ids, attention_mask, t):  # sure of the right-aligned answer in the slot
        logits = torch.zeros(input_ids.shape + (len(star_tokenizer),))
        logits[:, -5:, :] = -20.0
        for column, token in enumerate(answer):
            logits[:, input_ids.shape[1] - 5 + column, token] = 20.0
        return logits

    model._denoising_logits = denoising_logits
    prediction_class = get_family(family).collators["seq2seq_pred"]
    examples = [{"prompt_ids": [7, 8], "target_ids": [10, 11]}]
    right = prediction_class(
        tokenizer=star_tokenizer, input_block_size=4, block_size=5, target_alignment="right"
    )
    batch = right(examples)
    assert batch["target_alignment"] == "right" and batch["target_ids"].tolist() == [[10, 11, EOS, PAD, PAD]]
    generation = {"sampler": "unmask", "unmasking_order": "top_prob", "do_sample": False}
    predictions, _ = masked_predict_targets(model, batch, generation)
    assert predictions.tolist() == batch["target_ids"].tolist()
    # without the flag the slot is read as it was generated (a left-aligned model never pads first)
    left = prediction_class(tokenizer=star_tokenizer, input_block_size=4, block_size=5)(examples)
    assert "target_alignment" not in left
    assert masked_predict_targets(model, left, generation)[0].tolist() == [answer]


def test_the_experiments_target_alignment_reaches_its_prediction_collator(star_tokenizer):
    from datasets import Dataset

    from xlm_hf.experiment import load_experiment
    from xlm_hf.jobs import build_eval_tasks

    experiment = load_experiment("star_medium_mdlm")
    assert experiment["collator"]["target_alignment"] == "right"
    split = Dataset.from_list([{"prompt_ids": [7, 8], "target_ids": [10, 11]}])
    tasks = build_eval_tasks(get_family("mdlm"), experiment, star_tokenizer, {"validation": split})
    assert tasks["lm"].collator.target_alignment == "right"
    assert tasks["prediction"].collator.target_alignment == "right"
