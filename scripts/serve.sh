#!/usr/bin/env bash
# Serve the base and adapters with an OpenAI-compatible API (and the web page) at http://HOST:PORT. Each variable
# below, when set, becomes serve.py's flag; unset, serve.py's own default applies (docs/*/serving.md). Extra
# arguments go to serve.py.
#   BASE_MODEL  HOST  PORT  API_KEY (unset: no key needed)  LOAD_8BIT  LOAD_4BIT  MAX_BATCH_SIZE  BATCH_WINDOW_MS
#   QUEUE_SIZE (more waiting requests get 503)  WEB_PAGE (the chat page at /)
#   LORA_WEIGHTS    adapters: PATH,PATH or NAME=PATH,NAME=PATH; unset = the base alone
#   MAX_NEW_TOKENS  for requests without max_tokens
#   BF16            unset: bf16 where the hardware has it natively; False: full precision, batch-invariant answers
#   TEMPLATE        the base's prompt template; unset = its own chat template (adapters use their training one)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

add_flag --base_model BASE_MODEL
add_flag --lora_weights LORA_WEIGHTS
add_flag --host HOST
add_flag --port PORT
add_flag --api_key API_KEY
add_flag --load_8bit LOAD_8BIT
add_flag --load_4bit LOAD_4BIT
add_flag --bf16 BF16
add_flag --max_new_tokens MAX_NEW_TOKENS
add_flag --max_batch_size MAX_BATCH_SIZE
add_flag --batch_window_ms BATCH_WINDOW_MS
add_flag --queue_size QUEUE_SIZE
add_flag --prompt_template TEMPLATE
add_flag --web_page WEB_PAGE
exec "$PYTHON" serve.py "${args[@]}" "$@"
