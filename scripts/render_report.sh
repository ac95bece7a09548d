#!/usr/bin/env bash
# Render a run's report.html to a PNG in headless Chromium, as a browser shows it.
# Usage: scripts/render_report.sh RUN_DIR [OUT.png]
# Needs Debian's chromium (apt-get install chromium). The page must load from disk with no
# network; the PNG shows what a reader sees.
set -euo pipefail
run_dir=${1:?usage: scripts/render_report.sh RUN_DIR [OUT.png]}
out=${2:-$run_dir/report.png}
html=$(realpath "$run_dir/report.html")
[ -f "$html" ] || { echo "no $html: run 'discl report $run_dir' first" >&2; exit 2; }
browser=$(command -v chromium || command -v chromium-browser || true)
[ -n "$browser" ] || { echo "chromium not found: apt-get install chromium" >&2; exit 2; }
profile=$(mktemp -d)
trap 'rm -rf "$profile"' EXIT
flags=(--headless --no-sandbox --disable-gpu --disable-quic --no-first-run --disable-background-networking
       --disable-component-update --disable-sync --user-data-dir="$profile")
# The DOM as the browser built it: a page that failed to load has no image in it.
dom=$("$browser" "${flags[@]}" --virtual-time-budget=5000 --run-all-compositor-stages-before-draw --dump-dom \
      "file://$html" 2>/dev/null)
images=$(grep -o '<img ' <<<"$dom" | wc -l)
[ "$images" -gt 0 ] || { echo "the report shows no image" >&2; exit 1; }
"$browser" "${flags[@]}" --window-size=1280,3000 --screenshot="$(realpath -m "$out")" "file://$html" 2>/dev/null
python3 - "$out" <<'PY'
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
width, height = struct.unpack(">II", data[16:24])
print(f"rendered {sys.argv[1]}: {width}x{height}")
PY
echo "images in the page: $images"
