#!/usr/bin/env bash
# The paper profile (full widths, the paper's epochs) of `forgetbox run` on a lent GPU, as one
# prepared script: a smoke test of every stage on the device, then All-CNN and ResNet-18 on the
# paper's small CIFAR-5 split, seed by seed (the stage cache carries the earlier seeds, so each
# pass adds one seed and leaves complete results behind if the next one runs out of time).
#
# From the repository root on the GPU machine, with cifar10.npz in .gpudata/ and the tomli-w
# wheel in .whl/ (the image has every other dependency):
#     OUT=/some/folder bash benchmarks/gpu_paper_run.sh 520
# MODELS="resnet18" runs one model only (e.g. to finish ResNet-18's seeds in a later session).
# Writes OUT/log.txt, OUT/env.txt and one OUT/<run>.tar.gz per run folder (no cache).
# The committed results: docs/results/cifar5-{allcnn,resnet18}-paper-gpu/ (configs beside them).
set -u
DEADLINE=${1:-520}
. "$(dirname "$0")/gpu_setup.sh"

run() { # run NAME LIMIT_S ARGS...: one `forgetbox run` into /tmp/runs/NAME
    local name=$1 limit=$2
    shift 2
    echo "== $name: limit ${limit} s, started at $(($(date +%s) - START)) s" >>"$LOG"
    timeout "$limit" python3 -m forgetbox.cli run "$@" --device "${DEVICE:-cuda}" \
        --out "/tmp/runs/$name" --cache-dir "/tmp/cache/$name" >>"$LOG" 2>&1
    local rc=$?
    echo "== $name: rc=$rc at $(($(date +%s) - START)) s" >>"$LOG"
    [ -f "/tmp/runs/$name/results.json" ] && tar -czf "$OUT/$name.tar.gz" -C /tmp/runs "$name"
    return $rc
}

run smoke 150 --dataset cifar10-npz --pretrain-dataset cifar10-59 --data-dir .gpudata \
    --model allcnn --width 0.25 --profile quick --seeds 0 --train-per-class 20 \
    --num-to-forget 10 || exit 1

for model in ${MODELS:-allcnn resnet18}; do
    for seeds in 0 0,1 0,1,2; do
        t=$(($(left) - 10))
        [ "$t" -lt 30 ] && exit 0
        run "cifar5-$model-paper-gpu" "$t" --config "docs/results/cifar5-$model-paper-gpu.toml" \
            --seeds "$seeds" || break
    done
done
echo "== done at $(($(date +%s) - START)) s" >>"$LOG"
