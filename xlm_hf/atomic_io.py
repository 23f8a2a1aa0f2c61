"""Files that are either complete or absent: write to a unique temporary file next to the target, then rename.

`os.replace` within one folder is atomic on POSIX file systems, so a reader sees the old file or the new one, never
a prefix of it. The temporary name is unique per writer (`tempfile.mkstemp`), so several processes writing the same
target (two `xlm-hf eval` of one folder) never write into each other's file: the last rename wins, whole. When
writing fails (a full disk, a signal that raises), the temporary file is removed and the target is left as it was.
"""

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


def _default_file_mode() -> int:
    """The mode `open(path, "w")` would give a new file (mkstemp creates files readable by their owner only)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


@contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """`open(path, mode)` for writing, except that `path` changes only when the `with` block ends without an
    exception, and then at once. `mode` is `"w"` or `"wb"`."""
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files: mode must be 'w' or 'wb', got {mode!r}.")
    path = Path(path)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with open(descriptor, mode, encoding=None if "b" in mode else encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())  # the data is on disk before the name points at it
        os.chmod(temporary, _default_file_mode())
        os.replace(temporary, path)
    except BaseException as error:
        Path(temporary).unlink(missing_ok=True)
        # e.g. ENOSPC from fsync names no file: name the one that could not be written
        if isinstance(error, OSError) and error.filename is None:
            error.filename = str(path)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Writes `text` to `path` through `atomic_open`."""
    with atomic_open(path) as handle:
        handle.write(text)


__all__ = ["atomic_open", "atomic_write_text"]
