"""Shared fixtures. Tests never reach the network: the Hub is offline and every dataset is generated locally."""

import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tiny models run fastest on one thread, and the suite's subprocesses inherit this (CI has 2 cores).
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(1)

sys.path.insert(0, str(Path(__file__).parent))


def pytest_configure(config):
    # markers that transformers' common tests (tests/test_transformers_common.py) put on their tests
    for marker in (
        "flash_attn_test",
        "flash_attn_3_test",
        "flash_attn_4_test",
        "torch_compile_test",
        "is_pipeline_test",
        "accelerate_tests",
        "is_training_test",
        "slow",
    ):
        config.addinivalue_line("markers", f"{marker}: used by transformers' common model tests")


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory) -> Path:
    """One cache of generated tasks for the whole session (star_easy is generated at most once)."""
    path = tmp_path_factory.mktemp("xlm_hf_data")
    os.environ["XLM_HF_DATA_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def star_tokenizer():
    from xlm_hf.tokenization import build_number_tokenizer

    return build_number_tokenizer(20)
