#!/usr/bin/env bash
# Look at the web chat page as a user would: start serve.py, ask a question on its page in headless Chromium,
# wait for the streamed answer, write a PNG, stop the server. With an adapter, the question goes to the base and
# the adapter side by side (the Side-by-side tab); without one, to the base in the Chat tab.
#   bash scripts/screenshot_chat.sh            settings from the environment:
#   BASE_MODEL    unset: serve.py's default
#   LORA_WEIGHTS  adapter folder(s), NAME=PATH,...; unset: finetune.py's output folder when it holds an adapter;
#                 empty: the base alone
#   QUESTION (什么是债券？)  MAX_TOKENS (96, typed into the page)  PORT (8765)  OUT (docs/chat_page.png)
# Needs Chromium (Debian: apt-get install chromium fonts-noto-cjk) and Playwright (requirements-dev.txt).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
if [ -z "${LORA_WEIGHTS+x}" ]; then
  adapter="$(setting ADAPTER_DIR)"
  [ ! -f "$adapter/adapter_config.json" ] || LORA_WEIGHTS="$adapter"
fi
LORA_WEIGHTS="${LORA_WEIGHTS:-}"
QUESTION="${QUESTION:-什么是债券？}" MAX_TOKENS="${MAX_TOKENS:-96}" PORT="${PORT:-8765}" OUT="${OUT:-docs/chat_page.png}"
command -v chromium >/dev/null || command -v chromium-browser >/dev/null || command -v google-chrome >/dev/null \
  || { echo "error: no Chromium found; install it (Debian: apt-get install chromium fonts-noto-cjk)" >&2; exit 1; }

log="$(mktemp)"
add_flag --base_model BASE_MODEL
server_args=(serve.py "${args[@]}" --port "$PORT")
[ -z "$LORA_WEIGHTS" ] || server_args+=(--lora_weights "$LORA_WEIGHTS")
"$PYTHON" "${server_args[@]}" >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; wait "$server" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 300); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 "$server" 2>/dev/null || { echo "error: serve.py stopped:" >&2; tail -20 "$log" >&2; exit 1; }
  sleep 1
done

driver=("$PYTHON" scripts/chat_page.py "http://127.0.0.1:$PORT/" "$QUESTION" "$OUT" --max_tokens "$MAX_TOKENS")
if [ -n "$LORA_WEIGHTS" ]; then
  # Left: the base; right: the first adapter (the page's defaults).
  "${driver[@]}" --side_by_side
else
  "${driver[@]}"
fi
