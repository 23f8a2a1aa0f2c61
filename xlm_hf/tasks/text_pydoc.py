"""`text_pydoc`: a text corpus that every machine with Python has, so the text path runs with no download.

Documents are read, never imported (importing stdlib modules can print, open windows or start threads):
- the docstring of every module, class and function in the standard library's `.py` files (parsed with `ast`;
  test suites, `idlelib`, `lib2to3`, `turtledemo`, `ensurepip` and `site-packages` skipped);
- the documentation topics `help()` shows (`pydoc_data.topics`: the language reference's sections).

Each is cleaned (`inspect.cleandoc`: common indentation and blank edges removed; lines' trailing spaces dropped),
kept when it has at least `MIN_WORDS` words, and deduplicated on its whitespace-normalised text (the first copy in
file order is kept). The documents, sorted by their text's SHA-256, are shuffled with a fixed seed and split
90 / 5 / 5 into train / validation / test, whole documents to one split.

Deterministic: the same Python version gives the same corpus on every machine (it depends only on the standard
library's sources, read in sorted order). Patch releases of one minor version change a few docstrings, so the
corpus is identical across machines with the same Python minor *and* patch version and nearly identical within a
minor version; `corpus_fingerprint()` tells. Python 3.11.7: 5 821 documents (5 239 / 291 / 291), 2.0 M characters.
"""

import ast
import hashlib
import inspect
import os
import random
import sys
import sysconfig
from pathlib import Path

MIN_WORDS = 8
SEED = 42
SPLIT_FRACTIONS = {"train": 0.9, "validation": 0.05, "test": 0.05}
SKIPPED_DIRECTORIES = {
    "test",
    "tests",
    "idle_test",
    "idlelib",
    "lib2to3",
    "turtledemo",
    "ensurepip",
    "site-packages",
    "__pycache__",
}


def stdlib_folder() -> Path:
    return Path(sysconfig.get_paths()["stdlib"])


def _source_files(root: Path) -> list[Path]:
    files = []
    for folder, directories, names in os.walk(root):
        directories[:] = sorted(
            d for d in directories if d not in SKIPPED_DIRECTORIES and not d.startswith(".")
        )
        files.extend(Path(folder) / name for name in sorted(names) if name.endswith(".py"))
    return sorted(files, key=lambda path: path.relative_to(root).as_posix())


def docstrings_of(source: str) -> list[str]:
    """The module's, classes' and functions' docstrings of one source file, in file order."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):  # a file for another Python version (lib2to3 fixtures and the like)
        return []
    nodes = [
        tree,
        *(n for n in ast.walk(tree) if isinstance(n, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))),
    ]
    nodes.sort(key=lambda node: getattr(node, "lineno", 0))
    texts = []
    for node in nodes:
        text = ast.get_docstring(node, clean=False)
        if text:
            texts.append(text)
    return texts


def clean_document(text: str) -> str:
    text = inspect.cleandoc(text.replace("\r\n", "\n"))
    return "\n".join(line.rstrip() for line in text.splitlines()).strip()


def pydoc_documents() -> list[str]:
    """Every cleaned, deduplicated document, in the order they were read."""
    raw: list[str] = []
    root = stdlib_folder()
    for path in _source_files(root):
        try:
            raw.extend(docstrings_of(path.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError):
            continue
    try:
        from pydoc_data.topics import topics
    except ImportError:  # some distributions split pydoc_data out
        topics = {}
    raw.extend(topics[key] for key in sorted(topics))
    documents, seen = [], set()
    for text in raw:
        document = clean_document(text)
        key = " ".join(document.split())
        if len(key.split()) < MIN_WORDS or key in seen:
            continue
        seen.add(key)
        documents.append(document)
    return documents


def pydoc_corpus_splits(seed: int = SEED) -> dict[str, list[str]]:
    """train / validation / test documents (90 / 5 / 5 %, by document, fixed seed)."""
    documents = sorted(pydoc_documents(), key=lambda doc: hashlib.sha256(doc.encode()).hexdigest())
    random.Random(seed).shuffle(documents)
    n_validation = round(len(documents) * SPLIT_FRACTIONS["validation"])
    n_test = round(len(documents) * SPLIT_FRACTIONS["test"])
    return {
        "train": documents[n_validation + n_test :],
        "validation": documents[:n_validation],
        "test": documents[n_validation : n_validation + n_test],
    }


def corpus_fingerprint() -> str:
    """The Python version and a digest of the corpus: equal digests mean identical splits."""
    digest = hashlib.sha256()
    for split, documents in pydoc_corpus_splits().items():
        for document in documents:
            digest.update(f"{split}\0{document}\0".encode())
    return f"python {sys.version.split()[0]} sha256 {digest.hexdigest()[:16]}"


__all__ = ["pydoc_documents", "pydoc_corpus_splits", "corpus_fingerprint", "clean_document", "docstrings_of"]
