"""One training step of an ensemble member on 2 CPU threads, four ways (issue 33's candidates for
training the K models of `forgetbox evaluate` faster):

    .venv/bin/python benchmarks/ensemble_step.py      # -> benchmarks/results/ensemble_step.json

All-CNN x0.4 (the CIFAR-5 evaluation's model, BatchNorm frozen as in fine-tuning), a batch of 128
random 3x32x32 inputs, c = 5, forward and backward of the cross-entropy; seconds per member per
step, the median of interleaved rounds (the machine may be shared: the load average before
each round is recorded):

- ``sequential``: K models one after another (what `forgetbox evaluate` does);
- ``vmap``: the K models stacked (``torch.func.stack_module_state``) and their gradients taken
  by ``vmap(grad(...))``, functorch's model-ensembling recipe;
- ``channels_last``: sequential, the model and inputs in channels-last memory format;
- ``bf16``: sequential under ``torch.autocast("cpu", bfloat16)`` (changes the arithmetic: listed
  for its speed only);
- ``compiled``: sequential, each model's forward through ``torch.compile`` (the default
  inductor backend; its one-off compilation is timed apart, ``compile_seconds``, not in the
  step);
- ``bf16_compiled``: both (compiled again for autocast, timed apart too).
"""

from __future__ import annotations

import copy
import json
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, stack_module_state, vmap

from forgetbox import models

OUT = Path(__file__).with_name("results") / "ensemble_step.json"
K, B, C, ROUNDS, REPEATS = 4, 128, 5, 3, 3


def _models():
    torch.manual_seed(0)
    base = models.build_model("allcnn", num_classes=C, input_shape=(3, 32, 32), width=0.4)
    return base.eval(), [copy.deepcopy(base).eval() for _ in range(K)]


def candidates() -> dict:
    """Each candidate as a function doing one step of all K members."""
    base, ms = _models()
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(K, B, 3, 32, 32, generator=gen)
    y = torch.randint(0, C, (K, B), generator=gen)
    cl = [copy.deepcopy(m).to(memory_format=torch.channels_last) for m in ms]
    compiled = [copy.deepcopy(m) for m in ms]
    for m in compiled:
        m.forward = torch.compile(m.forward)
    x_cl = [xk.contiguous(memory_format=torch.channels_last) for xk in x]
    params, buffers = stack_module_state(ms)

    def loss_of(p, b, xb, yb):
        return F.cross_entropy(functional_call(base, (p, b), (xb,)), yb)

    stacked = vmap(grad(loss_of))

    def sequential(group=ms, inputs=x, bf16=False):
        for k, m in enumerate(group):
            m.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(m(inputs[k]), y[k])
            loss.backward()

    return {
        "sequential": sequential,
        "vmap": lambda: stacked(params, buffers, x, y),
        "channels_last": lambda: sequential(cl, x_cl),
        "bf16": lambda: sequential(bf16=True),
        "compiled": lambda: sequential(compiled),
        "bf16_compiled": lambda: sequential(compiled, bf16=True),
    }


def main() -> None:
    torch.set_num_threads(2)
    fns = candidates()
    t = time.perf_counter()
    fns["compiled"]()  # the one-off compilation (the same graph serves every member)
    compile_seconds = time.perf_counter() - t
    t = time.perf_counter()
    fns["bf16_compiled"]()
    compile_seconds += time.perf_counter() - t
    runs: dict[str, list[float]] = {name: [] for name in fns}
    loads = []
    for _ in range(ROUNDS):
        loads.append(os.getloadavg()[0])
        for name, fn in fns.items():
            fn()  # warm-up
            t = time.perf_counter()
            for _ in range(REPEATS):
                fn()
            runs[name].append((time.perf_counter() - t) / REPEATS / K)
    out = {
        "command": "python benchmarks/ensemble_step.py",
        "models": K,
        "batch": B,
        "torch": torch.__version__,
        "threads": 2,
        "load_before_rounds": loads,
        "compile_seconds": compile_seconds,
        "seconds_per_member_step": {n: statistics.median(r) for n, r in runs.items()},
        "rounds": runs,
    }
    OUT.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(out["seconds_per_member_step"]))


if __name__ == "__main__":
    main()
