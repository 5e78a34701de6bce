#!/usr/bin/env bash
# llama.cpp tools for GGUF export, from PyPI only (no other download):
#   bash scripts/setup_llama_cpp.sh             unpack llama.cpp's convert_hf_to_gguf.py (+ its gguf-py) from the
#                                               llama-cpp-python source package into .cache/llama.cpp/
#   bash scripts/setup_llama_cpp.sh --runtime   also build and install llama-cpp-python with its server extra into
#                                               .venv (compiles llama.cpp with cmake: several minutes), for q4/q5
#                                               quantization, for running the GGUF file from Python, and for serving it
#                                               with llama.cpp's OpenAI-compatible server (python -m llama_cpp.server)
# merge_lora.py --gguf fetches the converter by itself when it is missing; this script is for doing it ahead.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
"$PYTHON" -c "from utils.gguf_export import ensure_converter; print(ensure_converter())"
if [ "${1:-}" = "--runtime" ]; then
  spec="$("$PYTHON" -c "from utils.gguf_export import LLAMA_CPP_RUNTIME; print(LLAMA_CPP_RUNTIME)")"
  "$PYTHON" -m pip install --quiet --disable-pip-version-check "$spec"
  "$PYTHON" -c "import llama_cpp, llama_cpp.server.app; print('llama-cpp-python', llama_cpp.__version__, '(with its server)')"
fi
