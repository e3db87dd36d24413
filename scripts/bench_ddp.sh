#!/usr/bin/env bash
# Data-parallel scaling of refcnn (3x32x32, 64 images per rank, 1 thread per rank), repeated over
# whole launches (about 1 launch in 4 of a 2-rank job runs its allreduces slower for its whole
# life here): per launch, in this order,
#   distrainer bench on 1 rank, two independent 1-rank benches at once pinned to cores 0 and 1
#   (no MPI: what sharing the machine's caches and memory costs by itself), distrainer bench under
#   mpirun -n 2 for each bucket size (windows alternate --overlap-allreduce on/off inside the
#   launch), PyTorch on 1 process, PyTorch DDP (gloo) on 2 processes from ../shared/bench.
# Prints each JSON line and a summary of medians over launches.
# Usage: scripts/bench_ddp.sh [launches=3] [bucket sizes in MB="4 0.125"]
set -euo pipefail
LAUNCHES=${1:-3}
BUCKETS=${2:-"4 0.125"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${DISTRAINER:-$ROOT/.build/release/distrainer}
BENCH=${TORCH_BENCH_DIR:-$ROOT/../shared/bench}
PY=${TORCH_PYTHON:-/tmp/torch-venv/bin/python}
TORCHRUN=$(dirname "$PY")/torchrun
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
W=(--windows 3 --steps 10 --warmup 3)
for _ in $(seq "$LAUNCHES"); do
  "$BIN" bench --model refcnn --batch-size 64 --threads 1 --overlap-allreduce off "${W[@]}" | tail -1 >> "$OUT/single.jsonl"
  for core in 0 1; do
    taskset -c "$core" "$BIN" bench --model refcnn --batch-size 64 --threads 1 --overlap-allreduce off "${W[@]}" | tail -1 > "$OUT/pair_$core.json" &
  done
  wait
  python3 -c 'import json, sys; print(json.dumps({"images_per_sec": sum(json.load(open(f))["images_per_sec"] for f in sys.argv[1:])}))' \
    "$OUT/pair_0.json" "$OUT/pair_1.json" >> "$OUT/pair.jsonl"
  for b in $BUCKETS; do
    mpirun --oversubscribe -n 2 "$BIN" bench --model refcnn --batch-size 64 --threads 1 --bucket-mb "$b" "${W[@]}" | tail -1 >> "$OUT/ddp_$b.jsonl"
  done
  if [ -x "$PY" ]; then
    (cd "$BENCH" && "$PY" torch_bench.py --model refcnn --threads 1 "${W[@]}" | tail -1) >> "$OUT/torch.jsonl"
    (cd "$BENCH" && "$TORCHRUN" --standalone --nproc_per_node=2 ddp_bench.py "${W[@]}" 2>/dev/null | grep '^{' | tail -1) >> "$OUT/torch_ddp.jsonl"
  fi
done
for f in "$OUT"/*.jsonl; do echo "== $(basename "$f")"; cat "$f"; done
# shellcheck disable=SC2086  # the bucket sizes are separate arguments
python3 - "$OUT" $BUCKETS <<'PY'
import json, statistics, sys, os
out, buckets = sys.argv[1], sys.argv[2:]
load = lambda n: [json.loads(l) for l in open(os.path.join(out, n)) if l.startswith("{")] if os.path.exists(os.path.join(out, n)) else []
med = lambda v: statistics.median(v) if v else float("nan")
def rate(d):   # distrainer "images_per_sec"; PyTorch scripts print median/images_per_sec variants
    for k in ("images_per_sec", "ips_median", "agg_ips_median"):
        if k in d: return d[k]
    return float("nan")
single = med([rate(d) for d in load("single.jsonl")])
print(f"distrainer 1 rank: {single:.1f} images/s (median of {len(load('single.jsonl'))} launches)")
pair = med([d["images_per_sec"] for d in load("pair.jsonl")])
print(f"two independent 1-rank processes at once (no MPI): {pair:.1f} images/s = {100*pair/(2*single):.1f}% of 2x single")
for b in buckets:
    runs = load(f"ddp_{b}.jsonl")
    for mode in ("on", "off"):
        r = med([d["modes"][mode]["images_per_sec"] for d in runs])
        w = med([d["modes"][mode]["allreduce_wait_ms_per_step"] for d in runs])
        print(f"distrainer 2 ranks, bucket {b} MB, overlap {mode}: {r:.1f} images/s = {100*r/(2*single):.1f}% of 2x single, "
              f"{100*r/pair:.1f}% of the independent pair; allreduce wait {w:.2f} ms/step")
    print(f"  hidden fraction {med([d.get('allreduce_hidden_fraction', float('nan')) for d in runs]):.2f}, "
          f"allocations/step {runs[-1]['allocations_per_step'] if runs else '-'}, peak RSS MB {runs[-1]['peak_rss_mb'] if runs else '-'}")
t1, t2 = load("torch.jsonl"), load("torch_ddp.jsonl")
if t1 and t2:
    s, d = med([rate(x) for x in t1]), med([rate(x) for x in t2])
    print(f"PyTorch 1 process: {s:.1f} images/s; DDP 2 processes: {d:.1f} images/s = {100*d/(2*s):.1f}% of 2x single")
PY
