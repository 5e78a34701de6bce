#!/usr/bin/env bash
# Answer test cases with base + adapter (or the base alone). Overridable from the environment;
# extra arguments go to infer.py (e.g. --do_sample True --temperature 0.7).
#   BASE_MODEL       (base_models/SmolLM2-135M-Instruct)
#   LORA_WEIGHTS     adapter folder; empty = the base alone   (outputs/lora-fin)
#   INFER_DATA_PATH  test cases; empty = interactive prompt  (instruction_data/infer.json)
#   OUTPUT_PATH      JSONL of answers                        (outputs/infer_results.jsonl)
#   LOAD_8BIT (False)  MAX_NEW_TOKENS (256)  BATCH_SIZE (4)  LIMIT (0 = all cases; N = the first N)
#   TEMPLATE         prompt template; empty = the one the adapter was trained with
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

exec "$PYTHON" infer.py \
  --base_model "${BASE_MODEL:-base_models/SmolLM2-135M-Instruct}" \
  --lora_weights "${LORA_WEIGHTS-outputs/lora-fin}" \
  --infer_data_path "${INFER_DATA_PATH-instruction_data/infer.json}" \
  --output_path "${OUTPUT_PATH:-outputs/infer_results.jsonl}" \
  --prompt_template "${TEMPLATE:-}" \
  --load_8bit "${LOAD_8BIT:-False}" \
  --max_new_tokens "${MAX_NEW_TOKENS:-256}" \
  --batch_size "${BATCH_SIZE:-4}" \
  --limit "${LIMIT:-0}" \
  "$@"
