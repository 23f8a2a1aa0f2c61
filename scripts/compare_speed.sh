#!/usr/bin/env bash
# Side by side with the original: xlm-core 0.3.1 + xlm-models 0.3.1 against xlm_hf at the same configuration
# (star_easy, d_model 128 / 2 layers / 2 heads, batch 64, one thread each), alternating A/B in one run.
#
#     bash scripts/compare_speed.sh                 # ARLM, MDLM, ILM: training s/step; MDLM, ILM: generation
#     ROUNDS=7 bash scripts/compare_speed.sh --families ilm          # extra arguments go to the driver
#
# The original lives in its own virtual environment (.cache/xlm_core_venv, ignored by git) because it pins
# lightning 2.5.2 and installs generic top-level packages (arlm, mlm, ilm, mdlm, ...). Torch goes in first, from
# a CPU wheel, so that pip does not pull the CUDA build; then transformers 4.57.1 (what xlm-core 0.3.1 was made
# with), then the two packages from PyPI. The timing driver is scripts/compare_speed.py: it runs in this
# project's .venv and starts one worker per system and family (scripts/compare_speed_worker.py) in the other venv.
set -euo pipefail
cd "$(dirname "$0")/.."

REF_VENV="${REF_VENV:-.cache/xlm_core_venv}"
PYTHON="${PYTHON:-python3.11}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
# A CPU wheel source for torch: a local wheel folder or an index (e.g. https://download.pytorch.org/whl/cpu).
TORCH_FROM="${TORCH_FROM:-}"

if [[ ! -x "$REF_VENV/bin/python" ]] || ! "$REF_VENV/bin/python" -c "import xlm, ilm, mdlm, arlm" 2>/dev/null; then
    echo "creating $REF_VENV with xlm-core 0.3.1 + xlm-models 0.3.1 (a few minutes, once)" >&2
    "$PYTHON" -m venv "$REF_VENV"
    "$REF_VENV/bin/pip" install -q --upgrade pip
    if [[ -z "$TORCH_FROM" ]]; then
        "$REF_VENV/bin/pip" install -q "$TORCH_SPEC"
    elif [[ -d "$TORCH_FROM" ]]; then
        "$REF_VENV/bin/pip" install -q "$TORCH_SPEC" --find-links "$TORCH_FROM"
    else
        "$REF_VENV/bin/pip" install -q "$TORCH_SPEC" --extra-index-url "$TORCH_FROM"
    fi
    "$REF_VENV/bin/pip" install -q "transformers==4.57.1"
    "$REF_VENV/bin/pip" install -q "xlm-core==0.3.1" "xlm-models==0.3.1" "$TORCH_SPEC" "transformers==4.57.1"
fi

if [[ -z "${VIRTUAL_ENV:-}" && -f .venv/bin/activate ]]; then
    source .venv/bin/activate
fi
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
exec python scripts/compare_speed.py --reference-python "$REF_VENV/bin/python" "$@"
