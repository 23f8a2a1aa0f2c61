"""ARLM generation as transformers' generation tests exercise it (tests/generation/test_utils.py, which is not in the
transformers source distribution): continuing from a cache, assisted and prompt-lookup decoding, `inputs_embeds`,
caller-supplied `position_ids`, and the lengths a caller such as lm-eval asks for. The prompt layout (`[BOS]` after
the prompt) must be added exactly once, whichever way generation is entered."""

import pytest
import torch

from xlm_hf.arlm import ARLMConfig, ARLMForCausalLM

SPECIAL_IDS = list(
    range(7)
)  # [PAD] [CLS] [MASK] [EOS] [BOS] [SEP] [UNK]: never generated, so lengths are fixed
BOS = 4
GREEDY = {"do_sample": False, "suppress_tokens": SPECIAL_IDS}


def tiny_arlm(**overrides) -> ARLMForCausalLM:
    torch.manual_seed(0)
    options = dict(
        vocab_size=27, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=40
    )
    options.update(overrides)
    return ARLMForCausalLM(ARLMConfig(**options)).eval()


def left_padded_prompts() -> tuple[torch.Tensor, torch.Tensor]:
    rows = [[8, 9, 10, 11, 12], [13, 14], [15, 16, 17]]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def continuation_mask(mask: torch.Tensor, sequences: torch.Tensor) -> torch.Tensor:
    """The returned sequences' mask: the prompt's padding, then real tokens (no special token is generated)."""
    extra = sequences.shape[1] - mask.shape[1]
    return torch.cat([mask, mask.new_ones(mask.shape[0], extra)], dim=1)


@pytest.mark.parametrize("prompt_layout", ["seq2seq", "lm"])
def test_continuing_from_the_cache_equals_one_long_generate(prompt_layout):
    model = tiny_arlm(prompt_layout=prompt_layout)
    ids, mask = left_padded_prompts()
    one_go = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, **GREEDY)

    first = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=4, return_dict_in_generate=True, **GREEDY
    )
    laid_out_mask = continuation_mask(mask, first.sequences[:, : ids.shape[1] + 1])
    second = model.generate(
        input_ids=first.sequences,
        attention_mask=continuation_mask(laid_out_mask, first.sequences),
        cache=first.cache,
        max_new_tokens=4,
        **GREEDY,
    )
    assert torch.equal(second, one_go)
    assert second.eq(BOS).sum(-1).tolist() == [1, 1, 1]  # no stray [BOS] where the second call started


def test_continuing_from_returned_sequences_without_a_cache_adds_no_second_bos():
    model = tiny_arlm()
    ids = torch.tensor([[8, 9, 10]])
    one_go = model.generate(input_ids=ids, max_new_tokens=6, **GREEDY)
    first = model.generate(input_ids=ids, max_new_tokens=3, **GREEDY)
    assert torch.equal(model.generate(input_ids=first, max_new_tokens=3, **GREEDY), one_go)


def test_a_cache_the_layout_would_shift_is_one_clear_error():
    model = tiny_arlm()
    ids = torch.tensor([[8, 9, BOS], [8, 9, 10]])
    out = model(input_ids=ids, use_cache=True)  # rows would be re-padded: the cached columns would move
    with pytest.raises(ValueError, match="cache"):
        model.generate(input_ids=ids, cache=out.cache, max_new_tokens=2, **GREEDY)


def test_assisted_decoding_with_itself_as_assistant_equals_greedy():
    model = tiny_arlm()
    ids = torch.tensor([[8, 9, 10, 11, 12]])
    greedy = model.generate(input_ids=ids, max_new_tokens=10, **GREEDY)
    assisted = model.generate(input_ids=ids, assistant_model=model, max_new_tokens=10, **GREEDY)
    assert torch.equal(assisted, greedy)


def test_assisted_sampling_with_itself_as_assistant_runs():
    # transformers' speculative sampling scores each drafted token; a draft that gained a [BOS] of its own had one
    # token more than its scores (IndexError in `_speculative_sampling`)
    model = tiny_arlm()
    ids = torch.tensor([[8, 9, 10, 11, 12]])
    torch.manual_seed(0)
    out = model.generate(
        input_ids=ids, assistant_model=model, do_sample=True, max_new_tokens=10, suppress_tokens=SPECIAL_IDS
    )
    assert out.shape == (1, 5 + 1 + 10)
    assert torch.equal(out[:, :6], torch.tensor([[8, 9, 10, 11, 12, BOS]]))
    assert out[0, 6:].ge(7).all()


def test_prompt_lookup_decoding_equals_greedy():
    model = tiny_arlm()
    ids = torch.tensor([[8, 9, 10, 8, 9, 10, 8, 9]])
    greedy = model.generate(input_ids=ids, max_new_tokens=10, **GREEDY)
    lookup = model.generate(input_ids=ids, prompt_lookup_num_tokens=3, max_new_tokens=10, **GREEDY)
    assert torch.equal(lookup, greedy)


def test_generate_from_inputs_embeds_matches_input_ids():
    model = tiny_arlm()
    ids, mask = left_padded_prompts()
    embeds = model.get_input_embeddings()(ids)
    from_ids = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=6, **GREEDY)
    # with both, the sequences hold the prompt as with ids alone; with embeddings alone, only the new tokens
    both = model.generate(
        input_ids=ids, inputs_embeds=embeds, attention_mask=mask, max_new_tokens=6, **GREEDY
    )
    only_embeds = model.generate(inputs_embeds=embeds, attention_mask=mask, max_new_tokens=6, **GREEDY)
    assert torch.equal(both, from_ids)
    assert torch.equal(only_embeds, from_ids[:, ids.shape[1] + 1 :])
    # embeddings that already hold [BOS] are laid out: it is not added twice
    laid_out = model.get_input_embeddings()(torch.cat([ids, torch.full((3, 1), BOS)], dim=1))
    with_bos = model.generate(
        inputs_embeds=laid_out,
        attention_mask=continuation_mask(mask, laid_out[..., 0]),
        max_new_tokens=6,
        **GREEDY,
    )
    assert torch.equal(with_bos, only_embeds)


def test_caller_position_ids_are_laid_out_and_extended():
    # absolute position embeddings: the generated tokens depend on the positions themselves
    model = tiny_arlm(absolute_position_embeddings=True)
    ids, mask = left_padded_prompts()
    default = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, **GREEDY)
    positions = (mask.cumsum(-1) - 1).clamp(min=0) * mask
    explicit = model.generate(
        input_ids=ids, attention_mask=mask, position_ids=positions, max_new_tokens=5, **GREEDY
    )
    assert torch.equal(explicit, default)

    # shifted positions: each step must continue from the last one given (prompt, then [BOS], then new tokens)
    prompt = torch.tensor([[8, 9, 10]])
    start = 7
    shifted = model.generate(
        input_ids=prompt, position_ids=torch.arange(start, start + 3)[None], max_new_tokens=5, **GREEDY
    )
    sequence = torch.tensor([[8, 9, 10, BOS]])
    with torch.no_grad():
        for _ in range(5):
            positions = torch.arange(start, start + sequence.shape[1])[None]
            logits = model(input_ids=sequence, position_ids=positions).logits[:, -1]
            logits[:, SPECIAL_IDS] = float("-inf")
            sequence = torch.cat([sequence, logits.argmax(-1, keepdim=True)], dim=1)
    assert torch.equal(shifted, sequence)
    assert not torch.equal(shifted, model.generate(input_ids=prompt, max_new_tokens=5, **GREEDY))


def test_caller_max_length_wins_over_a_saved_max_new_tokens():
    # lm-eval asks for `max_length = prompt + max_gen_toks`; a task-specific `max_new_tokens` in the saved
    # generation config must not override it, and the [BOS] generate adds does not eat into it
    model = tiny_arlm()
    model.generation_config.max_new_tokens = 3
    ids = torch.tensor([[8, 9, 10, 11, 12]])
    assert model.generate(input_ids=ids, **GREEDY).shape[1] == 5 + 1 + 3
    assert model.generate(input_ids=ids, max_length=5 + 7, **GREEDY).shape[1] == 5 + 1 + 7
    # a cap past the model's positions stops at the last position instead of failing mid-generation
    assert model.generate(input_ids=ids, max_length=100, **GREEDY).shape[1] == 40
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.generate(input_ids=ids, max_new_tokens=40, **GREEDY)
