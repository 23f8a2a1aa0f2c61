"""ILM model: the common contract, the heads, the loss on a hand-computed example."""

import math

import pytest
import torch
from model_contract import ModelContract

from xlm_hf.families import get_family
from xlm_hf.ilm import ILMConfig, ILMModelForInsertionLM, ilm_loss


class TestILMContract(ModelContract):
    family = "ilm"

    def auxiliary_loss(self, model, inputs):
        return model(**inputs).stopping_logits.float().logsumexp(-1).mean()


class TestILMWithOptionsContract(TestILMContract):
    """With learned absolute positions (on in the star recipes) and the two-sided gap head, the whole contract
    (left padding, export without xlm_hf, every parameter trained) must hold too."""

    config_overrides = {"absolute_position_embeddings": True, "gap_head_right_neighbor": True}


class TestILMWithNeighborWindowContract(TestILMContract):
    config_overrides = {"neighbor_token_window": 1}
    # same exported files as TestILMContract; the isolated subprocess is the slow part
    test_exported_folder_loads_without_xlm_hf = None


def test_two_sided_gap_head_ignores_padding_on_the_right():
    """The last real token has no right neighbour: right padding must not leak into its gap's scores."""
    model = tiny_ilm(gap_head_right_neighbor=True)
    ids = torch.tensor([[1, 9, 12, 4, 15, 8]])
    alone = model(input_ids=ids).logits
    padded_ids = torch.cat([ids, torch.tensor([[11, 11]])], dim=1)
    padded_mask = torch.tensor([[1] * 6 + [0, 0]])
    padded = model(input_ids=padded_ids, attention_mask=padded_mask).logits[:, :6]
    torch.testing.assert_close(padded, alone, atol=1e-5, rtol=1e-5)
    # and the right neighbour does enter the score: without it the head gives other logits
    model.right_neighbor_proj.weight.data.zero_()
    assert not torch.allclose(model(input_ids=ids).logits[:, :-1], alone[:, :-1], atol=1e-4)


def test_absolute_positions_tell_equal_tokens_apart_by_position():
    """Without attention to distinguish them (a sequence of one repeated token), rotary alone gives every
    position the same state; absolute positions must not."""
    ids = torch.full((1, 6), 9)
    rotary_only = tiny_ilm()(input_ids=ids).logits[0]
    assert torch.allclose(rotary_only[0], rotary_only[-1], atol=1e-5)
    with_positions = tiny_ilm(absolute_position_embeddings=True)(input_ids=ids).logits[0]
    assert not torch.allclose(with_positions[0], with_positions[-1], atol=1e-3)


def tiny_ilm(**overrides) -> ILMModelForInsertionLM:
    torch.manual_seed(0)
    options = dict(
        vocab_size=27, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, max_position_embeddings=40
    )
    options.update(overrides)
    return ILMModelForInsertionLM(ILMConfig(**options)).eval()


def test_family_is_registered_with_its_parts():
    family = get_family("ilm")
    assert family.model_class is ILMModelForInsertionLM
    assert ILMConfig.model_type == "xlm-hf-ilm"
    assert "ForCausalLM" not in family.model_class.__name__
    assert set(family.collators) >= {"lm", "seq2seq", "seq2seq_pred"}
    assert ILMConfig().final_layer_norm is False


def test_loading_by_model_type_gives_our_classes(tmp_path):
    from transformers import AutoConfig, AutoModel

    model = tiny_ilm()
    model.save_pretrained(tmp_path)
    assert type(AutoConfig.from_pretrained(tmp_path)) is ILMConfig
    assert type(AutoModel.from_pretrained(tmp_path)) is ILMModelForInsertionLM


def test_generation_mixin_is_ours_and_can_generate():
    bases = [b.__name__ for b in ILMModelForInsertionLM.__bases__]
    assert any(name.endswith("GenerationMixin") for name in bases)
    from transformers import GenerationMixin

    assert not issubclass(ILMModelForInsertionLM, GenerationMixin)
    assert ILMModelForInsertionLM.can_generate()
    assert isinstance(ILMModelForInsertionLM._tied_weights_keys, dict)
    assert set(ILMModelForInsertionLM.peft_modules_to_save) == {
        "lm_head",
        "right_neighbor_proj",
        "stopping_head",
    }
    named = dict(tiny_ilm(gap_head_right_neighbor=True).named_modules())
    assert all(name in named for name in ILMModelForInsertionLM.peft_modules_to_save)


def test_stopping_head_reads_the_cls_position():
    model = tiny_ilm()
    ids = torch.tensor([[0, 0, 1, 9, 10, 4], [1, 11, 12, 13, 14, 4]])
    mask = ids.ne(0).long()
    mask[1] = 1
    out = model(input_ids=ids, attention_mask=mask)
    explicit = model(input_ids=ids, attention_mask=mask, cls_position=torch.tensor([2, 0]))
    torch.testing.assert_close(out.stopping_logits, explicit.stopping_logits)
    shifted = model(input_ids=ids, attention_mask=mask, cls_position=torch.tensor([3, 1]))
    assert not torch.allclose(out.stopping_logits, shifted.stopping_logits)
    assert out.stopping_logits.shape == (2, 2)


def test_length_head_has_one_class_per_length():
    model = tiny_ilm(stopping_head="length", num_length_classes=9)
    out = model(input_ids=torch.tensor([[1, 4, 9]]))
    assert out.stopping_logits.shape == (1, 9)
    with pytest.raises(ValueError, match="stopping_head"):
        ILMConfig(stopping_head="other")
    with pytest.raises(ValueError, match="stopping_class_weight"):
        ILMConfig(stopping_class_weight=1.5)


def hand_example():
    """Two rows, length 4, vocabulary 2. Row 0: [CLS] at column 0, columns 1-2 real, column 3 padding.
    Row 1: left padding at column 0, [CLS] at column 1, columns 2-3 real."""
    logits = torch.zeros(2, 4, 2)
    logits[0, 0] = 100.0  # [CLS]: excluded
    logits[0, 3] = 100.0  # padding: excluded
    logits[0, 1, 0] = math.log(3.0)  # row 0 partition over (1..2) x (0, 1): 3 + 1 + 1 + 1 = 6
    logits[1, 0] = 50.0  # padding
    logits[1, 1] = 50.0  # [CLS]
    attention_mask = torch.tensor([[1, 1, 1, 0], [0, 1, 1, 1]])
    cls_position = torch.tensor([0, 1])
    # row 0 lost two copies of token 0 in the gap after column 1 and token 1 after column 2 (N = 3);
    # row 1 lost nothing (N = 0)
    target_positions = torch.tensor([[1, 1, 2], [-100, -100, -100]])
    target_tokens = torch.tensor([[0, 0, 1], [-100, -100, -100]])
    stopping_logits = torch.tensor([[0.0, math.log(3.0)], [0.0, 0.0]])
    return logits, stopping_logits, attention_mask, cls_position, target_positions, target_tokens


def test_loss_on_a_hand_computed_example():
    args = hand_example()
    loss_sum, count, insertion, stopping = ilm_loss(*args, return_row_losses=True)
    assert int(count) == 2
    loss = loss_sum / count
    # row 0: target mass 2/3 on (1, 0) and 1/3 on (1 gap 2, token 1):
    # CE = -(2/3) log(3/6) - (1/3) log(1/6) = log 6 - (2/3) log 3
    expected_ce0 = math.log(6.0) - (2.0 / 3.0) * math.log(3.0)
    torch.testing.assert_close(insertion, torch.tensor([expected_ce0, 0.0]))
    # stopping: row 0 has label 1 ("continue"): -log(3/4); row 1 label 0 ("complete"): -log(1/2)
    torch.testing.assert_close(stopping, torch.tensor([math.log(4.0 / 3.0), math.log(2.0)]))
    torch.testing.assert_close(loss, torch.tensor((expected_ce0 + math.log(4 / 3) + math.log(2.0)) / 2))

    # λ, class weights [w, 1 - w] and an external denominator
    loss_sum, _, _, stopping = ilm_loss(
        *args, stopping_loss_weight=0.5, stopping_class_weight=0.25, return_row_losses=True
    )
    torch.testing.assert_close(stopping, torch.tensor([0.75 * math.log(4 / 3), 0.25 * math.log(2.0)]))
    expected = expected_ce0 + 0.5 * (0.75 * math.log(4 / 3) + 0.25 * math.log(2.0))
    torch.testing.assert_close(loss_sum, torch.tensor(expected))


def test_length_loss_uses_the_number_of_deletions():
    logits, _, mask, cls, positions, tokens = hand_example()
    stopping_logits = torch.zeros(2, 3)
    stopping_logits[0, 2] = math.log(2.0)  # N = 3 clamps to the last class (2)
    *_, stopping = ilm_loss(
        logits, stopping_logits, mask, cls, positions, tokens, stopping_head="length", return_row_losses=True
    )
    torch.testing.assert_close(stopping, torch.tensor([-math.log(2 / 4), math.log(3.0)]))


def test_forward_computes_the_same_loss_as_ilm_loss():
    model = tiny_ilm(stopping_loss_weight=0.3)
    ids = torch.tensor([[1, 4, 9, 10, 0], [1, 11, 4, 12, 13]])
    mask = ids.ne(0).long()
    positions = torch.tensor([[1, 3, -100], [2, 2, 4]])
    tokens = torch.tensor([[15, 16, -100], [17, 18, 19]])
    out = model(input_ids=ids, attention_mask=mask, target_positions=positions, target_tokens=tokens)
    loss_sum, count = ilm_loss(
        out.logits,
        out.stopping_logits,
        mask,
        torch.zeros(2, dtype=torch.long),
        positions,
        tokens,
        stopping_loss_weight=0.3,
    )
    torch.testing.assert_close(out.loss, loss_sum / count)
    out.loss.backward()
    assert model.stopping_head.classifier.weight.grad is not None
