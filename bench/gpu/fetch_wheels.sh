#!/usr/bin/env bash
# On a machine with network: download the wheels the GPU benchmark needs besides PyTorch into bench/gpu/wheels/
# (ignored by git; carried to the GPU machine with the checkout).
#   bash bench/gpu/fetch_wheels.sh                 # diffusers + transformers and all they need (~60 MB; never PyTorch)
#   ONLY=diffusers bash bench/gpu/fetch_wheels.sh  # just these wheels, for an image that has the rest (~6 MB)
#   SET=training bash bench/gpu/fetch_wheels.sh    # what bench/gpu/run_training.sh needs (timm, pandas, pyarrow, ...)
# PYTHON_VERSION (default 3.12) must match the GPU machine's Python.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON_VERSION:-3.12}
TARGET=(--only-binary=:all: --python-version "$PY" --implementation cp --platform manylinux_2_28_x86_64
        --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d wheels)
if [ "${SET:-}" = "training" ]; then
    pip download "${TARGET[@]}" timm pandas pyarrow click PyYAML psutil open_clip_torch scikit-learn matplotlib
elif [ -n "${ONLY:-}" ]; then
    # shellcheck disable=SC2086
    pip download --no-deps "${TARGET[@]}" $ONLY
else
    pip download "${TARGET[@]}" "diffusers>=0.35" "transformers>=4.45"
fi
du -sh wheels
