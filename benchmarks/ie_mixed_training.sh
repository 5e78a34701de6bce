#!/usr/bin/env bash
# Mixed financial QA + IE training vs QA only, on the embedded default base; prints the Markdown table of
# benchmarks/ie_mixed_training.py (IE F1 per task on the held-out IE set; held-out QA loss).
# Both adapters train for the same STEPS with the same batch, learning rate, cutoff and seed; only the data
# differ: QA_DATA alone, or QA_DATA mixed with IE_TRAIN (finetune.py --data_path a,b,...).
# Environment (defaults):
#   STEPS (60)  BATCH (16)  MICRO (8)  LR (5e-4)  CUTOFF (768)  SEED (42)
#   PER_TASK (0 = every IE test record; N = N per task)  MAX_NEW_TOKENS (160)  OUT (outputs/ie-bench)
#   QA_DATA (instruction_data/fin_data.json)  IE_TRAIN (the converted IE training files, comma-separated)
#   IE_TEST (instruction_data/ie/ie_test.json)  MIXED_DATA (QA_DATA,IE_TRAIN: the mixed adapter's --data_path)
#   SKIP_TRAIN (empty; 1 = reuse the adapters in OUT)  ONLY (empty; qa, mixed or train = train that one or both, then stop)
# On a 2-core CPU keep each step under the shared lock: flock /work/locks/cpu benchmarks/ie_mixed_training.sh
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../scripts/common.sh"
export WANDB_MODE="${WANDB_MODE:-disabled}"
STEPS="${STEPS:-60}" BATCH="${BATCH:-16}" MICRO="${MICRO:-8}" LR="${LR:-5e-4}" CUTOFF="${CUTOFF:-768}"
SEED="${SEED:-42}" OUT="${OUT:-outputs/ie-bench}"
QA_DATA="${QA_DATA:-instruction_data/fin_data.json}"
IE_DIR=instruction_data/ie
IE_TRAIN="${IE_TRAIN:-$IE_DIR/ner_bio.json,$IE_DIR/ner_boson.json,$IE_DIR/re_duie.json,$IE_DIR/re_finre.json,$IE_DIR/ee_duee.json}"
IE_TEST="${IE_TEST:-$IE_DIR/ie_test.json}"

train() {  # train NAME DATA
  echo "== training $1 on $2 ($STEPS steps)" >&2
  "$PYTHON" finetune.py --data_path "$2" --output_dir "$OUT/$1" --max_steps "$STEPS" --batch_size "$BATCH" \
    --micro_batch_size "$MICRO" --learning_rate "$LR" --cutoff_len "$CUTOFF" --seed "$SEED" --load_8bit False \
    --save_steps 100000 --logging_steps 10 --overwrite True >&2
}

if [ -z "${SKIP_TRAIN:-}" ]; then
  [ "${ONLY:-}" = mixed ] || train qa "$QA_DATA"
  [ "${ONLY:-}" = qa ] || train mixed "${MIXED_DATA:-$QA_DATA,$IE_TRAIN}"
  [ -z "${ONLY:-}" ] || exit 0
fi
"$PYTHON" benchmarks/ie_mixed_training.py --adapters "qa=$OUT/qa,mixed=$OUT/mixed" --ie_test "$IE_TEST" \
  --per_task "${PER_TASK:-0}" --seed "$SEED" --max_new_tokens "${MAX_NEW_TOKENS:-160}" --cutoff_len "$CUTOFF" \
  --answers_dir "$OUT/answers"
