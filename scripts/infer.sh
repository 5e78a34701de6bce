#!/usr/bin/env bash
# Answer test cases with base + adapter (or the base alone). Each variable below, when set, becomes infer.py's
# flag; unset, infer.py's own default applies. Extra arguments go to infer.py (e.g. --do_sample True).
#   BASE_MODEL       (base_models/SmolLM2-135M-Instruct)
#   LORA_WEIGHTS     adapter folder; empty = the base alone   (this script: outputs/lora-fin, finetune.sh's output)
#   INFER_DATA_PATH  test cases; empty = interactive prompt  (this script: instruction_data/infer.json)
#   OUTPUT_PATH      JSONL of answers                        (outputs/infer_results.jsonl)
#   LOAD_8BIT (False)  MAX_NEW_TOKENS (256)  BATCH_SIZE (4)  LIMIT (0 = all cases; N = the first N)
#   TEMPLATE         prompt template; empty = the one the adapter was trained with
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
# The script answers the test set with the adapter finetune.sh wrote, unless told otherwise.
LORA_WEIGHTS="${LORA_WEIGHTS-outputs/lora-fin}" INFER_DATA_PATH="${INFER_DATA_PATH-instruction_data/infer.json}"

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
