#!/usr/bin/env bash
# Set up .venv (with pytest), fetch the embedded base model for the end-to-end tests, run the tests.
# Extra arguments go to pytest (e.g. -k ddp, -x).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
REQUIREMENTS="$ROOT/requirements-dev.txt" source scripts/setup_env.sh
bash base_models/load.sh
export WANDB_MODE="${WANDB_MODE:-disabled}"
exec "$PYTHON" -m pytest tests -q -p no:cacheprovider "$@"
