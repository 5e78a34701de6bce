#!/usr/bin/env bash
# Continued pre-training on raw text (pretrain.py). Each variable below, when set, becomes pretrain.py's flag; unset,
# pretrain.py's own default applies (docs/*/pretrain.md). Extra arguments go to pretrain.py as they are.
#   BASE_MODEL        base model folder (an extended base from extend_vocab.py, or stage 1's OUTPUT_DIR/merged)
#   DATA_PATH         raw text: .txt / .jsonl files or folders, comma-separated, path:N for N documents
#   OUTPUT_DIR        where the adapter and OUTPUT_DIR/merged are saved
#   STAGE             1: only embeddings and LM head learn (--train_embeddings_only True); 2 (if unset): LoRA +
#                     embeddings
#   BLOCK_SIZE  NUM_EPOCHS  MAX_STEPS  BATCH_SIZE  MICRO_BATCH_SIZE  LEARNING_RATE
#   NEW_ROWS_ONLY     stage 1 on an extended base: only the added rows learn, or (False) every row
#   NPROC             processes/GPUs, 1 if unset; NPROC=2 runs torchrun --nproc_per_node 2 (DDP).
# Stage 1 then stage 2, then instruction tuning:
#   STAGE=1 BASE_MODEL=base_models/SmolLM2-135M-Instruct-zh OUTPUT_DIR=outputs/pt-stage1 bash scripts/pretrain.sh
#   STAGE=2 BASE_MODEL=outputs/pt-stage1/merged OUTPUT_DIR=outputs/pt-stage2 bash scripts/pretrain.sh
#   BASE_MODEL=outputs/pt-stage2/merged bash scripts/finetune.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

add_flag --base_model BASE_MODEL
add_flag --data_path DATA_PATH
add_flag --output_dir OUTPUT_DIR
add_flag --block_size BLOCK_SIZE
add_flag --num_epochs NUM_EPOCHS
add_flag --max_steps MAX_STEPS
add_flag --batch_size BATCH_SIZE
add_flag --micro_batch_size MICRO_BATCH_SIZE
add_flag --learning_rate LEARNING_RATE
add_flag --new_rows_only NEW_ROWS_ONLY
case "${STAGE:-2}" in
  1) args+=(--train_embeddings_only true) ;;
  2) ;;
  *) echo "error: STAGE must be 1 or 2, got '${STAGE}'" >&2; exit 1 ;;
esac
NPROC="${NPROC:-1}"
if [ "$NPROC" -gt 1 ]; then
  exec "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node "$NPROC" pretrain.py "${args[@]}" "$@"
fi
exec "$PYTHON" pretrain.py "${args[@]}" "$@"
