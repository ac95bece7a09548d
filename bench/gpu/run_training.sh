#!/usr/bin/env bash
# On the GPU machine (PyTorch installed, no network): the training benchmark at ImageNet-LT settings
# (resnet10t, 224 px, batch 128, DataLoader workers), bf16 then fp32: `discl train` / `discl eval`
# against timm-style plain loops on JPEGs the benchmark writes itself; images/s and GPU memory.
#   bash bench/gpu/run_training.sh              # N = 4096 training images (about 3 minutes on an H100 node)
#   bash bench/gpu/run_training.sh --smoke      # a few images on the CPU: checks the code path only
# Packages besides PyTorch come from bench/gpu/wheels (SET=training bash bench/gpu/fetch_wheels.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
need=()
for mod in timm pandas pyarrow click yaml psutil open_clip safetensors sklearn matplotlib; do
    python -c "import $mod" 2>/dev/null || need+=("$mod")
done
if [ ${#need[@]} -gt 0 ]; then
    declare -A pkg=([yaml]=PyYAML [open_clip]=open_clip_torch [sklearn]=scikit-learn)
    names=(); for m in "${need[@]}"; do names+=("${pkg[$m]:-$m}"); done
    pip install -q --no-index --find-links bench/gpu/wheels "${names[@]}"
fi
OUT=${OUT:-bench/gpu/results}
mkdir -p "$OUT"
if [ "${1:-}" = "--smoke" ]; then
    python bench/bench_training.py --n 16 --batch-size 4 --size 32 --device cpu --repeats 1 --no-memory --workers 1 \
        --data "$OUT/smoke-data" | tee "$OUT/training_smoke.txt"
    exit 0
fi
python -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
workers=$(python -c "import os; print(min(16, len(os.sched_getaffinity(0))))")
for precision in bf16 fp32; do
    timeout 280 python bench/bench_training.py --n "${N:-4096}" --batch-size 128 --size 224 --device cuda \
        --precision "$precision" --workers "$workers" --repeats 1 --no-memory --data "${DATA:-/tmp/discl-bench-training}" \
        | tee "$OUT/training_gpu_$precision.txt"
done
