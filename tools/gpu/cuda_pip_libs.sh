#!/usr/bin/env bash
# Print the library folders of NVIDIA's pip packages (nvidia-*-cu12, as
# requirements-gpu-cudnn.txt installs them) in a virtual environment, joined
# by ':', for LD_LIBRARY_PATH:
#
#   export LD_LIBRARY_PATH=$(tools/gpu/cuda_pip_libs.sh .venv)${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
set -euo pipefail
VENV=${1:-.venv}
dirs=$(ls -d "$VENV"/lib/python3*/site-packages/nvidia/*/lib 2>/dev/null | tr '\n' ':' || true)
if [ -z "$dirs" ]; then
  echo "no nvidia/*/lib in $VENV; install requirements-gpu-cudnn.txt first" >&2
  exit 1
fi
echo "${dirs%:}"
