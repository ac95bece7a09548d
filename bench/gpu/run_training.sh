#!/usr/bin/env bash
# On the GPU machine (PyTorch installed, no network): the training benchmark at ImageNet-LT settings
# (resnet10t, 224 px, batch 128, DataLoader workers), bf16 then fp32: `discl train` / `discl eval`
# against timm-style plain loops on JPEGs the benchmark writes itself; images/s and GPU memory.
#   bash bench/gpu/run_training.sh              # N = 4096 training images (about 3 minutes on an H100 node)
#   bash bench/gpu/run_training.sh --smoke      # a few images on the CPU: checks the code path only
# Packages the GPU image lacks come from bench/gpu/wheels (bash bench/gpu/fetch_wheels.sh).
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/gpu/_env.sh
OUT=${OUT:-bench/gpu/results}
mkdir -p "$OUT"
if [ "${1:-}" = "--smoke" ]; then
    python3 bench/bench_training.py --n 16 --batch-size 4 --size 32 --device cpu --repeats 1 --no-memory --workers 1 \
        --data "$OUT/smoke-data" | tee "$OUT/training_smoke.txt"
    exit 0
fi
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name(0))"
workers=$(python3 -c "import os; print(min(16, len(os.sched_getaffinity(0))))")
for precision in bf16 fp32; do
    timeout 280 python3 bench/bench_training.py --n "${N:-4096}" --batch-size 128 --size 224 --device cuda \
        --precision "$precision" --workers "$workers" --repeats 1 --no-memory --data "${DATA:-/tmp/discl-bench-training}" \
        | tee "$OUT/training_gpu_$precision.txt"
done
