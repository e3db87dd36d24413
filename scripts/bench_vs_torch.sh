#!/usr/bin/env bash
# Single-rank training throughput of distrainer next to PyTorch (../shared/bench/torch_bench.py),
# 1 thread each, alternating whole launches: refcnn 3x32x32 batch 64, resnet18 and mobilenetv2
# 3x64x64 batch 32, and the same for efficientnet-b0 (PyTorch's mobilenetv2 and efficientnet_b0
# are torchvision's, added to torch_bench's model table here). Prints each JSON line and the
# medians and per-pair ratios.
# Usage: scripts/bench_vs_torch.sh [launches=3] [models="refcnn resnet18 mobilenetv2 efficientnet-b0"]
set -euo pipefail
LAUNCHES=${1:-3}
MODELS=${2:-"refcnn resnet18 mobilenetv2 efficientnet-b0"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${DISTRAINER:-$ROOT/.build/release/distrainer}
BENCH=${TORCH_BENCH_DIR:-$ROOT/../shared/bench}
PY=${TORCH_PYTHON:-/tmp/torch-venv/bin/python}
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1
cat > "$OUT/torch_zoo.py" <<PYEOF
import sys
sys.path.insert(0, "$BENCH")
import torch_bench
base = torch_bench.build
def build(name):
    if name == "mobilenetv2":
        import torchvision
        return torchvision.models.mobilenet_v2(num_classes=10), (3, 64, 64), 32
    if name == "efficientnet-b0":
        import torchvision
        return torchvision.models.efficientnet_b0(num_classes=10), (3, 64, 64), 32
    return base(name)
torch_bench.build = build
torch_bench.main()
PYEOF
for _ in $(seq "$LAUNCHES"); do
  for m in $MODELS; do
    if [ "$m" = refcnn ]; then args=(--image-size 32 --batch-size 64); w=(--windows 3 --steps 8 --warmup 3)
    else args=(--image-size 64 --batch-size 32); w=(--windows 3 --steps 4 --warmup 2); fi
    "$PY" "$OUT/torch_zoo.py" --model "$m" --threads 1 "${w[@]}" | grep '^{' | tail -1 | sed "s/^{/{\"who\": \"torch\", \"m\": \"$m\", /" >> "$OUT/all.jsonl"
    "$BIN" bench --model "$m" "${args[@]}" --threads 1 "${w[@]}" | tail -1 | sed "s/^{/{\"who\": \"distrainer\", \"m\": \"$m\", /" >> "$OUT/all.jsonl"
  done
done
cat "$OUT/all.jsonl"
# shellcheck disable=SC2086  # the model names are separate arguments
python3 - "$OUT/all.jsonl" $MODELS <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
def rate(d):
    for k in ("images_per_sec", "ips_median", "median"):
        if k in d: return d[k]
for m in sys.argv[2:]:
    d = [rate(r) for r in rows if r["m"] == m and r["who"] == "distrainer"]
    t = [rate(r) for r in rows if r["m"] == m and r["who"] == "torch"]
    ratios = [a / b for a, b in zip(d, t)]
    print(f"{m}: distrainer {statistics.median(d):.0f} img/s {d}, PyTorch {statistics.median(t):.0f} {t}, "
          f"ratio per pair median {statistics.median(ratios):.2f}x ({min(ratios):.2f}-{max(ratios):.2f})")
PY
