#!/usr/bin/env bash
# Data-stall fraction of refcnn training from a local HTTP server that adds LATENCY_MS to every
# request (Tests/Fixtures/fault_server.py): the cold first epoch fetches every image, the warm
# epochs read the per-rank memory cache. Prints history.jsonl's data_stall per epoch.
#   scripts/bench_stall.sh                 N=6000 Fashion-MNIST training images, 4 epochs, 20 ms
#   RANKS=2 N=12000 EPOCHS=3 scripts/bench_stall.sh
# Data: $DATA (a folder with train.jsonl and its PNGs), default data/fashion-mnist, imported
# from /usr/share/datasets/fashion-mnist when missing. EXTRA adds train options; BIN picks the binary.
set -euo pipefail
cd "$(dirname "$0")/.."
N=${N:-6000}
EPOCHS=${EPOCHS:-4}
LATENCY_MS=${LATENCY_MS:-20}
RANKS=${RANKS:-1}
BATCH=${BATCH:-64}
DATA=${DATA:-data/fashion-mnist}
EXTRA=${EXTRA:-}

# BIN: an already built distrainer (e.g. .build/release/distrainer of a test build); else build.
bin=${BIN:-}
if [ -z "$bin" ]; then
  swift build -c release --product distrainer >/dev/null
  bin=$(swift build -c release --show-bin-path)/distrainer
fi
if [ ! -f "$DATA/train.jsonl" ]; then
  src=/usr/share/datasets/fashion-mnist
  "$bin" import-idx --images $src/train-images-idx3-ubyte.gz --labels $src/train-labels-idx1-ubyte.gz \
    --classes fashion-mnist --out "$DATA" --name train >/dev/null
fi
DATA=$(cd "$DATA" && pwd)

work=$(mktemp -d)
server=""
cleanup() { exec 3>&- 2>/dev/null || true; [ -n "$server" ] && kill "$server" 2>/dev/null; wait 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
# The server exits when the write end of its stdin FIFO (fd 3, held here) closes.
mkfifo "$work/stdin"
python3 Tests/Fixtures/fault_server.py "$DATA" 3600 127.0.0.1 "$LATENCY_MS" < "$work/stdin" > "$work/port" &
server=$!
exec 3> "$work/stdin"
for _ in $(seq 50); do grep -q PORT "$work/port" 2>/dev/null && break; sleep 0.1; done
port=$(awk '{print $2}' "$work/port")

# The first N records, their images as URLs on the server.
python3 - "$DATA/train.jsonl" "$N" "$port" > "$work/urls.jsonl" <<'PY'
import json, sys
path, n, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
with open(path) as f:
    for i, line in enumerate(f):
        if i >= n: break
        r = json.loads(line)
        r["image"] = "http://127.0.0.1:%s/%s" % (port, r["image"])
        print(json.dumps(r))
PY

launch=("$bin")
[ "$RANKS" -gt 1 ] && launch=(mpirun --oversubscribe -n "$RANKS" "$bin")
echo "== refcnn, $N images over HTTP (+${LATENCY_MS} ms per request), $RANKS rank(s), global batch $BATCH, $(nproc) cores, load $(cut -d' ' -f1 /proc/loadavg)"
# shellcheck disable=SC2086
"${launch[@]}" train --train "$work/urls.jsonl" --model refcnn --image-size 28 --channels 1 --epochs "$EPOCHS" \
  --batch-size "$BATCH" --cache-mem 512MB --out "$work/run" --quiet $EXTRA | grep -v "^distrainer:"
python3 - "$work/run/history.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
print("epoch  data_stall  images/s  seconds  cache_hit_rate  fetches  depth(decode/fetch)")
for r in rows:
    print("%5d  %9.1f%%  %8.0f  %7.1f  %14.3f  %7d  %d/%d" % (r["epoch"], 100 * r["data_stall"], r["images_per_sec"], r["seconds"],
          r["cache_hit_rate"], r["cache_fetches"], r.get("prefetch_depth", 0), r.get("fetch_ahead_depth", 0)))
warm = rows[1:]
if warm:
    print("cold (epoch 1): %.1f%% stall; warm (epochs 2-%d): %.1f%% stall (mean)" % (
        100 * rows[0]["data_stall"], len(rows), 100 * sum(r["data_stall"] for r in warm) / len(warm)))
PY
