#!/usr/bin/env bash
# llama.cpp tools for GGUF export, from PyPI only (no other download):
#   bash scripts/setup_llama_cpp.sh             unpack llama.cpp's convert_hf_to_gguf.py (+ its gguf-py) from the
#                                               llama-cpp-python source package into .cache/llama.cpp/
#   bash scripts/setup_llama_cpp.sh --runtime   also build and install llama-cpp-python into .venv (compiles
#                                               llama.cpp with cmake: several minutes), for q4/q5 quantization and
#                                               for running the GGUF file from Python
# merge_lora.py --gguf fetches the converter by itself when it is missing; this script is for doing it ahead.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
"$PYTHON" -c "from utils.gguf_export import ensure_converter; print(ensure_converter())"
if [ "${1:-}" = "--runtime" ]; then
  spec="$("$PYTHON" -c "from utils.gguf_export import LLAMA_CPP_PYTHON; print(LLAMA_CPP_PYTHON)")"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "$spec"
  "$PYTHON" -c "import llama_cpp; print('llama-cpp-python', llama_cpp.__version__)"
fi
