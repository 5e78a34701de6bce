#!/usr/bin/env bash
# LoRA fine-tuning. Every setting below can be overridden from the environment; extra arguments go to
# finetune.py as they are (e.g. --max_steps 20 --lora_r 16).
#   BASE_MODEL        base model folder or hub id     (base_models/SmolLM2-135M-Instruct)
#   DATA_PATH         training data, JSON list/JSONL  (instruction_data/fin_data.json)
#   OUTPUT_DIR        where the adapter is saved      (outputs/lora-fin)
#   TEMPLATE          prompt template name            (fin_template)
#   NUM_EPOCHS (3)  BATCH_SIZE (16)  MICRO_BATCH_SIZE (4)  LEARNING_RATE (3e-4)  CUTOFF_LEN (1280)
#   VAL_SET_SIZE (0)  LOAD_8BIT (True)  LOAD_4BIT (False: True means QLoRA, nf4)
#   NPROC             processes/GPUs (1). Multi-GPU switch: NPROC=2 bash scripts/finetune.sh runs
#                     torchrun --nproc_per_node 2 (DDP; NCCL on GPUs, gloo on CPU).
#   CUDA_VISIBLE_DEVICES  which GPUs to use, as usual.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3

args=(
  --base_model "${BASE_MODEL:-base_models/SmolLM2-135M-Instruct}"
  --data_path "${DATA_PATH:-instruction_data/fin_data.json}"
  --output_dir "${OUTPUT_DIR:-outputs/lora-fin}"
  --prompt_template_name "${TEMPLATE:-fin_template}"
  --num_epochs "${NUM_EPOCHS:-3}"
  --batch_size "${BATCH_SIZE:-16}"
  --micro_batch_size "${MICRO_BATCH_SIZE:-4}"
  --learning_rate "${LEARNING_RATE:-3e-4}"
  --cutoff_len "${CUTOFF_LEN:-1280}"
  --val_set_size "${VAL_SET_SIZE:-0}"
  --load_8bit "${LOAD_8BIT:-True}"
  --load_4bit "${LOAD_4BIT:-False}"
)
NPROC="${NPROC:-1}"
if [ "$NPROC" -gt 1 ]; then
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" finetune.py "${args[@]}" "$@"
fi
exec "$PYTHON" finetune.py "${args[@]}" "$@"
