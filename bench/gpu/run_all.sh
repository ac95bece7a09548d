#!/usr/bin/env bash
# Every GPU figure discl reports, in one go sized for one device session (about 7 minutes on an H100/H200):
# generation (SD 1.5 at 512 px, SDXL refiner at 1024 px and at the recipes' source sizes, fp16 and bf16,
# the reference loop against the engine at three batch sizes, the UNet alone, the paper's 80-output
# spectrum per hard image) and training (resnet10t, 224 px, batch 128, bf16, against a timm-style loop).
#   bash bench/gpu/run_all.sh            # on the GPU machine; results in $OUT (or bench/gpu/results)
#   SMOKE=1 bash bench/gpu/run_all.sh    # on a CPU: the same steps at toy sizes, checks the code paths only
# Each step has its own time cap inside a total of BUDGET seconds (default 540), so a slow step costs
# only the ones after it; every figure is written as soon as it is measured.
set -uo pipefail
cd "$(dirname "$0")/../.."
source bench/gpu/_env.sh || exit 1
OUT=${OUT:-bench/gpu/results}
mkdir -p "$OUT"
BUDGET=${BUDGET:-540}
START=$SECONDS
smoke=()
[ -n "${SMOKE:-}" ] && smoke=(--smoke)
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv

step() {  # step CAP_SECONDS NAME COMMAND...: runs it under min(CAP, what is left of BUDGET)
    local cap=$1 name=$2; shift 2
    local left=$((BUDGET - (SECONDS - START)))
    [ "$left" -lt "$cap" ] && cap=$left
    if [ "$cap" -le 10 ]; then echo "== $name: skipped (budget spent)"; return; fi
    echo "== $name (at most ${cap} s; ${SECONDS}s since start)"
    timeout "$cap" "$@" 2>&1 | grep --line-buffered -v "should be kept in float32"
    echo "== $name: exit ${PIPESTATUS[0]}"
}

G=(python3 bench/gpu/bench_generation_gpu.py "${smoke[@]}" --out "$OUT/generation.json")
step 150 "refiner 1024 px" "${G[@]}" --model sdxl-refiner --size 1024x1024 --dtypes fp16 bf16 --batch-sizes 4 8 16 --reference-calls 3
step 80 "sd15 512 px" "${G[@]}" --model sd15 --dtypes fp16 bf16 --batch-sizes 8 16 32 --reference-calls 6
step 90 "refiner at ImageNet-LT's size" "${G[@]}" --model sdxl-refiner --size 496x368 --dtypes fp16 --batch-sizes 8 16 32 \
    --reference-calls 6 --measure reference engine spectrum --spectrum-batch 16 --hard 2
if [ -n "${SMOKE:-}" ]; then
    step 120 "training" bash bench/gpu/run_training.sh --smoke
else
    step 150 "training bf16" python3 bench/bench_training.py --n 4096 --batch-size 128 --size 224 --device cuda --precision bf16 \
        --workers "$(python3 -c 'import os; print(min(16, len(os.sched_getaffinity(0))))')" --repeats 1 --no-memory --data /tmp/discl-bench-training
fi
step 60 "refiner at iWildCam's size" "${G[@]}" --model sdxl-refiner --size 480x272 --dtypes fp16 --measure spectrum --spectrum-batch 16 --hard 2
step 100 "refiner 1024 px spectrum" "${G[@]}" --model sdxl-refiner --size 1024x1024 --dtypes fp16 --measure spectrum --spectrum-batch 8 --hard 1 --seeds 4
step 60 "sd15 spectrum" "${G[@]}" --model sd15 --dtypes fp16 --measure spectrum --spectrum-batch 16 --hard 2
echo "total $((SECONDS - START)) s"
