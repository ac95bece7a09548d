#!/usr/bin/env bash
# On a machine with network: download the wheels the GPU benchmark needs besides PyTorch into bench/gpu/wheels/
# (ignored by git; carried to the GPU machine with the checkout). Match the GPU machine's Python version.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON_VERSION:-3.11}
pip download --only-binary=:all: --python-version "$PY" --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux_2_28_x86_64 --platform any -d wheels "diffusers>=0.35" "transformers>=4.45" accelerate
ls wheels | wc -l
