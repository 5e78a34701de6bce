#!/usr/bin/env bash
# Regenerate the IE instruction data in instruction_data/ie/ from the source-format samples in
# instruction_data/ie/source/ (python -m utils.ie convert; deterministic for a given SEED).
#   training records:  instruction_data/ie/{ner_bio,ner_boson,re_duie,re_finre,ee_duee}.json
#   held-out test set: instruction_data/ie/ie_test.json (all three tasks; each record carries `task`)
# Training files keep at most EMPTY_SHARE of records with an empty answer (groups asking for types the
# sentence lacks; without the cap 41-66 % of RE/EE answers were [] and a small model learned to answer []);
# the test set keeps every record.
# Environment: SEED (42; the test set uses SEED+1), EMPTY_SHARE (0.25), PYTHON. A missing source file is an error.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SRC=instruction_data/ie/source
OUT=instruction_data/ie
SEED="${SEED:-42}"
EMPTY_SHARE="${EMPTY_SHARE:-0.25}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

convert() {  # convert FORMAT NAME [SCHEMA]: NAME_train -> OUT/NAME.json, NAME_test -> TMP/NAME.json
  local format=$1 name=$2 schema=${3:-} ext
  case $format in duie|duee) ext=jsonl ;; *) ext=txt ;; esac
  local flags=(--format "$format")
  [ -n "$schema" ] && flags+=(--schema "$SRC/$schema")
  "$PYTHON" -m utils.ie convert "$SRC/${name}_train.$ext" --output "$OUT/$name.json" --seed "$SEED" \
    --empty_share "$EMPTY_SHARE" "${flags[@]}"
  "$PYTHON" -m utils.ie convert "$SRC/${name}_test.$ext" --output "$TMP/$name.json" --seed "$((SEED + 1))" "${flags[@]}"
}

convert bio ner_bio ner_bio_types.txt
convert boson ner_boson ner_boson_types.txt
convert duie re_duie re_duie_schema.json
convert finre re_finre re_finre_relation2id.txt
convert duee ee_duee ee_duee_schema.json
"$PYTHON" -m utils.ie merge "$TMP"/ner_bio.json "$TMP"/ner_boson.json "$TMP"/re_duie.json "$TMP"/re_finre.json \
  "$TMP"/ee_duee.json --output "$OUT/ie_test.json"
