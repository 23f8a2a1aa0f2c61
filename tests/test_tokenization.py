import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from xlm_hf.arlm import ARLMConfig, ARLMForCausalLM
from xlm_hf.tokenization import (
    SPECIAL_TOKENS,
    add_xlm_special_tokens,
    build_number_tokenizer,
    build_word_level_tokenizer,
    check_tokenizer_matches_model,
)


def test_number_tokenizer_has_xlm_ids_and_pads_left(tmp_path):
    tokenizer = build_number_tokenizer(20)
    assert len(tokenizer) == 27
    ids = [getattr(tokenizer, f"{name}_id") for name in SPECIAL_TOKENS]
    assert ids == [0, 1, 2, 3, 4, 5, 6]  # PAD CLS MASK EOS BOS SEP UNK
    assert tokenizer.convert_tokens_to_ids("0") == 7 and tokenizer.convert_tokens_to_ids("19") == 26
    batch = tokenizer(["1 2 3", "4"], padding=True)
    assert batch["input_ids"] == [[8, 9, 10], [0, 0, 11]]  # no special tokens added, padded on the left
    assert tokenizer.decode([8, 4, 9], skip_special_tokens=True) == "1 2"
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded.padding_side == "left" and reloaded("1 19 7")["input_ids"] == [8, 26, 14]


def test_word_level_tokenizer_rejects_bad_vocabularies():
    with pytest.raises(ValueError, match="Duplicate"):
        build_word_level_tokenizer(["a", "a"])
    with pytest.raises(ValueError, match="whitespace"):
        build_word_level_tokenizer(["a b"])
    with pytest.raises(TypeError, match="not one string"):
        build_word_level_tokenizer("abc")  # would otherwise build the words a, b, c


@pytest.mark.parametrize("num_numbers", [-1, 0, 2.5, "20", True])
def test_number_tokenizer_needs_a_positive_count(num_numbers):
    with pytest.raises(ValueError, match="num_numbers must be a positive integer"):
        build_number_tokenizer(num_numbers)


def test_unknown_words_map_to_unk():
    tokenizer = build_word_level_tokenizer(["cat", "dog"])
    assert tokenizer("cat bird")["input_ids"] == [7, tokenizer.unk_token_id]


def gpt2_like_tokenizer() -> PreTrainedTokenizerFast:
    """A tokenizer with only an EOS token, like GPT-2 (built locally: no download)."""
    backend = Tokenizer(
        models.WordLevel({"<|endoftext|>": 0, "hello": 1, "world": 2}, unk_token="<|endoftext|>")
    )
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")


def test_add_missing_special_tokens_keeps_existing_ones():
    tokenizer = gpt2_like_tokenizer()
    added = add_xlm_special_tokens(tokenizer)
    assert added == 6  # everything but EOS
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.eos_token_id == 0
    assert tokenizer.mask_token == "[MASK]" and tokenizer.mask_token_id is not None
    assert len(tokenizer) == 9
    assert add_xlm_special_tokens(tokenizer) == 0  # idempotent


def test_added_tokens_drive_a_model_after_resizing():
    tokenizer = gpt2_like_tokenizer()
    add_xlm_special_tokens(tokenizer)
    model = ARLMForCausalLM(
        ARLMConfig(
            vocab_size=3,
            hidden_size=16,
            num_hidden_layers=1,
            num_attention_heads=2,
            bos_token_id=0,
            eos_token_id=0,
            pad_token_id=0,
            mask_token_id=None,
            cls_token_id=None,
            sep_token_id=None,
        )
    )
    with pytest.raises(ValueError, match="resize"):
        check_tokenizer_matches_model(tokenizer, model.config)
    model.resize_token_embeddings(len(tokenizer))
    assert model.config.vocab_size == len(tokenizer)
    ids = torch.tensor([[1, tokenizer.mask_token_id]])
    assert model(input_ids=ids).logits.shape == (1, 2, len(tokenizer))


def test_mismatched_special_ids_are_a_clear_error():
    tokenizer = build_number_tokenizer(20)
    config = ARLMConfig(vocab_size=27, bos_token_id=5)
    with pytest.raises(ValueError, match="bos_token_id"):
        check_tokenizer_matches_model(tokenizer, config)
