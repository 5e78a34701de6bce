#!/usr/bin/env bash
# Set up .venv (with pytest), fetch the embedded base model for the end-to-end tests, run the tests.
# Extra arguments go to pytest (e.g. -k ddp, -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQUIREMENTS="$ROOT/requirements-dev.txt" source scripts/setup_env.sh
bash base_models/load.sh
# The web-page test drives Debian's Chromium (with CJK fonts for the Chinese answers); as root, install it when missing.
if [ "$(id -u)" = 0 ] && ! command -v chromium >/dev/null && command -v apt-get >/dev/null; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) \
    || echo "warning: could not install chromium; tests/test_web_page.py will be skipped" >&2
fi
export WANDB_MODE="${WANDB_MODE:-disabled}"
exec "$PYTHON" -m pytest tests -q -p no:cacheprovider "$@"
