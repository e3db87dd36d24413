#!/usr/bin/env bash
# Benchmark `distrainer split` (release build) against tools/split_reference.py on one generated
# manifest, alternating the two, and print wall time, CPU time, records/s and peak RSS.
#
#   tools/bench_split.sh [LINES=1000000] [RUNS=3] [WORKDIR=/tmp/distrainer-bench]
set -euo pipefail
cd "$(dirname "$0")/.."
LINES=${1:-1000000}
RUNS=${2:-3}
WORK=${3:-/tmp/distrainer-bench}
BIN=$(swift build -c release --show-bin-path)/distrainer
[ -x "$BIN" ] || { echo "build first: swift build -c release" >&2; exit 1; }
mkdir -p "$WORK"
RAW="$WORK/raw-$LINES.jsonl"
if [ ! -f "$RAW" ]; then
  echo "generating $LINES lines → $RAW"
  python3 tools/gen_manifest.py --lines "$LINES" --out "$RAW"
fi
ls -l "$RAW"
FIELDS=(--image-field image_url --label-field latin_name --group-field observation)

measure() {  # name, command…
  local name=$1; shift
  local log="$WORK/time-$name.txt"
  /usr/bin/time -v "$@" >"$WORK/stdout-$name.txt" 2>"$log"
  local wall user sys rss
  wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {print $2}' "$log")
  user=$(awk -F': ' '/User time/ {print $2}' "$log")
  sys=$(awk -F': ' '/System time/ {print $2}' "$log")
  rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$log")
  python3 - "$name" "$wall" "$user" "$sys" "$rss" "$LINES" <<'EOF'
import sys
name, wall, user, sys_t, rss, lines = sys.argv[1:]
parts = [float(p) for p in wall.split(":")]
secs = sum(p * 60 ** i for i, p in enumerate(reversed(parts)))
cpu = float(user) + float(sys_t)
n = int(lines)
print(f"{name:7s} wall {secs:6.2f} s  cpu {cpu:6.2f} s  {n / secs:9,.0f} rec/s (wall)  {n / cpu:9,.0f} rec/s (cpu)"
      f"  peak RSS {int(rss) / 1024:6.1f} MiB  {int(rss) * 1024 / n:5.0f} B/record")
EOF
}

echo "load: $(cat /proc/loadavg)"
for _ in $(seq "$RUNS"); do
  rm -rf "$WORK/out-swift" "$WORK/out-python"
  measure swift "$BIN" split --input "$RAW" --out "$WORK/out-swift" "${FIELDS[@]}" --on-bad-record skip --seed 1
  measure python python3 tools/split_reference.py --input "$RAW" --out "$WORK/out-python" "${FIELDS[@]}" --seed 1
done
echo "load: $(cat /proc/loadavg)"
tail -n 4 "$WORK/stdout-python.txt"
grep -E "train:|val:|test:|dedup|conflicts|components" "$WORK/stdout-swift.txt"
