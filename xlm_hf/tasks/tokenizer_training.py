"""`xlm-hf tokenizer train`: a BPE trained on a text task's train split or on local files.

It lives beside the tasks (not in `text_tokenizers`, which the tasks import) so that no module imports back the
package that imports it.
"""

import os
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from datasets import load_from_disk

from ..text_tokenizers import train_bpe_tokenizer
from . import TextTask, get_task, prepare_task
from .text import read_documents


def train_tokenizer_command(
    task: str | None,
    files: list[str] | None,
    vocab_size: int,
    output: str | Path,
    cache_dir: str | None = None,
) -> Path:
    """`xlm-hf tokenizer train`: a BPE trained on a text task's train split or on local files, saved to `output`
    (whole or not at all). Returns the folder."""
    if task is not None:
        if not isinstance(get_task(task), TextTask):
            raise ValueError(f"{task!r} is not a text task: its tokenizer is fixed by the task.")
        texts: Iterable[str] = load_from_disk(str(prepare_task(task, cache_dir)))["train"]["text"]
    else:
        missing = [name for name in files or [] if not Path(name).is_file()]
        if missing:
            raise ValueError(f"No such file(s): {', '.join(missing)}.")
        texts = [doc for name in files for doc in read_documents(Path(name))]
    tokenizer = train_bpe_tokenizer(iter(texts), vocab_size=vocab_size)
    output = Path(output)
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"{output} exists and is not an empty folder: choose another --output.")
    output.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}-"))
    try:
        tokenizer.save_pretrained(str(scratch))
        if output.exists():
            output.rmdir()
        os.replace(scratch, output)
    except BaseException:
        shutil.rmtree(scratch, ignore_errors=True)
        raise
    return output


__all__ = ["train_tokenizer_command"]
