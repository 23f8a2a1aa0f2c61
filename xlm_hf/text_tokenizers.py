"""Tokenizers for text: a pretrained one (path or Hub id) with XLM's special tokens added, or a byte-level BPE trained
here with `tokenizers` on a corpus.

Every family lays its own special tokens around the text (`[BOS]`, `[EOS]`, `[CLS]`, `[MASK]`, `[PAD]`), so a text
tokenizer must have all of them; `len(tokenizer)` (special tokens included) is the model's vocabulary size, which
`Family.build_model` reads, so the embeddings always match the tokenizer.

A trained BPE keeps XLM's fixed special ids `[PAD]=0 [CLS]=1 [MASK]=2 [EOS]=3 [BOS]=4 [SEP]=5 [UNK]=6` (as the
number tokenizers do) and is byte-level: every string encodes without `[UNK]`, and decoding gives back the text with
its spaces and newlines (`decode(encode(text)) == text`).
"""

from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import AutoTokenizer, PreTrainedTokenizerBase, PreTrainedTokenizerFast

from .tokenization import SPECIAL_TOKENS, add_xlm_special_tokens

DEFAULT_BPE_VOCAB_SIZE = 4096


def train_bpe_tokenizer(
    texts: Iterable[str],
    vocab_size: int = DEFAULT_BPE_VOCAB_SIZE,
    min_frequency: int = 2,
    model_max_length: int = 1024,
) -> PreTrainedTokenizerFast:
    """A byte-level BPE of `vocab_size` tokens (special tokens included) trained on `texts`.

    Training is deterministic: the same texts in the same order give the same merges.
    """
    if isinstance(vocab_size, bool) or not isinstance(vocab_size, int) or vocab_size < 300:
        # 256 byte symbols + 7 special tokens must fit, with room for merges
        raise ValueError(f"vocab_size must be an integer of at least 300, got {vocab_size!r}.")
    backend = Tokenizer(models.BPE())
    # No prefix space: a document's first word is encoded as written, so decode(encode(text)) == text.
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    backend.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=list(SPECIAL_TOKENS.values()),  # ids 0..6, in XLM's order
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    seen = 0

    def counted(items: Iterable[str]) -> Iterator[str]:
        nonlocal seen
        for text in items:
            seen += 1
            yield text

    backend.train_from_iterator(counted(texts), trainer=trainer)
    if seen == 0:
        raise ValueError("There is no text to train the tokenizer on.")
    return wrap_bpe(backend, model_max_length)


def wrap_bpe(backend: Tokenizer, model_max_length: int = 1024) -> PreTrainedTokenizerFast:
    """The transformers tokenizer over a trained `tokenizers` BPE, with XLM's special tokens named."""
    return PreTrainedTokenizerFast(
        tokenizer_object=backend,
        model_max_length=model_max_length,
        padding_side="left",  # prompts are left-padded for generation, as every family expects
        clean_up_tokenization_spaces=False,  # byte-level decoding already gives the exact text back
        **SPECIAL_TOKENS,
    )


def load_pretrained_text_tokenizer(name_or_path: str) -> PreTrainedTokenizerBase:
    """A pretrained tokenizer (local folder or Hub id) with whichever of XLM's special tokens it lacks added.

    GPT-2's tokenizer gains `[PAD] [CLS] [MASK] [BOS] [SEP]` (its `<|endoftext|>` stays the EOS and UNK), BERT's gains
    `[BOS] [EOS]`. The model built for it has `len(tokenizer)` embeddings, so the added tokens have rows.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    except OSError as error:
        first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"The tokenizer {name_or_path!r} cannot be loaded ({first_line}). Give a folder that holds a saved "
            "tokenizer, a Hub id that is in the local Hub cache, or `bpe` to train one on the corpus."
        ) from None
    # GPT-2 uses `<|endoftext|>` as BOS, EOS and UNK; the families need a BOS of its own (packed rows restart
    # their positions after each EOS, and the ARLM's [BOS] starts a row), so a token that shares the EOS id is
    # replaced by XLM's.
    eos_id = tokenizer.eos_token_id
    sharing = {
        name: token
        for name, token in SPECIAL_TOKENS.items()
        if name != "eos_token" and eos_id is not None and getattr(tokenizer, f"{name}_id", None) == eos_id
    }
    if sharing:
        tokenizer.add_special_tokens(sharing)
    add_xlm_special_tokens(tokenizer)
    tokenizer.padding_side = "left"
    return tokenizer


def save_tokenizer(tokenizer: PreTrainedTokenizerBase, folder: str | Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save_pretrained(str(folder))
    return folder


__all__ = [
    "DEFAULT_BPE_VOCAB_SIZE",
    "train_bpe_tokenizer",
    "wrap_bpe",
    "load_pretrained_text_tokenizer",
    "save_tokenizer",
]
