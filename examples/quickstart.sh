#!/usr/bin/env bash
# One command: install llm_inductor (and torch if missing), map a model's fusion regions, compile it with backend="llm".
set -euo pipefail
cd "$(dirname "$0")/.."

if ! python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    python -m pip install -q torch
  else
    python -m pip install -q torch==2.13.0   # the CPU build: a bare `torch` pulls GB of CUDA wheels
  fi
fi
python -m pip install -q -e ".[dev]"

echo "== the fusion regions the backend would tune (llm-inductor regions)"
llm-inductor regions --export regions examples/llama.py
echo
echo "== torch.compile(model, backend=\"llm\")"
python examples/llama.py
