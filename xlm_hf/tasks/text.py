"""Text tasks: corpora of documents (a `text` column), their loaders and clean-up, tokenization into `input_ids`,
and the collator wrapper that packs or pads them for any family's language-model collator.

A text task is named `<corpus>` or `<corpus>:<source>`:

| task | documents | default source | tokenizer | layout |
|---|---|---|---|---|
| `text_pydoc` | the standard library's docstrings (built in, see `text_pydoc.py`) | this Python | BPE trained on it | blocks |
| `text_lm1b` | LM1B sentences, detokenised as MDLM/SEDD do | `lm1b` | `bert-base-uncased` | pad |
| `text_owt` | OpenWebText documents | `Skylion007/openwebtext` | `gpt2` | blocks |
| `text_wikitext103` | wikitext-103 articles, detokenised | `Salesforce/wikitext` | `gpt2` | blocks |
| `text_tinystories` | TinyStories stories | `roneneldan/TinyStories` | `gpt2` | blocks |
| `text:<source>` | any local text / jsonl / parquet file or folder, or a `datasets` name | (required) | BPE | blocks |

`<source>` is a local file or folder in the corpus's own format (see each loader) or a name for
`datasets.load_dataset`. Layouts:
- `blocks`: run_clm's `group_texts`: every document followed by `[EOS]`, concatenated, cut into rows of exactly
  `block_size` tokens (the last partial row of each map batch dropped); `position_ids` restart after each `[EOS]`,
  so a row's documents do not attend to each other (the models' packed-batch support).
- `pad`: one row per document, cut into chunks of at most `block_size` tokens (each chunk its own row, documents
  never share a row), padded to the longest row of the batch. Sentence-level corpora (LM1B) use it, and the ILM
  always does: its stopping head reads one `[CLS]` per row, so it refuses packed rows. FlexMDM does too: it learns
  each row's length (how many tokens are still missing before its `[EOS]`), which packed rows would cut at random.
"""

import hashlib
import json
import math
import os
import re
import shutil
import tarfile
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
from datasets import Dataset, DatasetDict, load_dataset, load_from_disk
from transformers import PreTrainedTokenizerBase

from ..text_tokenizers import DEFAULT_BPE_VOCAB_SIZE, load_pretrained_text_tokenizer, train_bpe_tokenizer
from .cache import _check_writable_cache_dir, default_cache_dir

LAYOUTS = ("blocks", "pad")
TEXT_BLOCK_SIZE = 128
# Room for the layout tokens a family adds around a row ([BOS]/[EOS], [CLS] [BOS]); the model's positions cover
# `LAYOUT_ROOM + block_size`.
LAYOUT_ROOM = 2
HOLDOUT_SEED = 42


# --- clean-up rules -------------------------------------------------------------------------------------------


def detokenize_lm1b(text: str) -> str:
    """LM1B's tokenized sentences back to running text, by the rules MDLM and SEDD apply before tokenizing
    (`lm1b_detokenizer`): URLs, clitics, sentence-final and inner punctuation, quotes and brackets, currency."""
    for before, after in (("http : / / ", "http://"), ("https : / / ", "https://")):
        text = text.replace(before, after)
    for pattern, replacement in _LM1B_RULES:
        text = (
            re.sub(pattern, replacement, text)
            if isinstance(pattern, re.Pattern)
            else text.replace(pattern, replacement)
        )
    return text


_LM1B_RULES: list[tuple[re.Pattern | str, str]] = [
    (re.compile(r" '(\w+)"), r"'\1"),  # don 't -> don't
    (re.compile(r" (\w+) \. "), r" \1. "),
    (re.compile(r" (\w+) \.$"), r" \1."),
    (" ? ", "? "),
    (re.compile(r" \?$"), "?"),
    (" ! ", "! "),
    (re.compile(r" !$"), "!"),
    (" , ", ", "),
    (" : ", ": "),
    (" ; ", "; "),
    (" / ", "/"),
    (re.compile(r'" ([^"]+) "'), r'"\1"'),
    (re.compile(r"' ([^']+) '"), r"'\1'"),
    (re.compile(r"\( ([^()]+) \)"), r"(\1)"),
    (re.compile(r"\[ ([^\[\]]+) \]"), r"[\1]"),
    ("$ ", "$"),
    ("£ ", "£"),
]


def detokenize_wikitext(text: str) -> str:
    """wikitext's tokenization undone, by the rules of Megatron/SEDD's `wikitext_detokenizer`: `@-@` `@,@` `@.@`
    number joiners, spaces before punctuation, inside brackets and quotes, heading markers, possessives."""
    text = text.replace("s '", "s'")
    for joiner, char in ((" @-@ ", "-"), (" @,@ ", ","), (" @.@ ", ".")):
        text = text.replace(joiner, char)
    for mark in (":", ";", ".", "!", "?", ","):
        text = text.replace(f" {mark} ", f"{mark} ")
    for opening, closing in (("(", ")"), ("[", "]"), ("{", "}")):
        o, c = re.escape(opening), re.escape(closing)
        text = re.sub(rf"{o}\s*([^{c}]*?)\s*{c}", rf"{opening}\1{closing}", text)
    text = re.sub(r'"\s*([^"]*?)\s*"', r'"\1"', text)
    text = re.sub(r"'\s*([^']*?)\s*'", r"'\1'", text)
    for spaced, joined in (("= = = =", "===="), ("= = =", "==="), ("= =", "==")):
        text = text.replace(spaced, joined)
    text = text.replace(" \N{DEGREE SIGN} ", "\N{DEGREE SIGN}")
    text = text.replace(" \n", "\n").replace("\n ", "\n")
    return text.replace(" 's", "'s")


_WIKITEXT_ARTICLE_TITLE = re.compile(r"^ = [^=].* = $")


def wikitext_articles(lines: Iterable[str]) -> list[str]:
    """wikitext's lines (one paragraph or heading per line, as in `wiki.train.raw` and the `datasets` rows) joined
    into one document per article: an article starts at a top-level ` = Title = ` heading."""
    articles: list[list[str]] = []
    for line in lines:
        if _WIKITEXT_ARTICLE_TITLE.match(line.rstrip("\n")) or not articles:
            articles.append([])
        articles[-1].append(line if line.endswith("\n") else line + "\n")
    return [text for text in ("".join(article) for article in articles) if text.strip()]


# --- loaders: source -> {split: [documents]} or DatasetDict with a `text` column ----------------------------


def _files(source: Path, suffixes: tuple[str, ...]) -> list[Path]:
    if source.is_file():
        return [source]
    return sorted(p for p in source.rglob("*") if p.is_file() and p.name.endswith(suffixes))


def read_documents(path: Path, text_field: str = "text") -> list[str]:
    """Documents of one local file: `.txt` one per line (as `datasets`' text builder), `.jsonl`/`.json` and
    `.parquet` the `text_field` of each row."""
    name = path.name
    if name.endswith(".jsonl") or name.endswith(".json"):
        rows = Dataset.from_json(str(path))
    elif name.endswith(".parquet"):
        rows = Dataset.from_parquet(str(path))
    elif name.endswith(".txt") or name.endswith(".raw"):
        return [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    else:
        raise ValueError(
            f"{path} is not a .txt, .jsonl, .json or .parquet file; xlm_hf cannot read it as text."
        )
    if text_field not in rows.column_names:
        raise ValueError(f"{path} has no {text_field!r} column (it has {rows.column_names}).")
    return [text for text in rows[text_field] if text and text.strip()]


def _split_name(path: Path) -> str:
    """The split a file belongs to, from its name (`train.jsonl`, `wiki.valid.raw`, `test-00000.parquet`)."""
    name = path.name.lower()
    for split, markers in (("validation", ("valid", "dev", "heldout")), ("test", ("test",))):
        if any(marker in name for marker in markers):
            return split
    return "train"


def load_local_splits(
    source: Path, read: Callable[[Path], list[str]], suffixes: tuple[str, ...]
) -> dict[str, list[str]]:
    """Documents of every file under `source`, grouped by the split its name says (`train` by default)."""
    files = _files(source, suffixes)
    if not files:
        raise ValueError(f"{source} holds no {'/'.join(suffixes)} files to read documents from.")
    splits: dict[str, list[str]] = {}
    for path in files:
        splits.setdefault(_split_name(path), []).extend(read(path))
    return splits


def load_hub_splits(name: str, config: str | None = None, text_field: str = "text") -> DatasetDict:
    """A corpus by `datasets` name (a Hub id, or a local dataset folder / script), reduced to its text column."""
    try:
        loaded = load_dataset(name, config) if config else load_dataset(name)
    except Exception as error:  # offline, unknown name: datasets raises many kinds
        first_line = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(
            f"The dataset {name!r} cannot be loaded ({first_line}). Without network access, give a local copy in "
            f"the corpus's own format as the task's source (`<task>:/path/to/files`)."
        ) from None
    if not isinstance(loaded, DatasetDict):
        loaded = DatasetDict({"train": loaded})
    for split, dataset in loaded.items():
        if text_field not in dataset.column_names:
            raise ValueError(f"The dataset {name!r} has no {text_field!r} column in split {split!r}.")
    return DatasetDict(
        {
            split: dataset.select_columns([text_field]).rename_column(text_field, "text")
            if text_field != "text"
            else dataset.select_columns(["text"])
            for split, dataset in loaded.items()
        }
    )


def load_generic(source: str) -> DatasetDict | dict[str, list[str]]:
    path = Path(source)
    if path.exists():
        return load_local_splits(path, read_documents, (".txt", ".jsonl", ".json", ".parquet"))
    return load_hub_splits(source)


def load_lm1b(source: str) -> DatasetDict | dict[str, list[str]]:
    """LM1B: the release's folders `training-monolingual.tokenized.shuffled/news.en-000NN-of-00100` and
    `heldout-monolingual.tokenized.shuffled/news.en.heldout-000NN-of-00050` (one tokenized sentence per line), or
    the `datasets` copy (`lm1b`: `text`, train/test). The held-out sentences are the test split and, as in MDLM,
    the validation split too."""
    path = Path(source)
    if path.exists():
        files = sorted(p for p in ([path] if path.is_file() else path.rglob("news.en*")) if p.is_file())
        if not files:
            raise ValueError(f"{source} holds no LM1B files (news.en-*-of-00100, news.en.heldout-*).")
        splits: dict[str, list[str]] = {"train": [], "test": []}
        for file in files:
            split = "test" if "heldout" in str(file) else "train"
            splits[split].extend(
                line for line in file.read_text(encoding="utf-8").splitlines() if line.strip()
            )
    else:
        splits = load_hub_splits(source)
    splits = _map_documents(splits, detokenize_lm1b)
    splits["validation"] = splits["test"]
    return splits


def load_owt(source: str) -> DatasetDict | dict[str, list[str]]:
    """OpenWebText: the release's `urlsf_subset*.xz` archives (tar archives of `.txt` documents), a folder of
    extracted `.txt` documents (one document per file), or the `datasets` copy (`text`, train only). The last
    5 % of the documents (at most 100 000, as MDLM holds out) are the validation split."""
    path = Path(source)
    if path.exists():
        documents = []
        for file in _files(path, (".xz", ".tar", ".txt")):
            if file.name.endswith(".txt"):
                documents.append(file.read_text(encoding="utf-8"))
                continue
            with tarfile.open(file) as archive:
                for member in sorted(archive.getmembers(), key=lambda m: m.name):
                    handle = archive.extractfile(member) if member.isfile() else None
                    if handle is not None and member.name.endswith(".txt"):
                        documents.append(handle.read().decode("utf-8"))
        documents = [doc.strip() for doc in documents if doc.strip()]
        if not documents:
            raise ValueError(
                f"{source} holds no OpenWebText documents (.txt files or urlsf_subset*.xz archives)."
            )
        splits: DatasetDict | dict[str, list[str]] = {"train": documents}
    else:
        splits = load_hub_splits(source)
    return _hold_out_last(splits, "validation", fraction=0.05, at_most=100_000)


def load_wikitext103(source: str) -> DatasetDict | dict[str, list[str]]:
    """wikitext-103 (raw): the release's `wiki.{train,valid,test}.raw` files or the `datasets` copy
    (`Salesforce/wikitext`, config `wikitext-103-raw-v1`, one line per row); lines are joined into articles and
    detokenised."""
    path = Path(source)
    if path.exists():
        lines_per_split: dict[str, list[str]] = {}
        for file in _files(path, (".raw", ".tokens", ".txt")):
            lines_per_split.setdefault(_split_name(file), []).extend(
                file.read_text(encoding="utf-8").splitlines(keepends=True)
            )
    else:
        loaded = load_hub_splits(source, "wikitext-103-raw-v1" if source.endswith("wikitext") else None)
        lines_per_split = {split: list(dataset["text"]) for split, dataset in loaded.items()}
    return {
        split: [detokenize_wikitext(article).strip() for article in wikitext_articles(lines)]
        for split, lines in lines_per_split.items()
    }


def load_tinystories(source: str) -> DatasetDict | dict[str, list[str]]:
    """TinyStories: the release's `TinyStories*-train.txt` / `-valid.txt` files (stories separated by
    `<|endoftext|>`), or jsonl/parquet files or the `datasets` copy (`roneneldan/TinyStories`: `text`,
    train/validation)."""
    path = Path(source)
    if not path.exists():
        return _map_documents(load_hub_splits(source), str.strip)

    def read(file: Path) -> list[str]:
        if not file.name.endswith(".txt"):
            return read_documents(file)
        stories = file.read_text(encoding="utf-8").split("<|endoftext|>")
        return [story.strip() for story in stories if story.strip()]

    return load_local_splits(path, read, (".txt", ".jsonl", ".json", ".parquet"))


def _map_documents(splits, function: Callable[[str], str]):
    if isinstance(splits, DatasetDict):
        return DatasetDict(
            {
                name: dataset.map(lambda batch: {"text": [function(t) for t in batch["text"]]}, batched=True)
                for name, dataset in splits.items()
            }
        )
    return {name: [function(doc) for doc in docs] for name, docs in splits.items()}


def _hold_out_last(splits, name: str, fraction: float, at_most: int):
    """Splits off the last documents of `train` as split `name` when the corpus has no such split."""
    if name in splits:
        return splits
    train = splits["train"]
    count = max(1, min(at_most, math.ceil(len(train) * fraction)))
    if len(train) <= count:
        raise ValueError(f"The corpus has {len(train)} document(s): too few to hold out a {name} split.")
    if isinstance(splits, DatasetDict):
        return DatasetDict(
            {
                **splits,
                "train": train.select(range(len(train) - count)),
                name: train.select(range(len(train) - count, len(train))),
            }
        )
    return {**splits, "train": train[:-count], name: train[-count:]}


def load_pydoc(source: str) -> dict[str, list[str]]:
    from .text_pydoc import pydoc_corpus_splits

    return pydoc_corpus_splits()


# --- corpora and tasks ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TextCorpus:
    """A corpus: how to read it, and the tokenizer and layout its experiments use by default."""

    name: str
    description: str  # one sentence for the model card
    load: Callable[[str], Any]  # source -> {split: documents} or DatasetDict with a `text` column
    default_source: str | None
    tokenizer: str  # `bpe`, `bpe:<vocab size>`, or a pretrained tokenizer's path or Hub id
    layout: str = "blocks"


CORPORA: dict[str, TextCorpus] = {
    corpus.name: corpus
    for corpus in (
        TextCorpus(
            "text_pydoc",
            "the docstrings and pydoc topics of the Python standard library (built into every Python; "
            "`xlm-hf prepare-data text_pydoc`)",
            load_pydoc,
            "builtin",
            "bpe",
        ),
        TextCorpus(
            "text_lm1b",
            "LM1B (One Billion Word), detokenised as in MDLM",
            load_lm1b,
            "lm1b",
            "bert-base-uncased",
            "pad",
        ),
        TextCorpus("text_owt", "OpenWebText", load_owt, "Skylion007/openwebtext", "gpt2"),
        TextCorpus(
            "text_wikitext103",
            "wikitext-103 (raw), detokenised",
            load_wikitext103,
            "Salesforce/wikitext",
            "gpt2",
        ),
        TextCorpus("text_tinystories", "TinyStories", load_tinystories, "roneneldan/TinyStories", "gpt2"),
        TextCorpus("text", "a text corpus", load_generic, None, "bpe"),
    )
}


def is_text_task(name: str) -> bool:
    return isinstance(name, str) and name.split(":", 1)[0] in CORPORA


@dataclass(frozen=True)
class TextTask:
    """A text corpus from one source, with the tokenizer and layout it is trained with.

    `input_block_size` is the room for a family's layout tokens; `block_size` the text tokens per row.
    """

    name: str
    corpus: TextCorpus
    source: str
    tokenizer: str
    layout: str
    block_size: int = TEXT_BLOCK_SIZE
    input_block_size: int = LAYOUT_ROOM
    cache_dir: str | None = field(default=None, compare=False)

    @property
    def folder_name(self) -> str:
        """The prepared folder: the corpus name, and a digest of the source when it is not the default one."""
        if self.source == self.corpus.default_source:
            return self.corpus.name
        digest = hashlib.sha256(self.source.encode()).hexdigest()[:10]
        return f"{self.corpus.name}-{digest}"

    def configured(
        self,
        tokenizer: str | None = None,
        layout: str | None = None,
        cache_dir: str | None = None,
        block_size: int | None = None,
        input_block_size: int | None = None,
    ) -> "TextTask":
        """This task with an experiment's `data` options (None keeps the task's own)."""
        if layout is not None and layout not in LAYOUTS:
            raise ValueError(f"data.packing must be one of {', '.join(LAYOUTS)}, got {layout!r}.")
        if input_block_size is not None and input_block_size < LAYOUT_ROOM:
            raise ValueError(
                f"data.input_block_size of a text task is the room for layout tokens: at least {LAYOUT_ROOM}."
            )
        return replace(
            self,
            tokenizer=tokenizer or self.tokenizer,
            layout=layout or self.layout,
            cache_dir=cache_dir or self.cache_dir,
            block_size=block_size or self.block_size,
            input_block_size=input_block_size or self.input_block_size,
        )

    # preparing ------------------------------------------------------------------------------------------------

    def prepare(self, cache_dir: str | os.PathLike | None = None, overwrite: bool = False) -> Path:
        """Reads and cleans the corpus into `cache_dir/<folder_name>` (a DatasetDict with a `text` column), all or
        nothing."""
        target = Path(cache_dir or self.cache_dir or default_cache_dir()) / self.folder_name
        if target.exists() and not overwrite:
            return target
        splits = self.corpus.load(self.source)
        if not isinstance(splits, DatasetDict):
            splits = DatasetDict({name: Dataset.from_dict({"text": docs}) for name, docs in splits.items()})
        if "train" not in splits:
            raise ValueError(
                f"The source {self.source!r} of {self.name} has no train split ({list(splits)})."
            )
        splits = _hold_out_last(splits, "validation", fraction=0.05, at_most=100_000)
        if "test" not in splits:
            splits = DatasetDict({**splits, "test": splits["validation"]})
        _check_writable_cache_dir(target.parent)
        scratch = tempfile.mkdtemp(dir=target.parent, prefix=f".{self.folder_name}-")
        try:
            splits.save_to_disk(scratch)
            (Path(scratch) / "xlm_hf_text_task.json").write_text(
                json.dumps({"task": self.name, "source": self.source, "corpus": self.corpus.name}, indent=2)
            )
            if target.exists():
                shutil.rmtree(target)
            os.replace(scratch, target)
        except BaseException:
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        return target

    # tokenizer ------------------------------------------------------------------------------------------------

    def build_tokenizer(self) -> PreTrainedTokenizerBase:
        """The task's tokenizer with every special token the families need. `bpe[:N]` is trained on the train
        split once and kept next to the prepared corpus (`<prepared>/tokenizer-bpe-N`)."""
        spec = self.tokenizer
        if spec == "bpe" or spec.startswith("bpe:"):
            vocab_size = int(spec.split(":", 1)[1]) if ":" in spec else DEFAULT_BPE_VOCAB_SIZE
            folder = self.prepare() / f"tokenizer-bpe-{vocab_size}"
            if not folder.is_dir():
                train = load_from_disk(str(self.prepare()))["train"]
                tokenizer = train_bpe_tokenizer(iter(train["text"]), vocab_size=vocab_size)
                scratch = Path(tempfile.mkdtemp(dir=folder.parent, prefix=".tokenizer-"))
                try:
                    tokenizer.save_pretrained(str(scratch))
                    os.replace(scratch, folder)
                except BaseException:
                    shutil.rmtree(scratch, ignore_errors=True)
                    raise
            spec = str(folder)
        tokenizer = load_pretrained_text_tokenizer(spec)
        tokenizer.model_max_length = self.input_block_size + self.block_size
        return tokenizer

    # tokenizing -----------------------------------------------------------------------------------------------

    def tokenize(self, dataset: Dataset, tokenizer: PreTrainedTokenizerBase) -> Dataset:
        """`input_ids` rows in the task's layout (`blocks` or `pad`, see the module docstring)."""
        if len(dataset) == 0:
            raise ValueError("The dataset is empty: there is nothing to train or evaluate on.")
        if "text" not in dataset.column_names:
            raise ValueError(f"A text task needs a 'text' column; the dataset has {dataset.column_names}.")
        return tokenize_documents(dataset, tokenizer, self.block_size, self.layout)

    def lm_collator(self, family, tokenizer: PreTrainedTokenizerBase, **options) -> "TextCollator":
        return text_collator(
            family, tokenizer, self.block_size, self.layout, room=self.input_block_size, **options
        )

    def card_note(self) -> str:
        source = "" if self.source == self.corpus.default_source else f" read from `{self.source}`"
        return (
            f"`{self.name}`: {self.corpus.description}{source}, tokenized with {self.tokenizer_description()} in "
            f"rows of {self.block_size} tokens ({'packed blocks' if self.layout == 'blocks' else 'one document per row'})."
        )

    def tokenizer_description(self) -> str:
        if self.tokenizer == "bpe" or self.tokenizer.startswith("bpe:"):
            size = self.tokenizer.split(":", 1)[1] if ":" in self.tokenizer else DEFAULT_BPE_VOCAB_SIZE
            return f"a byte-level BPE of {size} tokens trained on its train split"
        return f"the `{self.tokenizer}` tokenizer (with XLM's special tokens added)"


def get_text_task(name: str) -> TextTask:
    corpus_name, _, source = name.partition(":")
    corpus = CORPORA[corpus_name]
    if corpus_name == "text_pydoc" and source:
        raise ValueError("text_pydoc is built in: it takes no source (`text_pydoc`, not `text_pydoc:...`).")
    source = source or corpus.default_source
    if not source:
        raise ValueError(
            f"Task {corpus_name!r} needs a source: `{corpus_name}:/path/to/file-or-folder` (.txt one document per "
            "line, .jsonl/.json/.parquet with a 'text' field) or `text:<datasets name>`."
        )
    return TextTask(name, corpus, source, corpus.tokenizer, corpus.layout)


# --- tokenization and layouts --------------------------------------------------------------------------------


def tokenize_documents(
    dataset: Dataset, tokenizer: PreTrainedTokenizerBase, block_size: int, layout: str
) -> Dataset:
    """Documents -> `input_ids` rows: packed `blocks` (each document + `[EOS]`, concatenated, cut into rows of
    exactly `block_size`) or `pad` (each document cut into chunks of at most `block_size` tokens)."""
    if layout not in LAYOUTS:
        raise ValueError(f"The layout must be one of {', '.join(LAYOUTS)}, got {layout!r}.")
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ValueError("The tokenizer has no EOS token: add XLM's special tokens to it.")

    def encode(batch: dict[str, list]) -> dict[str, list]:
        # documents are longer than a row on purpose (they are cut below): no "longer than the maximum" warning
        documents = tokenizer(batch["text"], add_special_tokens=False, verbose=False)["input_ids"]
        if layout == "pad":
            return {
                "input_ids": [
                    doc[i : i + block_size]
                    for doc in documents
                    if doc
                    for i in range(0, len(doc), block_size)
                ]
            }
        # run_clm's group_texts: the batch's documents joined (each closed by [EOS]), cut into full rows
        stream = [token for doc in documents if doc for token in (*doc, eos)]
        usable = (len(stream) // block_size) * block_size
        return {"input_ids": [stream[i : i + block_size] for i in range(0, usable, block_size)]}

    return dataset.map(encode, batched=True, remove_columns=dataset.column_names, desc="Tokenizing")


def positions_restarting_after(ids: torch.Tensor, boundary_id: int, head: int = 0) -> torch.Tensor:
    """`position_ids` for packed rows: 0, 1, ... restarting after each `boundary_id` (`[EOS]`) token.

    `ids` `(batch, length)` are the clean rows; `head` layout tokens precede each row's first document (the ARLM's
    `[BOS]`) and count as its start."""
    batch, length = ids.shape
    columns = torch.arange(head + length).expand(batch, -1)
    starts = torch.zeros(batch, head + length, dtype=torch.long)
    after_boundary = torch.zeros_like(starts, dtype=torch.bool)
    after_boundary[:, head + 1 :] = ids[:, :-1] == boundary_id
    starts = torch.where(after_boundary, columns, starts)
    return columns - starts.cummax(dim=1).values


@dataclass
class TextCollator:
    """A family's language-model collator, fed text rows: it lays out the family's special tokens and noise; this
    trims the columns that only hold padding (rows are padded to the longest of the batch, not to the block) and,
    for packed `blocks`, adds `position_ids` that restart after each `[EOS]`."""

    collator: Any  # the family's `lm` collator
    layout: str
    eos_token_id: int
    pad_token_id: int

    # The wrapped collator's own attributes (its `seed`, the per-batch noise position `XLMTrainer` sets, the MDLM's
    # noise schedule) are read and set through this wrapper, so the Trainer treats it as the collator itself.
    def __getattr__(self, name: str) -> Any:
        if name == "collator":  # not set yet (while unpickling in a DataLoader worker)
            raise AttributeError(name)
        return getattr(self.collator, name)

    def __setattr__(self, name: str, value: Any) -> None:
        if name in self.__dataclass_fields__:
            object.__setattr__(self, name, value)
        else:
            setattr(self.collator, name, value)

    def __call__(self, examples: list[dict[str, Any]]) -> dict[str, torch.Tensor]:
        batch = self.collator(examples)
        # the family collator pads to the block plus room for its layout tokens: drop the columns no row uses
        real = batch["attention_mask"].bool()
        width = int(real.any(dim=0).nonzero().max()) + 1 if bool(real.any()) else 1
        batch = {
            key: value[:, :width] if key in POSITIONAL_KEYS and value.dim() == 2 else value
            for key, value in batch.items()
        }
        if self.layout == "blocks":
            clean = torch.tensor([list(example["input_ids"]) for example in examples], dtype=torch.long)
            head = width - clean.shape[1]
            if head < 0 or not bool(batch["attention_mask"].bool().all()):
                raise ValueError(
                    "Packed rows must all fill the block; tokenize them with the `blocks` layout."
                )
            batch["position_ids"] = positions_restarting_after(clean, self.eos_token_id, head)
        return batch


# Per-position batch fields (the others are per row, or, like the ILM's targets, have widths of their own).
POSITIONAL_KEYS = (
    "input_ids",
    "attention_mask",
    "labels",
    "position_ids",
    # FlexMDM's per-token noise (its collator draws the insertion and unmasking times)
    "insertion_noise",
    "unmasking_noise",
)


def text_collator(
    family,
    tokenizer: PreTrainedTokenizerBase,
    block_size: int,
    layout: str,
    room: int = LAYOUT_ROOM,
    **options,
) -> TextCollator:
    """The family's `lm` collator set up for text rows of `block_size` tokens in `layout`.

    Packed rows already hold their `[EOS]` separators, so the collator adds none (nor `[BOS]` where it may choose;
    the ARLM always starts a row with `[BOS]`). Padded rows get the family's usual `[EOS]`, and padding is neither
    attended nor predicted (`loss_on_padding=False`). The ILM takes only padded rows.
    """
    lm_class = family.collators["lm"]
    fields = {f.name for f in lm_class.__dataclass_fields__.values()}
    unknown = sorted(set(options) - fields)
    if unknown:
        raise ValueError(
            f"Unknown option(s) {unknown} for {lm_class.__name__}; it takes {sorted(fields - {'tokenizer'})}."
        )
    if layout == "blocks" and "add_eos" not in fields:
        raise ValueError(
            f"The {family.name.upper()} does not take packed rows (its collator lays out one sequence per row): "
            "set data.packing=pad."
        )
    settings: dict[str, Any] = {"loss_on_padding": False} if "loss_on_padding" in fields else {}
    if layout == "blocks":
        settings.update({k: False for k in ("add_bos", "add_eos") if k in fields})
    settings.update(options)
    collator = lm_class(tokenizer=tokenizer, block_size=block_size + room, **settings)
    return TextCollator(collator, layout, tokenizer.eos_token_id, tokenizer.pad_token_id)


__all__ = [
    "CORPORA",
    "LAYOUTS",
    "TextCorpus",
    "TextTask",
    "TextCollator",
    "get_text_task",
    "is_text_task",
    "detokenize_lm1b",
    "detokenize_wikitext",
    "wikitext_articles",
    "tokenize_documents",
    "positions_restarting_after",
    "text_collator",
]
