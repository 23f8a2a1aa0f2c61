#!/usr/bin/env bash
# Set-up on a fresh machine: a virtual environment in .venv, torch, then xlm_hf with its dev and demo extras.
# torch is installed first so that pip does not pull a multi-GB CUDA build; choose another build with
# XLM_HF_TORCH (default: torch==2.13.0, the CPU build on this kind of machine). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
source .venv/bin/activate
if ! python -c "import torch" 2>/dev/null; then
  python -m pip install --quiet "${XLM_HF_TORCH:-torch==2.13.0}"
fi
python -m pip install --quiet -e ".[dev,demo]"
# The browser test (tests/test_demo_browser.py) drives Debian's chromium; installed only by root, skipped otherwise.
if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null ||
    echo "chromium could not be installed: the browser test will be skipped"
fi
python -c "import torch, transformers, xlm_hf; print(f'xlm_hf ready: torch {torch.__version__}, transformers {transformers.__version__}')"
