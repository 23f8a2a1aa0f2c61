"""Packed (padding-free) batches: sequence boundaries come from `position_ids` that restart within a row, as
transformers' `DataCollatorWithFlattening` lays them out. Every family either keeps the packed sequences apart (each
equals running it alone) or, for the ILM, refuses them with one clear error."""

import pytest
import torch
from test_model_conformance import tiny  # the same tiny, seeded model of each family
from transformers import DataCollatorWithFlattening
from xlm_hf.modeling.backbone import packed_sequence_ids

MASK = 2
SEQUENCES = [[7, 9, 2, 11, 8], [12, 2, 15, 9], [20, 2, 13]]  # with [MASK]s, so the MDLM's estimate varies


def flattened(sequences: list[list[int]]) -> dict:
    """One packed row, as transformers' flattening collator gives it (no attention mask)."""
    batch = DataCollatorWithFlattening(return_tensors="pt")([{"input_ids": ids} for ids in sequences])
    return {"input_ids": batch["input_ids"], "position_ids": batch["position_ids"]}


def test_sequence_ids_follow_position_restarts_and_ignore_padding():
    positions = torch.tensor([[0, 1, 2, 0, 1, 0, 0, 0], [0, 0, 0, 1, 2, 3, 4, 5], [0, 1, 0, 0, 2, 3, 0, 1]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0, 0], [0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 0, 0, 1, 1, 1, 1]])
    positions[1] = (mask[1].cumsum(0) - 1).clamp(min=0) * mask[1]  # left padding: one sequence
    expected = torch.tensor([[1, 1, 1, 2, 2, 2, 2, 2], [0, 0, 1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 1, 1, 2, 2]])
    assert torch.equal(packed_sequence_ids(positions, mask), expected)


@pytest.mark.parametrize("attn_implementation", ["eager", "sdpa"])
@pytest.mark.parametrize("family", ["arlm", "mlm", "mdlm"])
def test_each_packed_sequence_equals_running_it_alone(family, attn_implementation):
    model = tiny(family, attn_implementation=attn_implementation)
    packed = flattened(SEQUENCES)
    noise = {}
    if family == "mdlm":
        # one noise level per packed sequence, given per token
        levels = [0.5, 2.0, 4.0]
        noise = {
            "noise_level": torch.cat([torch.full((len(ids),), lvl) for ids, lvl in zip(SEQUENCES, levels)])[
                None
            ]
        }
    with torch.no_grad():
        logits = model(**packed, **noise).logits[0]
        start = 0
        for index, ids in enumerate(SEQUENCES):
            alone_noise = {"noise_level": torch.tensor([levels[index]])} if family == "mdlm" else {}
            alone = model(input_ids=torch.tensor([ids]), **alone_noise).logits[0]
            torch.testing.assert_close(logits[start : start + len(ids)], alone, rtol=1e-4, atol=1e-5)
            start += len(ids)


def test_packing_changes_what_a_sequence_sees():
    """The control: the same row without the restarting positions mixes the sequences (what used to happen)."""
    model = tiny("mlm")
    packed = flattened(SEQUENCES)
    with torch.no_grad():
        separate = model(**packed).logits[0, : len(SEQUENCES[0])]
        mixed = model(input_ids=packed["input_ids"]).logits[0, : len(SEQUENCES[0])]
    assert (separate - mixed).abs().max() > 1e-3


def assert_each_packed_sequence_runs_as_alone(model) -> None:
    """The logits of each sequence in the packed row equal the model's logits for that sequence alone."""
    with torch.no_grad():
        logits = model(**flattened(SEQUENCES)).logits[0]
        start = 0
        for ids in SEQUENCES:
            alone = model(input_ids=torch.tensor([ids])).logits[0]
            torch.testing.assert_close(logits[start : start + len(ids)], alone, rtol=1e-4, atol=1e-5)
            start += len(ids)


def test_mdlm_estimates_the_noise_level_of_each_packed_sequence():
    assert_each_packed_sequence_runs_as_alone(tiny("mdlm"))


def test_packed_rows_with_padding_and_a_mask():
    """Two packed rows in one batch, the shorter right-padded: padding and packing together."""
    model = tiny("arlm")
    rows = [SEQUENCES[:2], SEQUENCES[2:]]
    width = max(sum(len(ids) for ids in row) for row in rows)
    input_ids = torch.zeros(2, width, dtype=torch.long)
    position_ids = torch.zeros(2, width, dtype=torch.long)
    attention_mask = torch.zeros(2, width, dtype=torch.long)
    for r, row in enumerate(rows):
        flat = flattened(row)
        n = flat["input_ids"].shape[1]
        input_ids[r, :n], position_ids[r, :n], attention_mask[r, :n] = (
            flat["input_ids"][0],
            flat["position_ids"][0],
            1,
        )
    with torch.no_grad():
        logits = model(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids).logits
        for r, row in enumerate(rows):
            start = 0
            for ids in row:
                alone = model(input_ids=torch.tensor([ids])).logits[0]
                torch.testing.assert_close(logits[r, start : start + len(ids)], alone, rtol=1e-4, atol=1e-5)
                start += len(ids)


def test_arlm_loss_of_a_flattened_batch_equals_the_loss_of_each_sequence():
    model = tiny("arlm")
    features = [{"input_ids": ids} for ids in SEQUENCES]
    batch = DataCollatorWithFlattening(return_tensors="pt")(features)
    with torch.no_grad():
        packed_sum = model(**batch).loss * sum(len(ids) - 1 for ids in SEQUENCES)
        alone_sum = sum(
            model(input_ids=torch.tensor([ids]), labels=torch.tensor([ids])).loss * (len(ids) - 1)
            for ids in SEQUENCES
        )
    torch.testing.assert_close(packed_sum, alone_sum, rtol=1e-4, atol=1e-5)


def test_ilm_refuses_packed_rows_with_one_clear_error():
    model = tiny("ilm")
    packed = flattened([[1, 4, 9, 10], [1, 4, 12]])
    with pytest.raises(ValueError, match="does not take packed sequences"):
        model(**packed)
    # positions that do not restart (one sequence per row, left padding) are fine
    ids = torch.tensor([[0, 0, 1, 4, 9], [1, 4, 12, 13, 14]])
    mask = ids.ne(0).long()
    positions = (mask.cumsum(-1) - 1).clamp(min=0) * mask
    real = mask.bool()
    with torch.no_grad():
        torch.testing.assert_close(
            model(input_ids=ids, attention_mask=mask, position_ids=positions).logits[real],
            model(input_ids=ids, attention_mask=mask).logits[real],
        )


@pytest.mark.parametrize("family", ["mlm", "mdlm"])
def test_neighbor_embeddings_stay_within_each_packed_sequence(family):
    """With `neighbor_token_window`, a sequence's first and last tokens have no neighbours in the next or previous
    packed sequence: each sequence still equals running it alone."""
    assert_each_packed_sequence_runs_as_alone(tiny(family, neighbor_token_window=2, time_conditioning=False))
