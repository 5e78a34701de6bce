#!/usr/bin/env bash
# LoRA fine-tuning. Each variable below, when set, becomes finetune.py's flag; unset, finetune.py's own default
# applies (utils/settings.py). Extra arguments go to finetune.py as they are (e.g. --max_steps 20 --lora_r 16).
#   BASE_MODEL        base model folder or hub id     (base_models/SmolLM2-135M-Instruct)
#   DATA_PATH         training data, JSON list/JSONL  (instruction_data/fin_data.json); several files mixed:
#                     a.json,b.json:200,c.json:0.5 (200 records of b, half of c; drawn with --seed)
#   OUTPUT_DIR        where the adapter is saved      (outputs/lora-fin)
#   TEMPLATE          prompt template name            (fin_qa; fin_template = the original's prompt)
#   NUM_EPOCHS (3)  BATCH_SIZE (16)  MICRO_BATCH_SIZE (4)  LEARNING_RATE (3e-4)  CUTOFF_LEN (1280)
#   VAL_SET_SIZE (0)  LOAD_8BIT (True)  LOAD_4BIT (False: True means QLoRA, nf4)
#   NPROC             processes/GPUs (1). Multi-GPU switch: NPROC=2 bash scripts/finetune.sh runs
#                     torchrun --nproc_per_node 2 (DDP; NCCL on GPUs, gloo on CPU).
#   CUDA_VISIBLE_DEVICES  which GPUs to use, as usual.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

add_flag --base_model BASE_MODEL
add_flag --data_path DATA_PATH
add_flag --output_dir OUTPUT_DIR
add_flag --prompt_template_name TEMPLATE
add_flag --num_epochs NUM_EPOCHS
add_flag --batch_size BATCH_SIZE
add_flag --micro_batch_size MICRO_BATCH_SIZE
add_flag --learning_rate LEARNING_RATE
add_flag --cutoff_len CUTOFF_LEN
add_flag --val_set_size VAL_SET_SIZE
add_flag --load_8bit LOAD_8BIT
add_flag --load_4bit LOAD_4BIT
NPROC="${NPROC:-1}"
if [ "$NPROC" -gt 1 ]; then
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" finetune.py "${args[@]}" "$@"
fi
exec "$PYTHON" finetune.py "${args[@]}" "$@"
