# The common start of the shell scripts, sourced right after `set -euo pipefail`:
# - ROOT is the repository and the working directory, wherever the script was called from;
# - PYTHON is the project's .venv interpreter (python3 where there is none yet, e.g. before set-up, or $PYTHON if set);
# - `add_flag --flag VAR` passes `--flag "$VAR"` on (in the array `args`) only when the variable VAR is set, so
#   the Python entry point's own default (utils/settings.py) applies otherwise;
# - `setting NAME` prints utils/settings.py's NAME, for the few defaults a script itself needs (no second copy).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-$ROOT/.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
args=()
add_flag() { if [ -n "${!2+x}" ]; then args+=("$1" "${!2}"); fi; }
setting() { "$PYTHON" -c "from utils import settings; print(settings.$1)"; }
