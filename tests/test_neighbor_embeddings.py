"""The backbone's neighbour embeddings (`neighbor_token_window`): what each position reads, what counts as absent,
and the loud refusals (causal families, caches, bad values)."""

import pytest
import torch
from transformers import DynamicCache
from xlm_hf.modeling.backbone import XLMNeighborEmbedding, shift_along_sequence

from xlm_hf.arlm import ARLMConfig, ARLMForCausalLM
from xlm_hf.mlm import MLMConfig, MLMForMaskedLM

HIDDEN = 4


def identity_neighbors(window: int) -> XLMNeighborEmbedding:
    """Neighbour embeddings whose projection adds each neighbour's embedding unchanged, so the output is a sum that
    can be written out by hand."""
    module = XLMNeighborEmbedding(
        MLMConfig(hidden_size=HIDDEN, num_attention_heads=1, neighbor_token_window=window)
    )
    with torch.no_grad():
        module.neighbor_proj.weight.copy_(torch.eye(HIDDEN).repeat(1, 2 * window))
    return module


def test_shift_along_sequence_fills_the_ends():
    values = torch.tensor([[1, 2, 3, 4]])
    assert shift_along_sequence(values, -1).tolist() == [[0, 1, 2, 3]]  # left neighbour
    assert shift_along_sequence(values, 2, fill_value=-1).tolist() == [[3, 4, -1, -1]]


def test_each_position_adds_its_neighbors_and_padding_counts_as_absent():
    # position i holds the embedding i + 1 in every channel
    embeddings = torch.arange(1, 6, dtype=torch.float)[None, :, None].expand(1, 5, HIDDEN)
    attention_mask = torch.tensor([[0, 1, 1, 1, 1]])  # the first position is padding
    out = identity_neighbors(window=1)(embeddings, attention_mask, sequence_ids=None)[0, :, 0]
    # position 1 has no real left neighbour (padding), position 4 no right neighbour
    assert out.tolist() == [1 + 2, 2 + 3, 3 + 2 + 4, 4 + 3 + 5, 5 + 4]


def test_window_two_reads_two_neighbors_on_each_side_within_a_packed_sequence():
    embeddings = torch.arange(1, 7, dtype=torch.float)[None, :, None].expand(1, 6, HIDDEN)
    sequence_ids = torch.tensor([[1, 1, 1, 2, 2, 2]])
    out = identity_neighbors(window=2)(embeddings, torch.ones(1, 6), sequence_ids)[0, :, 0]
    assert out.tolist() == [1 + 2 + 3, 2 + 1 + 3, 3 + 1 + 2, 4 + 5 + 6, 5 + 4 + 6, 6 + 4 + 5]


def test_a_masked_position_knows_its_neighbor_from_the_first_block_on():
    """Without attention (the blocks' outputs zeroed), the model's output at a position depends on its neighbour's
    token only when the window is on: the information arrives before any attention layer."""
    outputs = {}
    for window in (0, 1):
        torch.manual_seed(0)
        config = MLMConfig(vocab_size=20, hidden_size=16, num_attention_heads=2, neighbor_token_window=window)
        model = MLMForMaskedLM(config).eval()
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.data.zero_()
        with torch.no_grad():
            first = model(input_ids=torch.tensor([[7, 2, 9]])).logits[0, 1]
            second = model(input_ids=torch.tensor([[7, 2, 11]])).logits[0, 1]
        outputs[window] = (first - second).abs().max().item()
    assert outputs[0] == 0.0
    assert outputs[1] > 1e-4


def test_causal_family_refuses_the_window():
    with pytest.raises(ValueError, match="neighbor_token_window needs a bidirectional family"):
        ARLMForCausalLM(
            ARLMConfig(vocab_size=20, hidden_size=16, num_attention_heads=2, neighbor_token_window=1)
        )


def test_a_cache_is_refused():
    model = MLMForMaskedLM(
        MLMConfig(vocab_size=20, hidden_size=16, num_attention_heads=2, neighbor_token_window=1)
    )
    cache = DynamicCache(config=model.config)
    model.model(input_ids=torch.tensor([[7, 8]]), cache=cache)
    with pytest.raises(ValueError, match="pass no cache"):
        model.model(
            input_ids=torch.tensor([[9]]), attention_mask=torch.ones(1, 3, dtype=torch.long), cache=cache
        )


@pytest.mark.parametrize("value", [-1, 1.5, True, "1"])
def test_bad_window_is_one_clear_error(value):
    with pytest.raises(ValueError, match="neighbor_token_window must be an integer >= 0"):
        MLMConfig(neighbor_token_window=value)
