#!/usr/bin/env bash
# Look at a comparison report as a reader would: render report.html in headless Chromium to a PNG.
#   bash scripts/screenshot_report.sh [REPORT_HTML] [OUT_PNG]
#   defaults: outputs/comparison/report.html -> the same folder's report.png
# Needs Chromium (Debian: apt-get install chromium fonts-noto-cjk); it is not part of the Python setup.
set -euo pipefail
REPORT="$(realpath "${1:-outputs/comparison/report.html}")"
OUT="${2:-$(dirname "$REPORT")/report.png}"
BROWSER="$(command -v chromium || command -v chromium-browser || command -v google-chrome || true)"
[ -n "$BROWSER" ] || { echo "error: no Chromium found; install it (Debian: apt-get install chromium fonts-noto-cjk)" >&2; exit 1; }
profile="$(mktemp -d)"
trap 'rm -rf "$profile"' EXIT
# The background-networking flags keep Chromium from reaching out on a machine without network.
"$BROWSER" --headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking \
  --disable-component-update --disable-sync --user-data-dir="$profile" --window-size=1300,1600 \
  --screenshot="$OUT" "file://$REPORT" 2>/dev/null
echo "$OUT"
