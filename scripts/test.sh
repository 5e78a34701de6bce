#!/usr/bin/env bash
# Set up .venv (with pytest), fetch the embedded base model for the end-to-end tests, run the tests.
#   bash scripts/test.sh           every test (what CI runs: .ci/run)
#   bash scripts/test.sh --fast    the fast tier: no test marked slow (the embedded base, several processes, long
#                                  trainings) or browser; for a developer changing one thing (pytest.ini has the tiers)
# Other arguments go to pytest (e.g. -k ddp, -x, -m "not browser").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
fast=false
pytest_args=()
for arg in "$@"; do
  if [ "$arg" = "--fast" ]; then fast=true; else pytest_args+=("$arg"); fi
done
REQUIREMENTS="$ROOT/requirements-dev.txt" source scripts/setup_env.sh
export WANDB_MODE="${WANDB_MODE:-disabled}"
if $fast; then
  exec "$PYTHON" -m pytest -q -m "not slow and not browser" "${pytest_args[@]}"
fi
bash base_models/load.sh
# The browser tests drive Debian's Chromium, and the Chinese answers and PDFs need CJK fonts; as root, install them.
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null \
    && { ! command -v chromium >/dev/null || [ ! -d /usr/share/fonts/opentype/noto ]; }; then
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null) \
    || echo "warning: could not install chromium and fonts-noto-cjk; the browser and PDF tests will be skipped" >&2
fi
exec "$PYTHON" -m pytest -q "${pytest_args[@]}"
