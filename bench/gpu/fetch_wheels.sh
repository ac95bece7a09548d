#!/usr/bin/env bash
# On a machine with network: download into bench/gpu/wheels/ (ignored by git, carried to the GPU machine with
# the checkout) the wheels the GPU scripts need beyond what the GPU image has (PyTorch, transformers, timm,
# pandas, pyarrow, click, PyYAML, huggingface_hub, safetensors, ...): exact versions, no dependencies, ~12 MB.
#   bash bench/gpu/fetch_wheels.sh
# PYTHON_VERSION (default 3.12) must match the GPU machine's Python.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON_VERSION:-3.12}
WHEELS=(diffusers==0.42.1 open_clip_torch==3.3.0 ftfy==6.3.1 wcwidth==0.9.4 pydantic==2.14.4 pydantic_core==2.50.5
        annotated_types==0.8.0 typing_inspection==0.4.5 typing_extensions==4.16.0 importlib_metadata==10.2.0)
python3 -m pip download --no-deps --only-binary=:all: --python-version "$PY" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d wheels "${WHEELS[@]}"
du -sh wheels
