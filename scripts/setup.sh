#!/usr/bin/env bash
# Create .venv with ivcontrast and everything it needs (training and PostgreSQL included).
#   scripts/setup.sh          runtime + training
#   scripts/setup.sh --dev    ... + test and lint tools
# PyTorch is pinned to the 2.13.0 CPU wheel first: a bare "torch" requirement would pull a
# multi-GB CUDA build. On a GPU host, install the CUDA build of torch before running this.
set -euo pipefail
cd "$(dirname "$0")/.."
extras="train,postgres"
[[ "${1:-}" == "--dev" ]] && extras="$extras,dev"
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install --quiet "torch==2.13.0"
.venv/bin/python -m pip install --quiet -e ".[$extras]"
echo "ivcontrast installed in .venv: $(.venv/bin/ivcontrast --version)"
