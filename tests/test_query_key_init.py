"""The backbone's `tie_query_key_init`: each key projection starts as a copy of its query projection, is trained
apart from it, and a checkpoint's key projections are loaded as saved (never copied over)."""

import pytest
import torch

from xlm_hf.ilm import ILMConfig, ILMModelForInsertionLM
from xlm_hf.mdlm import MDLMConfig, MDLMForMaskedDiffusionLM

TINY = dict(vocab_size=24, hidden_size=16, num_hidden_layers=2, num_attention_heads=2, intermediate_size=32)


def query_key_pairs(model) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.self_attn.q_proj.weight, layer.self_attn.k_proj.weight) for layer in model.model.layers]


@pytest.mark.parametrize(
    "model_class, config_class", [(ILMModelForInsertionLM, ILMConfig), (MDLMForMaskedDiffusionLM, MDLMConfig)]
)
def test_keys_start_as_copies_of_the_queries_only_when_asked(model_class, config_class):
    torch.manual_seed(0)
    tied = model_class(config_class(**TINY, tie_query_key_init=True))
    assert all(torch.equal(query, key) for query, key in query_key_pairs(tied))
    # the queries themselves are initialised as usual (not left at zero or copied from elsewhere)
    assert all(float(query.std()) > 0 for query, _ in query_key_pairs(tied))
    torch.manual_seed(0)
    untied = model_class(config_class(**TINY))
    assert not any(torch.equal(query, key) for query, key in query_key_pairs(untied))
    # everything else is the initialisation the model has without the option
    untied_weights, tied_weights = untied.state_dict(), tied.state_dict()
    assert all(
        torch.equal(untied_weights[name], tied_weights[name])
        for name in untied_weights
        if "k_proj" not in name
    )


def test_query_and_key_train_apart_and_a_checkpoint_loads_as_saved(tmp_path):
    torch.manual_seed(0)
    model = ILMModelForInsertionLM(ILMConfig(**TINY, tie_query_key_init=True))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    input_ids = torch.randint(6, 24, (4, 10))
    # one step on a next-token-like objective: the two projections get different gradients
    logits = model(input_ids=input_ids).logits
    torch.nn.functional.cross_entropy(logits.flatten(0, 1), input_ids.roll(1, dims=1).flatten()).backward()
    optimizer.step()
    assert not any(torch.equal(query, key) for query, key in query_key_pairs(model))

    model.save_pretrained(tmp_path)
    loaded = ILMModelForInsertionLM.from_pretrained(tmp_path)
    for (query, key), (loaded_query, loaded_key) in zip(query_key_pairs(model), query_key_pairs(loaded)):
        assert torch.equal(loaded_query, query) and torch.equal(loaded_key, key)


def test_a_value_that_is_not_a_bool_is_refused():
    with pytest.raises((TypeError, ValueError), match="tie_query_key_init"):
        ILMConfig(**TINY, tie_query_key_init="yes")
