#!/usr/bin/env bash
# LoRA fine-tuning. Each variable below, when set, becomes finetune.py's flag; unset, finetune.py's own default
# applies (the flag table in docs/zh/finetune.md, docs/en/finetune.md). Extra arguments go to finetune.py as they
# are (e.g. --max_steps 20 --lora_r 16).
#   BASE_MODEL  DATA_PATH  OUTPUT_DIR  TEMPLATE (--prompt_template)  NUM_EPOCHS  BATCH_SIZE  MICRO_BATCH_SIZE
#   LEARNING_RATE  CUTOFF_LEN  VAL_SET_SIZE  LOAD_8BIT  LOAD_4BIT (True: QLoRA, nf4)
#   DATA_PATH may mix files: a.json,b.json:200,c.json:0.5 (200 records of b, half of c; drawn with --seed)
#   NPROC       processes/GPUs, 1 if unset. NPROC=2 bash scripts/finetune.sh runs torchrun --nproc_per_node 2 (DDP;
#               NCCL on GPUs, gloo on CPU). CUDA_VISIBLE_DEVICES picks the GPUs, as usual.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

add_flag --base_model BASE_MODEL
add_flag --data_path DATA_PATH
add_flag --output_dir OUTPUT_DIR
add_flag --prompt_template TEMPLATE
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
