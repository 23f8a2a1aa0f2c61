#!/usr/bin/env bash
# What only a GPU machine can check, in one short run (at most DEADLINE seconds, default 500):
#   1. every family trained and evaluated end to end on star_easy by `xlm-hf compare` (the Trainer puts the model
#      on the GPU; the samplers, collators and metrics must follow it there), bf16 autocast;
#   2. transformers' common model tests on the GPU (torch_device is cuda there, so the tests that the CPU suite
#      skips with @require_torch_accelerator run too);
#   3. scripts/bench.py on the GPU, float32 and bf16 autocast, for every family.
#
#     bash scripts/gpu_check.sh [OUTPUT_DIR]          # default: outputs/gpu_check
#
# Needs torch with CUDA and the project's dependencies importable (an installed xlm-hf, or PYTHONPATH set to a
# checkout whose xlm_hf/modeling and xlm_hf/model_cards link to ../modeling and ../model_cards). Each step's log
# goes to OUTPUT_DIR; a failing step does not stop the others, and the exit status is the number of failed steps.
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-outputs/gpu_check}"
mkdir -p "$out"
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
python="${PYTHON:-python3}"
deadline="${DEADLINE:-500}"
failed=0

# a step's time limit: its own cap, or what is left before the deadline if that is less
limit() { local left=$((deadline - SECONDS)); echo $((left < $1 ? (left > 5 ? left : 5) : $1)); }

"$python" - <<'EOF' | tee "$out/environment.txt"
import torch, transformers
assert torch.cuda.is_available(), "torch sees no GPU: this script is for a GPU machine"
print(f"torch {torch.__version__}, transformers {transformers.__version__}, {torch.cuda.get_device_name(0)}")
EOF
[[ ${PIPESTATUS[0]} -eq 0 ]] || exit 1

echo "== 1. every family trained and evaluated on the GPU (star_easy, 300 steps each)"
timeout "$(limit 150)" "$python" -m xlm_hf.cli compare star_easy \
    --families arlm,mlm,mdlm,ilm,flexmdm --budget-minutes 5 --seeds 42 --limit 500 \
    --set training.max_steps=300 --set training.bf16=true --out "$out/compare" >"$out/compare.log" 2>&1 \
    || failed=$((failed + 1))
tail -n 20 "$out/compare.log"

echo "== 2. transformers' common model tests on the GPU"
workers=$("$python" -c "import xdist" 2>/dev/null && echo "-n 8" || echo "")
timeout "$(limit 240)" "$python" -m pytest -q -p no:cacheprovider $workers -rs \
    tests/test_transformers_common.py >"$out/common_tests.log" 2>&1 || failed=$((failed + 1))
tail -n 3 "$out/common_tests.log"
grep -E "^(FAILED|ERROR)" "$out/common_tests.log" | head -n 40

echo "== 3. scripts/bench.py on the GPU"
for family in arlm mlm mdlm ilm flexmdm; do
    for dtype in fp32 bf16; do
        overrides=()
        [[ $dtype == bf16 ]] && overrides=(training.bf16=true)
        timeout "$(limit 60)" "$python" scripts/bench.py "star_easy_$family" --device cuda --steps 50 \
            --generation-batches 4 "${overrides[@]}" >"$out/bench_${family}_${dtype}.log" 2>&1 \
            || failed=$((failed + 1))
        tail -n 1 "$out/bench_${family}_${dtype}.log"
    done
done
echo "failed steps: $failed"
exit "$failed"
