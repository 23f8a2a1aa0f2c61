"""Tokenizers: a word-level builder for closed vocabularies and a helper that adds XLM's special tokens.

Every family relies on the same seven special tokens. Closed-vocabulary tasks (star graphs, numbers) use a
`PreTrainedTokenizerFast` over a `tokenizers` WordLevel model with XLM's fixed ids
`[PAD]=0 [CLS]=1 [MASK]=2 [EOS]=3 [BOS]=4 [SEP]=5 [UNK]=6`, so checkpoints match the original layout.
"""

from collections.abc import Iterable

from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerBase, PreTrainedTokenizerFast

SPECIAL_TOKENS: dict[str, str] = {
    "pad_token": "[PAD]",
    "cls_token": "[CLS]",
    "mask_token": "[MASK]",
    "eos_token": "[EOS]",
    "bos_token": "[BOS]",
    "sep_token": "[SEP]",
    "unk_token": "[UNK]",
}


def build_word_level_tokenizer(words: Iterable[str], model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """A whitespace-split, word-level tokenizer over `words` with XLM's special tokens at ids 0..6.

    Prompts are padded on the left (as every family's `generate` expects) and no special tokens are added
    by `__call__`: each family lays out its own `[BOS]`/`[CLS]` around the prompt.
    """
    if isinstance(
        words, (str, bytes)
    ):  # a string is iterable too, but its characters are not the words meant
        raise TypeError(
            f"words must be a list of vocabulary words, not one string ({words!r}); split it first."
        )
    vocab: dict[str, int] = {}
    for token in SPECIAL_TOKENS.values():
        vocab[token] = len(vocab)
    for word in words:
        if word in vocab:
            raise ValueError(f"Duplicate word {word!r} in the vocabulary.")
        if not word or any(ch.isspace() for ch in word):
            raise ValueError(f"Vocabulary words must be non-empty and contain no whitespace, got {word!r}.")
        vocab[word] = len(vocab)

    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token=SPECIAL_TOKENS["unk_token"]))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    # WordLevel has no decoder of its own; joining with spaces inverts WhitespaceSplit.
    backend.decoder = decoders.WordPiece(prefix="##", cleanup=False)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=model_max_length,
        padding_side="left",
        truncation_side="left",
        clean_up_tokenization_spaces=False,
        **SPECIAL_TOKENS,
    )
    return tokenizer


def build_number_tokenizer(num_numbers: int, model_max_length: int = 512) -> PreTrainedTokenizerFast:
    """Tokens "0" .. str(num_numbers - 1) after the special tokens (star_easy: 20 numbers, 27 ids)."""
    if isinstance(num_numbers, bool) or not isinstance(num_numbers, int) or num_numbers < 1:
        raise ValueError(f"num_numbers must be a positive integer, got {num_numbers!r}.")
    return build_word_level_tokenizer([str(i) for i in range(num_numbers)], model_max_length=model_max_length)


def add_xlm_special_tokens(tokenizer: PreTrainedTokenizerBase) -> int:
    """Adds whichever of XLM's special tokens `tokenizer` lacks (e.g. `[MASK]` for GPT-2); returns how many.

    Existing special tokens are kept (BERT's `[CLS]`, GPT-2's `<|endoftext|>` as EOS). Resize the model's
    embeddings afterwards (`model.resize_token_embeddings(len(tokenizer))`) when the count is positive.
    """
    missing = {
        name: token for name, token in SPECIAL_TOKENS.items() if getattr(tokenizer, name, None) is None
    }
    if not missing:
        return 0
    return tokenizer.add_special_tokens(missing)


def check_tokenizer_matches_model(tokenizer: PreTrainedTokenizerBase, config) -> None:
    """One clear error when a tokenizer cannot drive a model: another vocabulary size or other special ids.

    The sizes must be equal. A larger tokenizer has ids past the embedding; a smaller one lets the model generate
    ids the tokenizer lacks, which vanish from the decoded text. (Vocabularies padded to a round size are not made
    by xlm_hf; resize such a model to its tokenizer.)
    """
    if len(tokenizer) != config.vocab_size:
        if len(tokenizer) > config.vocab_size:
            consequence = "its ids past the model's vocabulary cannot be embedded"
        else:
            consequence = (
                f"the model can generate ids {len(tokenizer)}..{config.vocab_size - 1}, which the tokenizer lacks "
                "and which would vanish from the text"
            )
        raise ValueError(
            f"The tokenizer has {len(tokenizer)} tokens but the model's vocabulary has {config.vocab_size}: "
            f"{consequence}. Use the tokenizer saved with this checkpoint, or resize the model to the tokenizer "
            "with model.resize_token_embeddings(len(tokenizer)) (new rows need training)."
        )
    for name in ("pad_token_id", "bos_token_id", "eos_token_id", "mask_token_id", "cls_token_id"):
        model_id = getattr(config, name, None)
        tokenizer_id = getattr(tokenizer, name, None)
        if model_id is not None and tokenizer_id is not None and model_id != tokenizer_id:
            raise ValueError(
                f"The tokenizer's {name}={tokenizer_id} differs from the model's {name}={model_id}: "
                "use the tokenizer saved with this checkpoint."
            )


__all__ = [
    "SPECIAL_TOKENS",
    "build_word_level_tokenizer",
    "build_number_tokenizer",
    "add_xlm_special_tokens",
    "check_tokenizer_matches_model",
]
