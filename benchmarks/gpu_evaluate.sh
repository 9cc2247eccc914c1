#!/usr/bin/env bash
# Issue 33's CIFAR-5 evaluation on a lent GPU, as one prepared script: a smoke evaluation of every
# stage on the device (digits, K = 4), then docs/results/cifar5-allcnn-evaluate-gpu.toml at
# K = 16 with 32 shadow models and at its full size (K = 32, 64 shadow models) from the same
# stage cache, so each pass leaves a complete evaluation behind if the next runs out of time and
# a second call on the same warm machine resumes where the first stopped. The CIFAR passes
# train and record (--no-score); score each here afterwards, off the device's time:
#     forgetbox report --rescore <unpacked folder>
#
# From the repository root on the GPU machine, with cifar10.npz in .gpudata/ and the tomli-w
# wheel in .whl/ (the image has every other dependency):
#     OUT=/some/folder bash benchmarks/gpu_evaluate.sh 560
# Writes OUT/log.txt, OUT/env.txt and OUT/<name>.tar.gz per finished evaluation (no cache; the
# cache stays in runs/gpu-cache/ on the machine for the next call).
set -u
DEADLINE=${1:-560}
. "$(dirname "$0")/gpu_setup.sh"

evaluate() { # evaluate NAME LIMIT_S ARGS...: one `forgetbox evaluate` into runs/gpu-out/NAME
    local name=$1 limit=$2
    shift 2
    echo "== $name: limit ${limit} s, started at $(($(date +%s) - START)) s" >>"$LOG"
    timeout "$limit" python3 -m forgetbox.cli evaluate "$@" --out "runs/gpu-out/$name" \
        --cache-dir runs/gpu-cache >>"$LOG" 2>&1
    local rc=$?
    echo "== $name: rc=$rc at $(($(date +%s) - START)) s" >>"$LOG"
    [ -f "runs/gpu-out/$name/evaluation.json" ] && tar -czf "$OUT/$name.tar.gz" -C runs/gpu-out "$name"
    return $rc
}

evaluate smoke 120 --models 4 --shadow-models 4 --device cuda || exit 1
CONFIG=docs/results/cifar5-allcnn-evaluate-gpu.toml
for size in "16 32" "32 64"; do
    set -- $size
    t=$(($(left) - 10))
    [ "$t" -lt 30 ] && exit 0
    evaluate "cifar5-allcnn-evaluate-gpu-k$1" "$t" --config "$CONFIG" --models "$1" \
        --shadow-models "$2" --no-score || break
done
echo "== done at $(($(date +%s) - START)) s" >>"$LOG"
