#!/usr/bin/env bash
# Answer the same test cases with the base alone and base + each adapter; write a side-by-side table.
# Overridable from the environment; extra arguments go to compare.py.
#   BASE_MODEL       (base_models/SmolLM2-135M-Instruct)
#   LORA_WEIGHTS     adapter folders, comma- or space-separated          (outputs/lora-fin)
#   MODELS           more pairs: "label=BASE,label2=BASE@ADAPTER"        (empty)
#   INFER_DATA_PATH  (instruction_data/infer.json)
#   OUTPUT_DIR       created if missing; gets comparison.md and <model>.jsonl  (outputs/comparison)
#   LOAD_8BIT (False)  MAX_NEW_TOKENS (128)  BATCH_SIZE (4)  LIMIT (0 = all cases; N = the first N)
#   TEMPLATE         prompt template for all models; empty = each adapter's own
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
LORA="${LORA_WEIGHTS-outputs/lora-fin}"

exec "$PYTHON" compare.py \
  --base_model "${BASE_MODEL:-base_models/SmolLM2-135M-Instruct}" \
  --lora_weights "${LORA// /,}" \
  --models "${MODELS:-}" \
  --infer_data_path "${INFER_DATA_PATH:-instruction_data/infer.json}" \
  --output_dir "${OUTPUT_DIR:-outputs/comparison}" \
  --prompt_template "${TEMPLATE:-}" \
  --load_8bit "${LOAD_8BIT:-False}" \
  --max_new_tokens "${MAX_NEW_TOKENS:-128}" \
  --batch_size "${BATCH_SIZE:-4}" \
  --limit "${LIMIT:-0}" \
  "$@"
