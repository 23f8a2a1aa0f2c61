#!/usr/bin/env bash
# One family's text experiment end to end, with no download: set up the environment, prepare the built-in corpus
# (the Python standard library's docstrings) and train its BPE, train the family on it, evaluate the held-out loss
# on the test split, export a Hub-ready folder and print samples with the folder loaded where xlm_hf cannot be
# imported. XLM_HF_FAMILY picks the family (arlm, mlm, mdlm, ilm, flexmdm; default mdlm); extra arguments are
# experiment overrides (e.g. training.max_steps=300).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1
FAMILY=${XLM_HF_FAMILY:-mdlm}
EXPERIMENT=text_pydoc_$FAMILY
OUT=outputs/text_job/$EXPERIMENT

echo "== the corpus"
xlm-hf prepare-data text_pydoc
xlm-hf train "$EXPERIMENT" "training.output_dir=$OUT" "$@"
echo "== held-out loss on the test split"
xlm-hf eval "$OUT" --split test --limit 256 | tail -n 1
echo "== the exported folder (tokenizer files included)"
ls "$OUT"
echo "== samples from the export, loaded with only torch + transformers (xlm_hf blocked)"
python - "$OUT" <<'PY'
import importlib.abc
import sys


class BlockXlmHf(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "xlm_hf" or name.startswith("xlm_hf."):
            raise ImportError("xlm_hf is not installed here")


sys.meta_path.insert(0, BlockXlmHf())
from transformers import pipeline, set_seed  # noqa: E402

set_seed(0)
generator = pipeline("text-generation", model=sys.argv[1], trust_remote_code=True)
for prompt in ["Return the", "This module provides"]:
    print(repr(generator(prompt, max_new_tokens=48)[0]["generated_text"]))
PY
