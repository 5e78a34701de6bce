#!/usr/bin/env bash
# Answer the same test cases with the base alone and base + each adapter; write a side-by-side table.
# Each variable below, when set, becomes compare.py's flag; unset, compare.py's own default applies
# (docs/*/evaluation.md). Extra arguments go to compare.py.
#   BASE_MODEL  MODELS ("label=BASE,label2=BASE@ADAPTER")  INFER_DATA_PATH  OUTPUT_DIR  LOAD_8BIT  MAX_NEW_TOKENS
#   BATCH_SIZE  LIMIT (N: the first N cases)  BASE_TEMPLATE (chat, training or both: how the base alone is asked)
#   TEMPLATE         prompt template for all models; unset = each adapter's own
#   LORA_WEIGHTS     adapter folders, comma- or space-separated; unset = finetune.py's output folder
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ -n "${LORA_WEIGHTS+x}" ] || LORA_WEIGHTS="$(setting ADAPTER_DIR)"
LORA_WEIGHTS="${LORA_WEIGHTS// /,}"

add_flag --base_model BASE_MODEL
add_flag --lora_weights LORA_WEIGHTS
add_flag --models MODELS
add_flag --infer_data_path INFER_DATA_PATH
add_flag --output_dir OUTPUT_DIR
add_flag --prompt_template TEMPLATE
add_flag --base_template BASE_TEMPLATE
add_flag --load_8bit LOAD_8BIT
add_flag --max_new_tokens MAX_NEW_TOKENS
add_flag --batch_size BATCH_SIZE
add_flag --limit LIMIT
exec "$PYTHON" compare.py "${args[@]}" "$@"
