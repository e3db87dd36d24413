#!/usr/bin/env bash
# Fetch + decode throughput of one rank (distrainer fetch-bench) next to Pillow, both reading
# the same 224x224 PNG and JPEG files from the local test server (Tests/Fixtures/fault_server.py).
#   scripts/bench_fetch.sh            N=400 images of each format, 3 passes
# Needs Python 3 with Pillow (Debian: python3-pil; PILLOW_PYTHON picks the interpreter).
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-400}
PASSES=${PASSES:-3}
PY=${PILLOW_PYTHON:-/usr/bin/python3}
"$PY" -c 'import PIL' 2>/dev/null || { echo "Pillow missing for $PY: apt-get install python3-pil" >&2; exit 1; }

swift build -c release --product distrainer >/dev/null
bin=$(swift build -c release --show-bin-path)/distrainer

work=$(mktemp -d)
server=""
cleanup() { exec 3>&- 2>/dev/null || true; [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/files"
"$PY" scripts/pillow_bench.py make "$work/files" "$N"

# The server exits when the write end of its stdin FIFO (fd 3, held here) closes.
mkfifo "$work/stdin"
python3 Tests/Fixtures/fault_server.py "$work/files" 900 < "$work/stdin" > "$work/port" &
server=$!
exec 3> "$work/stdin"
for _ in $(seq 50); do grep -q PORT "$work/port" 2>/dev/null && break; sleep 0.1; done
port=$(awk '{print $2}' "$work/port")

for fmt in png jpg; do
  prefix=$([ $fmt = png ] && echo p || echo j)
  for k in $(seq 0 $((N - 1))); do echo "http://127.0.0.1:$port/$prefix$k.$fmt"; done > "$work/$fmt.txt"
  size=$(du -sb --apparent-size "$work/files/"*".$fmt" | awk '{s += $1} END {print s}')
  echo "== $fmt: $N files, $((size / N)) bytes each on average"
  echo -n "distrainer: "; "$bin" fetch-bench --list "$work/$fmt.txt" --channels 3 --image-size 224 --passes "$PASSES"
  echo -n "pillow:     "; "$PY" scripts/pillow_bench.py bench "$work/$fmt.txt" "$PASSES"
done
