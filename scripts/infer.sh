#!/usr/bin/env bash
# Answer test cases with base + adapter (or the base alone). Each variable below, when set, becomes infer.py's
# flag; unset, infer.py's own default applies (docs/*/evaluation.md). Extra arguments go to infer.py
# (e.g. --do_sample True).
#   BASE_MODEL  OUTPUT_PATH  LOAD_8BIT  MAX_NEW_TOKENS  BATCH_SIZE  LIMIT (N: the first N cases)
#   TEMPLATE         prompt template; unset = the one the adapter was trained with
#   LORA_WEIGHTS     adapter folder; empty = the base alone; unset = finetune.py's output folder (settings.ADAPTER_DIR)
#   INFER_DATA_PATH  test cases; empty = an interactive prompt; unset = the held-out set (settings.INFER_DATA)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# The script answers the test set with the adapter finetune.sh wrote, unless told otherwise.
[ -n "${LORA_WEIGHTS+x}" ] || LORA_WEIGHTS="$(setting ADAPTER_DIR)"
[ -n "${INFER_DATA_PATH+x}" ] || INFER_DATA_PATH="$(setting INFER_DATA)"

add_flag --base_model BASE_MODEL
add_flag --lora_weights LORA_WEIGHTS
add_flag --infer_data_path INFER_DATA_PATH
add_flag --output_path OUTPUT_PATH
add_flag --prompt_template TEMPLATE
add_flag --load_8bit LOAD_8BIT
add_flag --max_new_tokens MAX_NEW_TOKENS
add_flag --batch_size BATCH_SIZE
add_flag --limit LIMIT
exec "$PYTHON" infer.py "${args[@]}" "$@"
