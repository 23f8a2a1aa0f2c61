"""Where prepared tasks are kept: the data folder (`XLM_HF_DATA_DIR`, default `~/.cache/xlm_hf/data`)."""

import os
from pathlib import Path


def default_cache_dir() -> Path:
    return Path(os.environ.get("XLM_HF_DATA_DIR", Path.home() / ".cache" / "xlm_hf" / "data"))


def _check_writable_cache_dir(folder: Path) -> None:
    """One clear error when the data folder cannot hold a prepared task (a file is in the way, no permission)."""
    hint = "Point XLM_HF_DATA_DIR (or data.cache_dir / --cache-dir) at a writable folder."
    for parent in (folder, *folder.parents):
        if parent.exists() and not parent.is_dir():
            raise ValueError(f"The data folder {folder} cannot be created: {parent} is a file. {hint}")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ValueError(f"The data folder {folder} cannot be created ({error.strerror}). {hint}") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"The data folder {folder} is not writable. {hint}")


__all__ = ["default_cache_dir"]
