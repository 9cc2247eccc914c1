"""The Fisher diagonal of eq. 11 in one pass, against the per-parameter Jacobian path it
replaced, and what it adds to the NTK step (ntk_fisher against ntk), on 2 CPU cores.

    .venv/bin/python benchmarks/fisher_pass.py      # -> benchmarks/results/fisher_pass.json

Random CIFAR-sized inputs (3x32x32), c = 5 classes, |D| = 500 with |D_f| = 25, float32,
All-CNN x0.4 and ResNet-18 x0.4 (the models of the cpu profile). Timed: the one-pass Fisher
(``fisher_diagonal``: per-layer gradients from one forward and a class-batched backward), the
Jacobian-block path (``vmap(jacrev)`` of the logits per chunk, what every parameter would cost
without the per-layer rules; timed once on ``JAC_N`` samples and extrapolated, compared with the
one-pass Fisher on the same samples), the NTK step of ``ntk`` (timed once, cold) and the Fisher
at its scrubbed point that ``ntk_fisher`` adds. Fisher timings are the median of ``REPEATS``
runs after a warm-up. ``BENCH_CONDITIONS``: a note on the machine's load, recorded.
"""

from __future__ import annotations

import json
import os
import statistics
import sys
import time
from pathlib import Path

import torch

from forgetbox import methods, models
from forgetbox.functional import load_flat_, model_function, parameters_of
from forgetbox.methods import ForgetConfig
from forgetbox.methods.fisher_diag import _jacobian_squares

OUT = Path(__file__).with_name("results") / "fisher_pass.json"
REPEATS = 3
N, N_FORGET, C = 500, 25, 5
JAC_N = 64  # samples of D_r on which the (slow) Jacobian path is timed and compared


def _timed(fn, repeats=REPEATS, warm=True) -> tuple[float, object]:
    if warm:
        fn()
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def jacobian_path(model, x, chunk=8) -> torch.Tensor:
    """sum_k p_k (d log p_k/dw)^2 over x from the logits' Jacobian blocks, every parameter."""
    f = model_function(model)
    params = parameters_of(model)
    total = None
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk]
        with torch.no_grad():
            p = torch.softmax(f(params, xb), -1)
        sq = _jacobian_squares(f, params, xb, list(params), p)
        flat = torch.cat([v.reshape(-1) for v in sq.values()])
        total = flat if total is None else total + flat
    return total / len(x)


def one_model(name: str) -> dict:
    gen = torch.Generator().manual_seed(0)
    model = models.build_model(name, num_classes=C, input_shape=(3, 32, 32), width=0.4)
    w0 = models.build_model(
        name, num_classes=C, input_shape=(3, 32, 32), width=0.4, generator_seed=1
    )
    x = torch.randn(N, 3, 32, 32, generator=gen)
    y = torch.randint(0, C, (N,), generator=gen)
    retain, forget = (x[:-N_FORGET], y[:-N_FORGET]), (x[-N_FORGET:], y[-N_FORGET:])
    cfg = ForgetConfig()
    t_fisher, F = _timed(lambda: methods.fisher_of(model, retain[0], cfg))
    sub = retain[0][:JAC_N]
    t_sub, F_sub = _timed(lambda: methods.fisher_of(model, sub, cfg))
    t_jac, F_jac = _timed(lambda: jacobian_path(model, sub), repeats=1, warm=False)
    rel = ((F_sub - F_jac).norm() / F_jac.norm()).item()
    step_fn = lambda: methods.ntk_step(model, w0, retain, forget, cfg, 0)  # noqa: E731
    t_step, step = _timed(step_fn, repeats=1, warm=False)
    mean, *_ = methods.ntk_point(model, w0, retain, forget, cfg, 0, direction=step)
    probe = load_flat_(
        models.build_model(name, num_classes=C, input_shape=(3, 32, 32), width=0.4), mean
    )
    t_fisher_at, _ = _timed(lambda: methods.fisher_of(probe, retain[0], cfg))
    return {
        "model": f"{name} x0.4",
        "parameters": sum(p.numel() for p in model.parameters()),
        "n_retain": len(retain[0]),
        "fisher_one_pass_seconds": t_fisher,
        "jacobian_path_samples": JAC_N,
        "fisher_one_pass_seconds_on_those": t_sub,
        "fisher_jacobian_path_seconds_on_those": t_jac,
        "fisher_jacobian_path_seconds_extrapolated": t_jac * len(retain[0]) / JAC_N,
        "one_pass_vs_jacobian_relative_difference": rel,
        "ntk_step_seconds": t_step,
        "fisher_at_scrubbed_point_seconds": t_fisher_at,
        "ntk_fisher_over_ntk": (t_step + t_fisher_at) / t_step,
    }


def main() -> None:
    names = sys.argv[1:] or ["allcnn", "resnet18"]
    rows = [one_model(n) for n in names]
    doc = {
        "rows": rows,
        "torch_threads": torch.get_num_threads(),
        "conditions": os.environ.get("BENCH_CONDITIONS", "quiet machine"),
        "torch": torch.__version__,
        "command": "python benchmarks/fisher_pass.py",
    }
    OUT.write_text(json.dumps(doc, indent=2))
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
