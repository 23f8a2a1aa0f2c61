"""What the non-autoregressive decoders share (modeling/generation_utils.py): the config base, option names and their
deprecated aliases, the `new_token_mask` answer, logits processors for ILM, the vocabulary check, export."""

import json
import logging as std_logging

import pytest
import torch
from transformers import GenerationConfig, LogitsProcessor, LogitsProcessorList
from transformers.testing_utils import CaptureLogger
from transformers.utils import logging
from xlm_hf.modeling import generation_utils
from xlm_hf.modeling.configuration_mlm import MLMConfig
from xlm_hf.modeling.generation_mdlm import MDLMGenerationConfig
from xlm_hf.modeling.generation_mlm import MLMGenerationConfig
from xlm_hf.modeling.generation_utils import (
    XLMGenerationConfig,
    generated_tokens,
    new_token_mask,
    pad_left,
)
from xlm_hf.modeling.modeling_mlm import MLMForMaskedLM

from xlm_hf.export import install_pipelines
from xlm_hf.ilm import ILMConfig, ILMGenerationConfig, ILMModelForInsertionLM

CLS, MASK, BOS, PAD = 1, 2, 4, 0
TINY = dict(
    vocab_size=27,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=64,
    max_position_embeddings=40,
)


def perturbed(model):
    with torch.no_grad():  # random, non-degenerate logits (zero-initialised heads would make them flat)
        for param in model.parameters():
            param.add_(torch.randn_like(param) * 0.5)
    return model.eval()


@pytest.fixture(scope="module")
def ilm():
    torch.manual_seed(0)
    return perturbed(ILMModelForInsertionLM(ILMConfig(**TINY)))


@pytest.fixture(scope="module")
def mlm():
    torch.manual_seed(0)
    return perturbed(MLMForMaskedLM(MLMConfig(**TINY)))


def test_every_decoder_config_is_the_shared_base_and_never_built_from_a_model_config():
    for config_class in (MLMGenerationConfig, MDLMGenerationConfig, ILMGenerationConfig):
        assert issubclass(config_class, XLMGenerationConfig)
        with pytest.raises(NotImplementedError):
            config_class.from_model_config(MLMConfig(**TINY))
        with pytest.raises(ValueError, match="Unknown generation arguments"):
            config_class(num_beams=2)


def test_old_option_names_are_aliases_with_one_deprecation_warning(ilm):
    prompt = torch.tensor([[9, 10, 11]])
    options = dict(input_ids=prompt, min_new_tokens=3)
    new = ilm.generate(**options, num_steps=3, output_history=True, suppress_tokens=[5, 6])
    std_logging.Logger.warning_once.cache_clear()  # forget warnings given before this test
    with CaptureLogger(logging.get_logger(generation_utils.__name__)) as captured:
        old = ilm.generate(**options, max_steps=3, return_history=True, suppress_token_ids=[5, 6])
        ilm.generate(input_ids=prompt, max_steps=2)  # said once per name, not per call
    assert old.num_steps == new.num_steps == 3
    for field in ("sequences", "history_positions", "history_tokens", "new_token_mask"):
        assert torch.equal(getattr(old, field), getattr(new, field))
    text = captured.out
    assert text.count("`max_steps` is deprecated: use `num_steps`") == 1
    assert "`return_history` is deprecated" in text and "`suppress_token_ids` is deprecated" in text
    with pytest.raises(ValueError, match="give only `num_steps`"):
        ilm.generate(input_ids=prompt, max_steps=2, num_steps=3)


def test_generation_config_saved_with_the_old_names_loads_and_generates_the_same(ilm, tmp_path):
    # a generation_config.json written before the rename
    folder = tmp_path / "old"
    ilm.save_pretrained(folder)
    old_fields = {
        "max_steps": 4,
        "return_history": True,
        "suppress_token_ids": [3, 5],
        "min_new_tokens": 4,
    }
    (folder / "generation_config.json").write_text(json.dumps(old_fields))

    loaded = ILMModelForInsertionLM.from_pretrained(folder).eval()
    config = loaded.generation_config
    assert type(config) is ILMGenerationConfig
    assert (config.num_steps, config.output_history, config.suppress_tokens) == (4, True, [3, 5])
    prompt = torch.tensor([[9, 10, 11]])
    reference = ilm.generate(
        input_ids=prompt, num_steps=4, output_history=True, suppress_tokens=[3, 5], min_new_tokens=4
    )
    out = loaded.generate(input_ids=prompt)
    assert out.num_steps == 4 and torch.equal(out.sequences, reference.sequences)
    assert torch.equal(out.history_tokens, reference.history_tokens)
    # saved again, it uses the current names
    config.save_pretrained(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / "generation_config.json").read_text())
    assert saved["num_steps"] == 4 and "max_steps" not in saved and "return_history" not in saved


def test_a_plain_generation_config_keeps_the_fields_the_family_knows(ilm, mlm):
    plain = GenerationConfig(max_new_tokens=3, do_sample=False)
    out = ilm.generate(input_ids=torch.tensor([[9, 10]]), generation_config=plain, min_new_tokens=3)
    assert int(out.new_token_mask.sum()) == 3
    masked = mlm.generate(input_ids=torch.tensor([[9, 10]]), generation_config=plain)
    assert int(masked.new_token_mask.sum()) == 3


def test_masked_new_token_mask_marks_every_generated_position(mlm):
    # a prompt with its own [MASK] (filled) and a left-padded row; 3 tokens appended after [BOS]
    ids = torch.tensor([[9, MASK, 11], [PAD, 12, 13]])
    out = mlm.generate(input_ids=ids, attention_mask=ids.ne(PAD).long(), max_new_tokens=3)
    expected = torch.zeros_like(out.sequences, dtype=torch.bool)
    expected[0, 1] = True
    expected[:, out.output_start_idx :] = True
    assert torch.equal(out.new_token_mask, expected)
    assert torch.equal(new_token_mask(out), expected)
    # the generated tokens, in reading order, padded to the width asked for
    tokens = generated_tokens(out, 5, PAD)
    assert tokens[0, :4].tolist() == [int(out.sequences[0, 1]), *out.sequences[0, -3:].tolist()]
    assert tokens[1].tolist() == [*out.sequences[1, -3:].tolist(), PAD, PAD]


def test_ilm_new_token_mask_agrees_with_the_insertion_history(ilm):
    ids = torch.tensor([[PAD, 9, 10], [11, MASK, 12]])  # a seq2seq prompt and an infilling one
    out = ilm.generate(
        input_ids=ids,
        attention_mask=ids.ne(PAD).long(),
        max_new_tokens=4,
        min_new_tokens=4,
        output_history=True,
    )
    for row in range(2):
        # replaying the history: the inserted indices among the row's real tokens
        labels = [False] * int(out.initial_sequences[row].ne(PAD).sum())
        for position in out.history_positions[row].tolist():
            if position >= 0:
                labels.insert(position, True)
        real = out.sequences[row].ne(PAD)
        assert out.new_token_mask[row][real].tolist() == labels
        assert not bool(out.new_token_mask[row][~real].any())
    assert out.new_token_mask.sum(-1).tolist() == [4, 4]


def test_autoregressive_outputs_are_new_after_the_prompt_columns():
    sequences = torch.tensor([[5, 6, 7, 8], [0, 6, 9, 9]])
    mask = new_token_mask(sequences, torch.tensor([[5, 6], [0, 6]]))
    assert mask.tolist() == [[False, False, True, True]] * 2
    assert generated_tokens(sequences, 3, PAD, torch.tensor([[5, 6], [0, 6]])).tolist() == [
        [7, 8, 0],
        [9, 9, 0],
    ]


class OnlyToken(LogitsProcessor):
    def __init__(self, token: int):
        self.token = token
        self.calls = 0

    def __call__(self, input_ids, scores):
        self.calls += 1
        assert input_ids.shape[0] == scores.shape[0]
        forced = torch.full_like(scores, float("-inf"))
        forced[:, self.token] = 0.0
        return forced


@pytest.mark.parametrize("do_sample", [False, True])
def test_ilm_takes_logits_processors_before_the_token_choice(ilm, do_sample):
    processor = OnlyToken(17)
    processors = LogitsProcessorList([processor])
    out = ilm.generate(
        input_ids=torch.tensor([[9, 10]]),
        max_new_tokens=3,
        min_new_tokens=3,
        do_sample=do_sample,
        top_k=5 if do_sample else None,
        seed=0,
        logits_processor=processors,
    )
    assert out.sequences[out.new_token_mask].tolist() == [17, 17, 17]
    assert processor.calls == 3 and len(processors) == 1  # the caller's list is left as it was


def test_out_of_vocabulary_ids_are_one_clear_error_for_every_decoder(ilm, mlm):
    for model in (ilm, mlm):
        with pytest.raises(ValueError, match="outside the model's vocabulary"):
            model.generate(input_ids=torch.tensor([[9, 99]]), max_new_tokens=2)


def test_pad_left_right_aligns_rows():
    ids, mask = pad_left([[7, 8, 9], [5], []], pad_id=PAD)
    assert ids.tolist() == [[7, 8, 9], [0, 0, 5], [0, 0, 0]]
    assert mask.tolist() == [[True] * 3, [False, False, True], [False] * 3]


def test_exported_pipelines_carry_the_generation_utils_they_import(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    assert install_pipelines(tmp_path, "mlm")
    assert (tmp_path / "pipeline_xlm.py").exists() and (tmp_path / "generation_utils.py").exists()


@pytest.mark.parametrize("old, new", [("after_prompt", "seq2seq"), ("before_prompt", "lm"), ("none", "none")])
def test_bos_position_is_the_deprecated_spelling_of_prompt_layout_with_its_values_translated(
    mlm, tmp_path, old, new
):
    prompt = torch.tensor([[9, 10, 11]])
    options = dict(input_ids=prompt, max_new_tokens=3, num_steps=3)
    std_logging.Logger.warning_once.cache_clear()
    with CaptureLogger(logging.get_logger(generation_utils.__name__)) as captured:
        by_old_name = mlm.generate(**options, bos_position=old)
    assert f"bos_position={old!r} is prompt_layout={new!r}" in captured.out
    assert torch.equal(by_old_name.sequences, mlm.generate(**options, prompt_layout=new).sequences)
    with pytest.raises(ValueError, match="give only `prompt_layout`"):
        mlm.generate(**options, bos_position=old, prompt_layout=new)

    # a model config.json written before the rename loads with the translated value and is saved with the new name
    assert MLMConfig(**TINY, bos_position=old).prompt_layout == new
    folder = tmp_path / "old"
    mlm.save_pretrained(folder)
    config_file = folder / "config.json"
    fields = json.loads(config_file.read_text())
    fields.pop("prompt_layout")
    config_file.write_text(json.dumps({**fields, "bos_position": old}))
    loaded = MLMForMaskedLM.from_pretrained(folder)
    assert loaded.config.prompt_layout == new
    loaded.save_pretrained(tmp_path / "new")
    saved = json.loads((tmp_path / "new" / "config.json").read_text())
    assert saved["prompt_layout"] == new and "bos_position" not in saved
