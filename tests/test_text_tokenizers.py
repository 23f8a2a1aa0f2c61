"""Text tokenizers: a byte-level BPE trained here (XLM's special ids, exact round trip, `xlm-hf tokenizer train`),
pretrained tokenizers in GPT-2's and BERT's own formats with the families' special tokens added, models sized to
them, and one clear error when a tokenizer and a model disagree."""

import json

import pytest
from transformers import BertTokenizerFast, GPT2TokenizerFast

from xlm_hf.cli import main
from xlm_hf.families import get_family
from xlm_hf.text_tokenizers import load_pretrained_text_tokenizer, train_bpe_tokenizer
from xlm_hf.tokenization import check_tokenizer_matches_model

TEXTS = [
    'def parse(text):\n    """Return the words of text."""\n    return text.split()',
    "Spaces  matter: two here, a tab\there, and unicode — café, naïve, 東京.",
    "The quick brown fox jumps over the lazy dog.",
] * 10
FAMILY_TOKENS = ("pad_token", "cls_token", "mask_token", "eos_token", "bos_token")


@pytest.fixture(scope="module")
def bpe():
    return train_bpe_tokenizer(TEXTS, vocab_size=400)


def test_bpe_keeps_xlm_special_ids_and_round_trips_text_exactly(bpe):
    assert [bpe.pad_token_id, bpe.cls_token_id, bpe.mask_token_id, bpe.eos_token_id, bpe.bos_token_id] == [
        0,
        1,
        2,
        3,
        4,
    ]
    assert len(bpe) <= 400
    for text in [*TEXTS[:3], "unseen words: zebra quokka ✓"]:
        ids = bpe(text, add_special_tokens=False)["input_ids"]
        assert bpe.unk_token_id not in ids  # byte-level: nothing is unknown
        assert bpe.decode(ids) == text
    laid_out = [
        bpe.bos_token_id,
        *bpe("The quick fox", add_special_tokens=False)["input_ids"],
        bpe.eos_token_id,
    ]
    assert bpe.decode(laid_out, skip_special_tokens=True) == "The quick fox"


def test_bpe_training_is_deterministic():
    first = train_bpe_tokenizer(TEXTS, vocab_size=350)
    second = train_bpe_tokenizer(TEXTS, vocab_size=350)
    assert first.get_vocab() == second.get_vocab()


def gpt2_style_folder(bpe, folder):
    """A tokenizer in GPT-2's own format (vocab.json + merges.txt, `<|endoftext|>` as BOS, EOS and UNK)."""
    state = json.loads(bpe.backend_tokenizer.to_str())["model"]
    vocab = {token: index for token, index in state["vocab"].items() if not token.startswith("[")}
    vocab = {token: i for i, token in enumerate(sorted(vocab, key=vocab.get))}
    vocab["<|endoftext|>"] = len(vocab)
    (folder / "vocab.json").write_text(json.dumps(vocab))
    merges = [" ".join(m) if isinstance(m, list) else m for m in state["merges"]]
    (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    GPT2TokenizerFast(str(folder / "vocab.json"), str(folder / "merges.txt")).save_pretrained(str(folder))
    return folder


def test_gpt2_style_tokenizer_gains_the_family_tokens(bpe, tmp_path):
    folder = gpt2_style_folder(bpe, tmp_path)
    base = len(GPT2TokenizerFast.from_pretrained(str(folder)))
    tokenizer = load_pretrained_text_tokenizer(str(folder))
    assert tokenizer.eos_token == "<|endoftext|>"  # kept, as the original keeps GPT-2's EOS
    ids = {name: getattr(tokenizer, f"{name}_id") for name in FAMILY_TOKENS}
    assert None not in ids.values() and len(set(ids.values())) == len(ids)  # BOS no longer shares the EOS id
    assert len(tokenizer) == base + 6  # [PAD] [CLS] [MASK] [BOS] [SEP] [UNK]
    model = get_family("mdlm").build_model(
        tokenizer, hidden_size=32, num_hidden_layers=1, num_attention_heads=2
    )
    assert model.config.vocab_size == len(tokenizer) and model.config.mask_token_id == tokenizer.mask_token_id
    assert model.get_input_embeddings().num_embeddings == len(tokenizer)
    text = "The quick brown fox jumps over the lazy dog."
    assert tokenizer.decode(tokenizer(text, add_special_tokens=False)["input_ids"]) == text


def test_bert_style_tokenizer_keeps_cls_and_gains_bos_and_eos(tmp_path):
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "the", "quick", "fox", ".", "##es"]
    (tmp_path / "vocab.txt").write_text("\n".join(words) + "\n")
    BertTokenizerFast(str(tmp_path / "vocab.txt")).save_pretrained(str(tmp_path))
    tokenizer = load_pretrained_text_tokenizer(str(tmp_path))
    assert tokenizer.cls_token == "[CLS]" and tokenizer.cls_token_id == 2  # BERT's own
    assert (
        tokenizer.bos_token == "[BOS]" and tokenizer.eos_token == "[EOS]" and len(tokenizer) == len(words) + 2
    )
    assert (
        tokenizer.decode(tokenizer("the quick foxes .", add_special_tokens=False)["input_ids"])
        == "the quick foxes."
    )


def test_a_missing_tokenizer_is_one_clear_error(tmp_path):
    with pytest.raises(ValueError, match="cannot be loaded.*`bpe`"):
        load_pretrained_text_tokenizer(str(tmp_path / "nothing-here"))


def test_a_tokenizer_that_does_not_fit_the_model_is_refused(bpe):
    model = get_family("arlm").build_model(bpe, hidden_size=32, num_hidden_layers=1, num_attention_heads=2)
    check_tokenizer_matches_model(bpe, model.config)
    other = train_bpe_tokenizer(TEXTS, vocab_size=320)
    with pytest.raises(ValueError, match="tokens but the model's vocabulary has") as error:
        check_tokenizer_matches_model(other, model.config)
    assert "\n" not in str(error.value)


def test_tokenizer_train_command(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(TEXTS).replace("\n    ", " "))
    out = tmp_path / "tok"
    assert (
        main(["tokenizer", "train", "--files", str(corpus), "--vocab-size", "300", "--output", str(out)]) == 0
    )
    tokenizer = load_pretrained_text_tokenizer(str(out))
    assert tokenizer.mask_token_id == 2 and len(tokenizer) <= 300
    capsys.readouterr()
    assert (
        main(["tokenizer", "train", "--files", str(corpus), "--output", str(out)]) == 2
    )  # not over a tokenizer
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not an empty folder" in err and err.count("\n") == 1
