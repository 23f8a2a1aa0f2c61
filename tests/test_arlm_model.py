import pytest
import torch
from generation_contract import SPECIAL_IDS, GenerationContract
from model_contract import ModelContract

from xlm_hf.arlm import ARLMConfig, ARLMForCausalLM


class TestARLMContract(ModelContract):
    family = "arlm"


def tiny_arlm(**overrides) -> ARLMForCausalLM:
    torch.manual_seed(0)
    options = dict(
        vocab_size=27, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=40
    )
    options.update(overrides)
    return ARLMForCausalLM(ARLMConfig(**options)).eval()


def left_padded_batch():
    rows = [[8, 9, 10, 11, 12], [13, 14], [15, 16, 17]]
    width = max(map(len, rows))
    ids = torch.tensor([[0] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return rows, ids, mask


def test_greedy_generation_with_cache_equals_without_cache():
    model = tiny_arlm()
    _, ids, mask = left_padded_batch()
    with_cache = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    without = model.generate(
        input_ids=ids, attention_mask=mask, max_new_tokens=8, do_sample=False, use_cache=False
    )
    assert model.generation_config.use_cache  # caching is on by default
    assert torch.equal(with_cache, without)


def test_generate_appends_bos_once():
    model = tiny_arlm()
    ids = torch.tensor([[8, 9, 10]])
    out = model.generate(input_ids=ids, max_new_tokens=2, do_sample=False)
    assert out[0, 3].item() == model.config.bos_token_id
    out_with_bos = model.generate(input_ids=torch.tensor([[8, 9, 10, 4]]), max_new_tokens=2, do_sample=False)
    assert torch.equal(out, out_with_bos)


@pytest.mark.parametrize(
    "options",
    [
        {"do_sample": True, "top_k": 3, "temperature": 0.7},
        {"do_sample": True, "top_p": 0.8},
        {"num_beams": 3, "do_sample": False},
    ],
)
def test_hf_decoding_strategies_run_and_keep_the_prompt(options):
    model = tiny_arlm()
    _, ids, mask = left_padded_batch()
    torch.manual_seed(0)
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=5, **options)
    assert out.shape[0] == ids.shape[0]
    assert torch.equal(out[:, : ids.shape[1]], ids)


def test_generation_stops_at_eos():
    model = tiny_arlm()
    with torch.no_grad():  # make EOS the only likely token
        model.lm_head.weight.zero_()
        model.lm_head.weight[model.config.eos_token_id] = 1.0
        model.model.norm.weight.zero_()  # the final norm then outputs its bias: all ones
        model.model.norm.bias.fill_(1.0)
    out = model.generate(input_ids=torch.tensor([[8, 9]]), max_new_tokens=10, do_sample=False)
    assert out[0, -1].item() == model.config.eos_token_id
    assert out.shape[1] == 2 + 1 + 1  # prompt, [BOS], [EOS]


def test_prompt_longer_than_the_model_allows_is_one_clear_error():
    model = tiny_arlm(max_position_embeddings=8)
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model.generate(input_ids=torch.tensor([[8] * 6]), max_new_tokens=5)


def test_right_padded_prompts_are_rejected_with_a_hint():
    model = tiny_arlm()
    with pytest.raises(ValueError, match="padding_side = 'left'"):
        model.generate(
            input_ids=torch.tensor([[8, 9, 0]]), attention_mask=torch.tensor([[1, 1, 0]]), max_new_tokens=2
        )


def test_labels_give_the_shifted_cross_entropy():
    model = tiny_arlm()
    ids = torch.tensor([[4, 8, 9, 3]])
    labels = torch.tensor([[-100, 8, 9, 3]])
    out = model(input_ids=ids, labels=labels)
    log_probs = out.logits[0, :-1].log_softmax(-1)
    expected = -(log_probs[0, 8] + log_probs[1, 9] + log_probs[2, 3]) / 3
    torch.testing.assert_close(out.loss, expected)


def test_tied_embeddings_share_the_matrix(tmp_path):
    model = tiny_arlm(tie_word_embeddings=True)
    assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    model.save_pretrained(tmp_path)
    reloaded = ARLMForCausalLM.from_pretrained(tmp_path)
    assert reloaded.lm_head.weight.data_ptr() == reloaded.model.embed_tokens.weight.data_ptr()


def test_partial_rotary_dimension_for_small_heads():
    model = tiny_arlm(hidden_size=24, num_attention_heads=2, rotary_dim=4)
    assert model.config.head_dim == 12
    out = model(input_ids=torch.tensor([[8, 9, 10]]))
    assert torch.isfinite(out.logits).all()
    with pytest.raises(ValueError, match="rotary_dim"):
        ARLMConfig(hidden_size=24, num_attention_heads=2, rotary_dim=14)


class TestARLMGenerationContract(GenerationContract):
    family = "arlm"
    generation_options = {"do_sample": False, "suppress_tokens": SPECIAL_IDS}  # no [EOS]: fixed lengths
