# Sourced by the wrapper scripts. `add_flag --flag VAR` passes `--flag "$VAR"` on only when the variable VAR
# is set, so the Python entry point's own default (utils/settings.py) applies otherwise.
args=()
add_flag() { if [ -n "${!2+x}" ]; then args+=("$1" "${!2}"); fi; }
