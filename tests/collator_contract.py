"""The collator contract every family passes, for each of its three collator kinds (`lm`, `seq2seq`,
`seq2seq_pred`; see `xlm_hf.families.COLLATOR_KINDS`).

A family's collator test module subclasses `CollatorContract` and sets `family`, plus what differs from the
defaults (how its `labels` look, where it pads):

    class TestARLMCollatorContract(CollatorContract):
        family = "arlm"

Collators are built as the jobs build them (`tokenizer`, `input_block_size`, `block_size`, and a `seed` for
those that draw noise), so a family passes this contract exactly when its collators work in a training run.
"""

import inspect
from typing import Any

import pytest
import torch
from model_contract import VOCAB_NUMBERS, TinyFamily

from xlm_hf.collator_utils import set_batch_noise
from xlm_hf.families import COLLATOR_KINDS, get_family

FIRST_NUMBER = 7  # the number tokens follow the 7 special tokens
TRAINING_KINDS = ("lm", "seq2seq")


def row_pattern(mask: torch.Tensor) -> str:
    """`"01"` for a row `[0 0 1 1]`: the runs of a 0/1 attention-mask row."""
    runs = [str(int(mask[0]))]
    for value in mask[1:].tolist():
        if str(value) != runs[-1]:
            runs.append(str(value))
    return "".join(runs)


class FamilyBatches(TinyFamily):
    """Builds a family's collators and examples as the jobs do; the collator and Trainer contracts use it."""

    input_block_size = 8
    block_size = 8
    batch_size = 6
    # Extra constructor options per kind, e.g. {"seq2seq": {"loss_normalization": "masked_mean"}}.
    collator_options: dict[str, dict] = {}
    # True: `labels` is aligned with `input_ids`, -100 where there is no loss (ARLM, MLM, MDLM). False: the family
    # carries its targets in other fields and `labels` only lets Trainer count items (ILM: one per row).
    token_labels: bool = True
    # How each kind pads a row's attention mask: "left" (0…0 1…1, every row ends in the last column), "right"
    # (1…1 0…0, every row starts in column 0), "split" (a left-padded prompt then a right-padded target: 0…0 1…1
    # 0…0, all rows share the column where the prompt ends).
    padding_sides: dict[str, str] = {"lm": "right", "seq2seq": "split", "seq2seq_pred": "left"}

    def make_collator(self, kind: str, seed: int | None = 0, **options):
        collator_class = get_family(self.family).collators[kind]
        accepted = inspect.signature(collator_class).parameters
        arguments = {"tokenizer": self.make_tokenizer(), "block_size": self.block_size}
        if "input_block_size" in accepted:
            arguments["input_block_size"] = self.input_block_size
        if "seed" in accepted:
            arguments["seed"] = seed
        arguments.update(self.collator_options.get(kind, {}))
        arguments.update(options)
        return collator_class(**arguments)

    def make_examples(self, kind: str, seed: int = 0, count: int | None = None) -> list[dict[str, Any]]:
        """Examples of different lengths that fit the blocks with room for the family's special tokens."""
        generator = torch.Generator().manual_seed(seed)

        def tokens(low: int, high: int) -> list[int]:
            length = int(torch.randint(low, high + 1, (1,), generator=generator))
            return torch.randint(
                FIRST_NUMBER, FIRST_NUMBER + VOCAB_NUMBERS, (length,), generator=generator
            ).tolist()

        rows = []
        for _ in range(count or self.batch_size):
            if kind == "lm":
                rows.append({"input_ids": tokens(2, self.block_size - 3)})
            else:
                rows.append(
                    {
                        "prompt_ids": tokens(1, self.input_block_size - 3),
                        "target_ids": tokens(2, self.block_size - 3),
                    }
                )
        return rows


class CollatorContract(FamilyBatches):
    @staticmethod
    def draws_noise(collator) -> bool:
        return hasattr(collator, "seed")

    @staticmethod
    def assert_same_batch(a: dict, b: dict, msg: str = "") -> None:
        assert a.keys() == b.keys(), msg
        for key in a:
            assert torch.equal(a[key], b[key]), f"{msg}: {key} differs"

    # ----- the contract -------------------------------------------------------------------------------------

    @pytest.mark.parametrize("kind", COLLATOR_KINDS)
    def test_batch_fields_have_one_row_per_example_and_consistent_types(self, kind):
        examples = self.make_examples(kind)
        batch = self.make_collator(kind)(examples)
        vocab_size = len(self.make_tokenizer())
        ids, mask = batch["input_ids"], batch["attention_mask"]
        assert ids.dtype == mask.dtype == torch.long
        assert ids.shape == mask.shape and ids.shape[0] == len(examples)
        assert set(mask.unique().tolist()) <= {0, 1}
        assert bool(((ids >= 0) & (ids < vocab_size)).all())
        for key, value in batch.items():
            assert isinstance(value, torch.Tensor), f"{key} is not a tensor"
            assert value.shape[0] == len(examples), f"{key} does not have one row per example"
            assert not value.is_floating_point() or bool(torch.isfinite(value).all()), key
        if kind in TRAINING_KINDS:
            assert batch["labels"].dtype == torch.long
        else:
            assert batch["target_ids"].shape == (len(examples), self.block_size)
            assert batch["target_ids"].dtype == torch.long

    @pytest.mark.parametrize("kind", TRAINING_KINDS)
    def test_labels_mark_ignored_positions_with_minus_100(self, kind):
        if not self.token_labels:
            pytest.skip(f"{self.family}'s labels are not aligned with input_ids")
        batch = self.make_collator(kind)(self.make_examples(kind))
        labels, mask = batch["labels"], batch["attention_mask"]
        assert labels.shape == batch["input_ids"].shape
        ignored = labels.eq(-100)
        assert bool(((labels >= 0) | ignored).all()), "labels are token ids or -100"
        assert bool(ignored[mask.eq(0)].all()), "a position the model does not see carries no loss"
        assert bool((~ignored).any()), "the batch has something to learn"

    def test_prediction_batches_without_targets_have_no_target_ids(self):
        examples = [{"prompt_ids": ex["prompt_ids"]} for ex in self.make_examples("seq2seq_pred")]
        batch = self.make_collator("seq2seq_pred")(examples)
        assert "target_ids" not in batch and batch["input_ids"].shape[0] == len(examples)

    @pytest.mark.parametrize("kind", COLLATOR_KINDS)
    def test_rows_are_padded_on_the_family_side(self, kind):
        side = self.padding_sides[kind]
        mask = self.make_collator(kind)(self.make_examples(kind))["attention_mask"]
        patterns = {row_pattern(row) for row in mask}
        allowed = {"left": {"1", "01"}, "right": {"1", "10"}, "split": {"1", "01", "10", "010"}}[side]
        assert patterns <= allowed, f"{kind} rows are not {side}-padded: {patterns}"
        if side == "left":
            assert bool(mask[:, -1].eq(1).all()), "every prompt ends in the last column"
        elif side == "right":
            assert bool(mask[:, 0].eq(1).all()), "every row starts in column 0"
        else:
            assert bool(mask.bool().all(dim=0).any()), "the rows share the column where the prompt ends"

    @pytest.mark.parametrize("kind", COLLATOR_KINDS)
    def test_no_example_leaks_into_another_row(self, kind):
        """Other examples' tokens (at the same lengths, so the same noise is drawn) change nothing in row 0."""
        examples = self.make_examples(kind)
        others = self.make_examples(kind, seed=1)
        changed = [examples[0]]
        for example, other in zip(examples[1:], others[1:]):
            changed.append(
                {key: [other[key][0]] * len(tokens) for key, tokens in example.items()}  # same lengths
            )
        a, b = self.make_collator(kind)(examples), self.make_collator(kind)(changed)
        assert not torch.equal(a["input_ids"], b["input_ids"]), "the other rows should differ"
        for key in a:
            assert torch.equal(a[key][0], b[key][0]), f"{key}: row 0 depends on the other examples"

    @pytest.mark.parametrize("kind", COLLATOR_KINDS)
    def test_batches_are_a_function_of_seed_and_batch_position(self, kind):
        examples = self.make_examples(kind)
        collator = self.make_collator(kind, seed=3)
        first, second = collator(examples), collator(examples)
        again = self.make_collator(kind, seed=3)
        self.assert_same_batch(first, again(examples), "the same seed, the first batch")
        if not self.draws_noise(collator):
            self.assert_same_batch(first, second, "a collator without noise")
            return
        assert any(not torch.equal(first[k], second[k]) for k in first), "batch 1 draws new noise"
        placed = self.make_collator(kind, seed=3)
        assert set_batch_noise(placed, first_batch=1)
        self.assert_same_batch(second, placed(examples), "batch 1 collated on its own")
        other_seed = self.make_collator(kind, seed=4)(examples)
        assert any(not torch.equal(first[k], other_seed[k]) for k in first), "another seed, other noise"

    @pytest.mark.parametrize("kind", COLLATOR_KINDS)
    def test_raw_dataset_columns_are_ignored(self, kind):
        """With `remove_unused_columns=False` the examples keep every dataset column."""
        examples = self.make_examples(kind)
        raw = [{**ex, "id": i, "text": "3 4 5", "meta": {"source": "star"}} for i, ex in enumerate(examples)]
        self.assert_same_batch(
            self.make_collator(kind)(examples), self.make_collator(kind)(raw), "raw columns"
        )
