#!/usr/bin/env bash
# The main job on the built-in default: train the ILM recipe on star_easy (generated locally), evaluate it
# on the test split, export it as a Hub-ready folder and sample from it. Extra arguments are experiment
# overrides (e.g. training.max_steps=300). Set XLM_HF_EXPERIMENT to run another experiment.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source .venv/bin/activate
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1
EXPERIMENT=${XLM_HF_EXPERIMENT:-star_easy_ilm}
OUT=outputs/main_job/$EXPERIMENT

xlm-hf prepare-data star_easy
xlm-hf train "$EXPERIMENT" "training.output_dir=$OUT" "$@"
echo "== test-set evaluation"
xlm-hf eval "$OUT" --task star_easy --split test | tail -n 1
echo "== the exported folder"
ls "$OUT"
echo "== a sample (prompt from the test split; the target is the path as edges)"
PROMPT=$(python -c "from xlm_hf.tasks import load_task; print(load_task('star_easy')['test'][0]['prompt'])")
TARGET=$(python -c "from xlm_hf.tasks import load_task; print(load_task('star_easy')['test'][0]['target'])")
echo "prompt:    $PROMPT"
echo "target:    $TARGET"
echo "generated: $(xlm-hf generate "$OUT" --prompt "$PROMPT")"
if [[ "$EXPERIMENT" == star_easy_ilm ]]; then
    echo "== the export with only torch + transformers (xlm_hf blocked): generation and infilling"
    python -c "
import json
from xlm_hf.tasks import load_task
with open('outputs/main_job/test_examples.jsonl', 'w') as handle:
    for example in load_task('star_easy')['test'].select(range(200)):
        handle.write(json.dumps({'prompt': example['prompt'], 'target': example['target']}) + '\\n')
"
    python scripts/try_export.py "$OUT" "outputs/main_job/test_examples.jsonl"
fi
