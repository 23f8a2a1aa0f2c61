"""What transformers users expect of every family's forward, beyond transformers' common tests
(tests/test_transformers_common.py): tracing with `torch.export` and `torch.compile(fullgraph=True)`, the
`config.output_*` / `return_dict` defaults, SDPA's warning for attention weights, and `shift_labels`."""

import pytest
import torch
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging as hf_logging
from xlm_hf.modeling.configuration_arlm import ARLMConfig
from xlm_hf.modeling.configuration_ilm import ILMConfig
from xlm_hf.modeling.configuration_mdlm import MDLMConfig
from xlm_hf.modeling.configuration_mlm import MLMConfig
from xlm_hf.modeling.modeling_arlm import ARLMForCausalLM
from xlm_hf.modeling.modeling_ilm import ILMModelForInsertionLM
from xlm_hf.modeling.modeling_mdlm import MDLMForMaskedDiffusionLM
from xlm_hf.modeling.modeling_mlm import MLMForMaskedLM

FAMILIES = {
    "arlm": (ARLMConfig, ARLMForCausalLM, {"use_cache": False}),
    "mlm": (MLMConfig, MLMForMaskedLM, {}),
    "mdlm": (MDLMConfig, MDLMForMaskedDiffusionLM, {"zero_init_output": False, "time_embedding_dim": 16}),
    "ilm": (ILMConfig, ILMModelForInsertionLM, {}),
}


def tiny(family: str, **overrides):
    config_class, model_class, options = FAMILIES[family]
    torch.manual_seed(0)
    config = config_class(
        vocab_size=27,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=32,
        **{**options, **overrides},
    )
    return model_class(config).eval()


def inputs_for(family: str) -> dict:
    """Two left-padded rows in the family's layout."""
    input_ids = torch.tensor([[0, 0, 9, 12, 4, 2, 15, 2], [8, 11, 13, 9, 4, 2, 16, 10]])
    if family == "ilm":
        input_ids = torch.tensor([[0, 0, 1, 4, 12, 9, 15, 10], [1, 4, 13, 9, 20, 11, 16, 10]])
    inputs = {"input_ids": input_ids, "attention_mask": input_ids.ne(0).long()}
    if family == "mdlm":
        inputs["noise_level"] = torch.tensor([0.7, 2.5])
    return inputs


@pytest.mark.parametrize("family", list(FAMILIES))
def test_torch_export_of_forward_gives_the_eager_logits(family):
    model = tiny(family)
    inputs = inputs_for(family)
    with torch.no_grad():
        expected = model(**inputs).logits
    program = torch.export.export(model, args=(), kwargs=inputs, strict=False)
    exported = program.module()(**inputs).logits
    torch.testing.assert_close(exported, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_torch_compile_fullgraph_of_forward(family):
    """One graph, no breaks (the host-side input checks are eager-only). The `eager` backend keeps this fast: it
    traces exactly as inductor would, without generating kernels."""
    torch._dynamo.reset()
    model = tiny(family)
    inputs = inputs_for(family)
    with torch.no_grad():
        expected = model(**inputs).logits
        compiled = torch.compile(model, fullgraph=True, backend="eager")
        torch.testing.assert_close(compiled(**inputs).logits, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_clear_input_errors_stay_in_eager_mode(family):
    model = tiny(family)
    inputs = inputs_for(family)
    inputs["input_ids"][1, 3] = 99
    with pytest.raises(ValueError, match="outside the model's vocabulary"):
        model(**inputs)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_config_output_flags_and_return_dict_are_the_defaults(family):
    model = tiny(family, attn_implementation="eager")
    inputs = inputs_for(family)
    model.config.output_hidden_states = True
    model.config.output_attentions = True
    with torch.no_grad():
        outputs = model(**inputs)
    assert len(outputs.hidden_states) == model.config.num_hidden_layers + 1
    assert len(outputs.attentions) == model.config.num_hidden_layers
    assert outputs.attentions[0].shape == (2, 2, 8, 8)
    with torch.no_grad():
        quiet = model(**inputs, output_hidden_states=False, output_attentions=False)  # the keyword wins
    assert quiet.hidden_states is None and quiet.attentions is None
    model.config.return_dict = False
    with torch.no_grad():
        as_tuple = model(**inputs)
    assert isinstance(as_tuple, tuple)
    torch.testing.assert_close(as_tuple[0], outputs.logits)


@pytest.mark.parametrize("family", ["arlm", "ilm"])
def test_sdpa_asked_for_attention_weights_warns_as_transformers_models_do(family):
    model = tiny(family)
    assert model.config._attn_implementation == "sdpa"
    hf_logging.get_logger("transformers").warning_once.cache_clear()  # warning_once may have fired earlier
    logger = hf_logging.get_logger("transformers.integrations.sdpa_attention")
    with CaptureLogger(logger) as captured, torch.no_grad():
        outputs = model(**inputs_for(family), output_attentions=True)
    assert "does not support `output_attentions=True`" in captured.out
    assert len(outputs.attentions) == model.config.num_hidden_layers  # one (empty) entry per layer, as llama
    # and the config refuses the combination outright, as for every transformers model
    with pytest.raises(ValueError, match="attn_implementation"):
        model.config.output_attentions = True


def test_arlm_loss_honours_shift_labels():
    model = tiny("arlm")
    inputs = inputs_for("arlm")
    labels = inputs["input_ids"].masked_fill(inputs["attention_mask"].eq(0), -100)
    shift_labels = torch.cat([labels[:, 1:], torch.full_like(labels[:, :1], -100)], dim=1)
    with torch.no_grad():
        from_labels = model(**inputs, labels=labels).loss
        from_shift_labels = model(**inputs, shift_labels=shift_labels).loss
        torch.testing.assert_close(from_shift_labels, from_labels)
        # with both, shift_labels decide: changing labels does nothing, changing shift_labels moves the loss
        other = shift_labels.clone()
        other[other.ne(-100)] = 7
        assert model(**inputs, labels=labels.flip(-1), shift_labels=shift_labels).loss == from_shift_labels
        assert model(**inputs, labels=labels, shift_labels=other).loss != from_shift_labels
