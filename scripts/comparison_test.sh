#!/usr/bin/env bash
# Answer the same test cases with the base alone and base + each adapter; write a side-by-side table.
# Each variable below, when set, becomes compare.py's flag; unset, compare.py's own default applies.
# Extra arguments go to compare.py.
#   BASE_MODEL       (base_models/SmolLM2-135M-Instruct)
#   LORA_WEIGHTS     adapter folders, comma- or space-separated  (this script: outputs/lora-fin)
#   MODELS           more pairs: "label=BASE,label2=BASE@ADAPTER"        (empty)
#   INFER_DATA_PATH  (instruction_data/infer.json)
#   OUTPUT_DIR       created if missing; gets comparison.md and <model>.jsonl  (outputs/comparison)
#   LOAD_8BIT (False)  MAX_NEW_TOKENS (128)  BATCH_SIZE (4)  LIMIT (0 = all cases; N = the first N)
#   TEMPLATE         prompt template for all models; empty = each adapter's own
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
LORA="${LORA_WEIGHTS-outputs/lora-fin}"
LORA_WEIGHTS="${LORA// /,}"

add_flag --base_model BASE_MODEL
add_flag --lora_weights LORA_WEIGHTS
add_flag --models MODELS
add_flag --infer_data_path INFER_DATA_PATH
add_flag --output_dir OUTPUT_DIR
add_flag --prompt_template TEMPLATE
add_flag --load_8bit LOAD_8BIT
add_flag --max_new_tokens MAX_NEW_TOKENS
add_flag --batch_size BATCH_SIZE
add_flag --limit LIMIT
exec "$PYTHON" compare.py "${args[@]}" "$@"
