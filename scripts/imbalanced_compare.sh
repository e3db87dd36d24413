#!/usr/bin/env bash
# Imbalanced Fashion-MNIST: three classes down-sampled to 5 %, then plain cross-entropy vs
# class-weighted cross-entropy vs focal loss, each trained the same way; prints validation
# accuracy, macro-F1 and balanced accuracy (on the full, balanced test set) of the last epoch.
#
#   scripts/imbalanced_compare.sh [DATA_DIR] [OUT_DIR]
#
# DATA_DIR holds train.jsonl and test.jsonl from `distrainer import-idx` (default
# data/fashion-mnist). Environment: RANKS (2), EPOCHS (3), MODEL (refcnn), BATCH (128), LR (0.05),
# MINORITY ("Pullover,Coat,Shirt": the most confusable classes), FRACTION (0.05),
# REST_PER_CLASS (all: keep every image of the other classes; a number caps them, for a quicker
# run with the same 5 % ratio: the minority classes keep FRACTION of that number), SEED (1).
set -euo pipefail
DATA=${1:-data/fashion-mnist}
OUT=${2:-/tmp/distrainer-imbalanced}
RANKS=${RANKS:-2} EPOCHS=${EPOCHS:-3} MODEL=${MODEL:-refcnn} BATCH=${BATCH:-128} LR=${LR:-0.05}
MINORITY=${MINORITY:-Pullover,Coat,Shirt} FRACTION=${FRACTION:-0.05} REST_PER_CLASS=${REST_PER_CLASS:-all} SEED=${SEED:-1}
BIN=${DISTRAINER:-$(dirname "$0")/../.build/release/distrainer}
mkdir -p "$OUT"

python3 - "$DATA" "$OUT" "$MINORITY" "$FRACTION" "$REST_PER_CLASS" "$SEED" <<'PY'
import json, os, random, sys
data, out, minority, fraction, rest, seed = sys.argv[1:]
minority, fraction = set(minority.split(",")), float(fraction)
def absolute(rec, base):
    if not os.path.isabs(rec["image"]): rec["image"] = os.path.join(os.path.abspath(base), rec["image"])
    return rec
by_class = {}
for line in open(os.path.join(data, "train.jsonl")):
    rec = absolute(json.loads(line), data); by_class.setdefault(rec["label"], []).append(rec)
missing = minority - set(by_class)
if missing: sys.exit(f"{data}/train.jsonl: no class {sorted(missing)}")
rng = random.Random(int(seed)); kept = []
for label in sorted(by_class):
    recs = by_class[label]; rng.shuffle(recs)
    n = len(recs) if rest == "all" else min(len(recs), int(rest))
    if label in minority: n = max(1, round(n * fraction))
    kept += recs[:n]; print(f"  {label:12s} {n:6d}")
rng.shuffle(kept)
with open(os.path.join(out, "train.jsonl"), "w") as f:
    for r in kept: f.write(json.dumps(r) + "\n")
with open(os.path.join(out, "test.jsonl"), "w") as f:
    for line in open(os.path.join(data, "test.jsonl")): f.write(json.dumps(absolute(json.loads(line), data)) + "\n")
print(f"  {len(kept)} training images -> {out}/train.jsonl")
PY

common=(train --train "$OUT/train.jsonl" --val "$OUT/test.jsonl" --model "$MODEL" --channels 1 --image-size 28
        --mean 0.286 --std 0.353 --epochs "$EPOCHS" --batch-size "$BATCH" --lr "$LR" --weight-decay 5e-4
        --scheduler cosine --seed "$SEED" --quiet)
declare -A variants=([ce]="--loss ce" [weighted-ce]="--loss weighted-ce --class-weights auto" [focal]="--loss focal --focal-gamma 2")
for name in ce weighted-ce focal; do
    rm -rf "$OUT/run-$name"
    # shellcheck disable=SC2086
    mpirun --oversubscribe -n "$RANKS" "$BIN" "${common[@]}" ${variants[$name]} --out "$OUT/run-$name" > "$OUT/run-$name.log" 2>&1 \
        || { echo "$name failed; see $OUT/run-$name.log"; exit 1; }
done
python3 - "$OUT" "$MINORITY" <<'PY'
import json, sys
out, minority = sys.argv[1], sys.argv[2]
print(f"minority classes: {minority}")
print(f"{'loss':12s} {'val_acc':>8s} {'macro_f1':>9s} {'bal_acc':>8s}")
for name in ["ce", "weighted-ce", "focal"]:
    last = [json.loads(l) for l in open(f"{out}/run-{name}/history.jsonl")][-1]
    print(f"{name:12s} {last['val_acc']:8.4f} {last['val_macro_f1']:9.4f} {last['val_balanced_accuracy']:8.4f}")
PY
