#!/usr/bin/env bash
# Create .venv (if missing) and install the requirements into it. Sourced by quickstart.sh and test.sh.
#   PYTHON_BIN   interpreter that creates the venv (default python3)
#   TORCH_SPEC   torch requirement installed first (default torch==2.13.0)
#   REQUIREMENTS requirements file (default requirements.txt)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
REQUIREMENTS="${REQUIREMENTS:-$ROOT/requirements.txt}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"

[ -x "$VENV/bin/python" ] || "${PYTHON_BIN:-python3}" -m venv "$VENV"
stamp="$VENV/.installed-$(cat "$ROOT/requirements.txt" "$REQUIREMENTS" | sha256sum | cut -c1-16)"
if [ ! -f "$stamp" ]; then
  echo "Installing requirements into $VENV ..."
  # torch first and pinned: an unpinned torch would pull a multi-GB CUDA build on a machine without a GPU.
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "$TORCH_SPEC"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r "$REQUIREMENTS"
  touch "$stamp"
fi
export PATH="$VENV/bin:$PATH"
PYTHON="$VENV/bin/python"
export PYTHON
