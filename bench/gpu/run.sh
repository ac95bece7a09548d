#!/usr/bin/env bash
# On the GPU machine: the generation benchmark for one model and size (arguments go to bench_generation_gpu.py).
#   bash bench/gpu/run.sh --model sdxl-refiner --size 1024x1024 --dtypes fp16 bf16
# bench/gpu/run_all.sh runs every GPU measurement discl reports in one go.
set -euo pipefail
cd "$(dirname "$0")/../.."
source bench/gpu/_env.sh
python3 bench/gpu/bench_generation_gpu.py --out "${OUT:-bench/gpu/results}/generation.json" "$@"
