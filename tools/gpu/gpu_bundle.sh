#!/usr/bin/env bash
# Build the wheel bundle .whl/ that travels with the checkout to a GPU
# machine without internet (the device tool carries ignored paths up to
# 64 MiB in all: carry [".whl"]), and that tools/gpu/gpu_check.sh installs
# from there with pip --no-index when its interpreter lacks them:
#
#   tools/gpu/gpu_bundle.sh        (here, with PyPI)
#
# It holds the fast CPU path's OpenBLAS (scipy-openblas32, pinned in
# requirements.txt; 8 MB), so that the GPU machine's CPU checks run the
# same BLAS as here. The CuPy wheels (110+ MB) and NVIDIA's CUDA/cuDNN
# wheels (GBs) exceed the carry limit: the GPU machine's environment must
# have them (requirements-gpu.txt or requirements-gpu-cudnn.txt).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-.venv/bin/python}
pin=$(grep -E '^scipy-openblas32==' requirements.txt)
rm -rf .whl.tmp && mkdir -p .whl.tmp
"$PY" -m pip download --no-deps --only-binary=:all: --python-version 3.11 \
    -d .whl.tmp "$pin"
rm -rf .whl && mv .whl.tmp .whl
du -sh .whl && ls .whl
