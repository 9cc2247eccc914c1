"""The command line's ``--malloc keep`` (``forgetbox.allocator.keep_freed_memory``) against
glibc's default settings, on the two costs that dominate ``forgetbox evaluate`` and the scrubs
on a CPU:

    .venv/bin/python benchmarks/allocator.py      # -> benchmarks/results/allocator.json

- ``finetune``: ``training.finetune`` of All-CNN x0.4 (the CIFAR-5 evaluation's model) on
  2,500 random 3x32x32 images with random labels, batch 128, 3 epochs, each followed by the
  stop rule's pass over the training set (random labels never reach zero error);
- ``kernel``: the per-layer exact kernel (``jacobian="auto"``) of ResNet-18 x0.4, |D| = 250,
  c = 5 (``benchmarks/structured_kernel.py``'s problem);
- ``reuse``: one 64 MiB tensor allocated, filled and freed 16 times: the page faults of each
  round show when a freed block is reused, the peak what keeping it costs.

Each run in its own process on 2 threads, the two settings interleaved over rounds; recorded per
run: wall seconds, user and system CPU seconds, minor page faults, peak resident memory, and a
SHA-256 of the result (the trained weights, the kernel) to show that the arithmetic is the same.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

OUT = Path(__file__).with_name("results") / "allocator.json"
ROUNDS = 3
WORKLOADS = ("finetune", "kernel", "reuse")
SETTINGS = ("default", "keep")


def _digest(tensors) -> str:
    h = hashlib.sha256()
    for t in tensors:
        h.update(t.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def _finetune():
    import torch

    from forgetbox import models, training

    torch.manual_seed(0)
    model = models.build_model("allcnn", num_classes=5, input_shape=(3, 32, 32), width=0.4)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(2500, 3, 32, 32, generator=gen)
    y = torch.randint(0, 5, (2500,), generator=gen)
    config = training.FinetuneConfig(max_epochs=3, lr=0.001)
    result = training.finetune(model.eval(), x, y, config, seed=0)
    return [p for p in result.model.parameters()]


def _kernel():
    sys.path.insert(0, str(Path(__file__).parent))
    from structured_kernel import build

    from forgetbox.functional import model_function, parameters_of
    from forgetbox.ntk.structured import layer_kernel_and_jacobian

    model, x, _ = build("resnet18", 0.4, 250)
    K, _, _ = layer_kernel_and_jacobian(
        model_function(model), parameters_of(model), x, jacobian="auto"
    )
    return [K]


def _reuse():
    import torch

    faults = []
    for _ in range(16):
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t = torch.empty(16 * 2**20)
        t.fill_(1.0)
        del t
        faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
    return [torch.tensor(faults)]


def run_one(workload: str, setting: str) -> dict:
    """One run in this process."""
    import torch

    from forgetbox import allocator

    torch.set_num_threads(2)
    applied = allocator.keep_freed_memory() if setting == "keep" else False
    r0, t = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    result = {"finetune": _finetune, "kernel": _kernel, "reuse": _reuse}[workload]()
    seconds = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    return {
        "seconds": seconds,
        "user_seconds": r1.ru_utime - r0.ru_utime,
        "system_seconds": r1.ru_stime - r0.ru_stime,
        "minor_faults": r1.ru_minflt - r0.ru_minflt,
        "peak_rss_gb": r1.ru_maxrss / 2**20,
        "applied": applied,
        "sha256": _digest(result),
        **({"faults_per_round": result[0].tolist()} if workload == "reuse" else {}),
    }


def measure(workload: str, setting: str) -> dict:
    load = os.getloadavg()[0]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    proc = subprocess.run(
        [sys.executable, __file__, "--one", workload, setting],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    res = {"load_before": load, **json.loads(proc.stdout.strip().splitlines()[-1])}
    print(workload, setting, json.dumps(res), flush=True)
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", nargs=2, help=argparse.SUPPRESS)
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(*args.one)))
        return
    from ntk_engine import machine

    from forgetbox.versions import hardware, source_commit

    runs = {w: {s: [] for s in SETTINGS} for w in WORKLOADS}
    for _ in range(args.rounds):
        for w in WORKLOADS:
            for s in SETTINGS:
                runs[w][s].append(measure(w, s))
    out = {
        "command": "python benchmarks/allocator.py",
        "machine": machine(),
        "hardware": hardware(),
        "source": source_commit(),
        "rounds": args.rounds,
        "runs": runs,
        "median_seconds": {
            w: {s: statistics.median(r["seconds"] for r in runs[w][s]) for s in SETTINGS}
            for w in WORKLOADS
        },
        "same_result": {  # reuse returns its page faults, which differ by design
            w: len({r["sha256"] for s in SETTINGS for r in runs[w][s]}) == 1
            for w in WORKLOADS
            if w != "reuse"
        },
    }
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["median_seconds"]), json.dumps(out["same_result"]))


if __name__ == "__main__":
    main()
