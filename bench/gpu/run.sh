#!/usr/bin/env bash
# On the GPU machine (PyTorch installed, no network): install the carried wheels, then run the benchmark.
# Budget: < 8 minutes in all on one H100-class GPU (two models, 50 steps, 4 hard images batched, 1 reference-style).
set -euo pipefail
cd "$(dirname "$0")/../.."
# Only what is missing is installed; packages already there that satisfy the requirements stay.
python -c "import diffusers, transformers" 2>/dev/null || pip install -q --no-index --find-links bench/gpu/wheels diffusers transformers
python -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)"
timeout 460 python bench/gpu/bench_generation_gpu.py --out "${OUT:-bench/gpu/results}/generation_gpu.json" "$@"
