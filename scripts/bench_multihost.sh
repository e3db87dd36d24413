#!/usr/bin/env bash
# Cross-host figures (a benchmark, not a test; root): 2 ranks on one host (shared memory) next to
# 2 ranks on two hosts made of network namespaces (TCP over a veth bridge, scripts/netns-cluster.sh).
#   - `distrainer doctor --mb 1`: the time of one 1 MB allreduce alone (refcnn's gradient is 0.55 MB);
#   - `distrainer bench` (synthetic data, batch per rank): images/s, allreduce share of a step;
#   - a short `distrainer train` on Fashion-MNIST ($DATA, when present): images/s and
#     allreduce_fraction from history.jsonl.
# Allreduce ms per step = fraction × step time. Each launch is repeated ($REPEATS): about one
# 2-rank launch in 4 runs its allreduces slower for its whole life here (PLATFORM.md).
#   scripts/bench_multihost.sh            REPEATS=3 MODEL=refcnn BATCH=64 STEPS=100
set -euo pipefail
cd "$(dirname "$0")/.."
REPEATS=${REPEATS:-3}
MODEL=${MODEL:-refcnn}
BATCH=${BATCH:-64}
STEPS=${STEPS:-100}
DATA=${DATA:-data/fashion-mnist}
[ -f "$DATA/train.jsonl" ] || DATA=/work/main/data/fashion-mnist
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OPENBLAS_NUM_THREADS=1

# An existing release build is used as it is ($BIN to choose another binary).
bin=${BIN:-$(swift build -c release --show-bin-path)/distrainer}
[ -x "$bin" ] || swift build -c release --product distrainer >/dev/null
work=$(mktemp -d)
state=$work/state
cleanup() { scripts/netns-cluster.sh down "$state" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
mkdir -p "$work/local"
scripts/netns-cluster.sh up "$state" "$work/local" bench-a bench-b
printf 'bench-a slots=1\nbench-b slots=1\n' > "$work/hostfile"

one_host() { mpirun -n 2 --bind-to none -x OPENBLAS_NUM_THREADS "$@"; }
two_hosts() {
    DISTRAINER_NETNS_STATE=$state scripts/netns-cluster.sh exec "$state" bench-a \
        mpirun -n 2 --hostfile "$work/hostfile" --map-by node --bind-to none \
        --mca plm_rsh_agent "$PWD/scripts/netns-agent.sh" \
        --mca oob_tcp_if_include 10.213.0.0/24 --mca btl_tcp_if_include 10.213.0.0/24 -x OPENBLAS_NUM_THREADS "$@"
}

echo "| run | where | images/s | allreduce share | allreduce ms/step |"
echo "| --- | --- | --- | --- | --- |"
for r in $(seq "$REPEATS"); do
    for where in one_host two_hosts; do
        $where "$bin" doctor --mb 1 --json | python3 -c '
import json, sys
j = json.loads(sys.stdin.read().strip().splitlines()[-1])
print("| doctor: one 1 MB allreduce (bucketed) | %s | | | %.2f (%.2f) |" % (sys.argv[1], j["allreduce_ms"], j["bucketed_allreduce_ms"]))
' "$where"
        $where "$bin" bench --model "$MODEL" --image-size 32 --channels 3 --batch-size "$BATCH" --windows 5 | python3 -c '
import json, sys
j = json.loads(sys.stdin.read().strip().splitlines()[-1])
f = sum(j["allreduce_fraction"]) / len(j["allreduce_fraction"])
step = j["batch_per_rank"] * j["ranks"] / j["images_per_sec"]
print("| bench %s (%d params) | %s | %.0f | %.3f | %.1f |" % (j["model"], j["params"], sys.argv[1], j["images_per_sec"], f, 1000 * f * step))
' "$where"
        if [ -f "$DATA/train.jsonl" ]; then
            out=$work/local/run-$where-$r
            $where "$bin" train --train "$DATA/train.jsonl" --model refcnn --image-size 28 --channels 1 --mean 0.286 --std 0.353 \
                --batch-size 128 --epochs 1 --max-steps "$STEPS" --out "$out" --quiet >/dev/null
            # The two-host run's RUN_DIR is on bench-a's own disk.
            hist=$out/history.jsonl
            [ "$where" = one_host ] || hist=$state/disk/bench-a/run-$where-$r/history.jsonl
            python3 -c '
import json, sys
h = json.loads(open(sys.argv[1]).read().strip().splitlines()[-1])
step = 128 / h["images_per_sec"]
print("| train refcnn, Fashion-MNIST, %d steps of 128 | %s | %.0f | %.3f | %.1f |" % (h["steps"], sys.argv[2], h["images_per_sec"], h["allreduce_fraction"], 1000 * h["allreduce_fraction"] * step))
' "$hist" "$where"
        fi
    done
done
