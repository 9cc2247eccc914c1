"""The Fisher diagonal of eq. 11 in one pass, against the per-parameter Jacobian path it
replaced, and what it adds to the NTK step (ntk_fisher against ntk), on 2 CPU cores.

    .venv/bin/python benchmarks/fisher_pass.py      # -> benchmarks/results/fisher_pass.json

Random CIFAR-sized inputs (3x32x32), c = 5 classes, |D| = 500 with |D_f| = 25, float32,
All-CNN x0.4 and ResNet-18 x0.4 (the models of the cpu profile). Timed: the one-pass Fisher
(``fisher_diagonal``: per-layer gradients from one forward and a class-batched backward), the
Jacobian-block path (``vmap(jacrev)`` of the logits per chunk, what every parameter would cost
without the per-layer rules), the NTK step of ``ntk`` and the Fisher at its scrubbed point that
``ntk_fisher`` adds. Each timing is the median of ``REPEATS`` runs after a warm-up.
"""

from __future__ import annotations

import json
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


def _timed(fn, repeats=REPEATS) -> tuple[float, object]:
    fn()  # warm-up
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
    t_jac, F_jac = _timed(lambda: jacobian_path(model, retain[0]), repeats=1)
    rel = ((F - F_jac).norm() / F_jac.norm()).item()
    t_step, step = _timed(lambda: methods.ntk_step(model, w0, retain, forget, cfg, 0), repeats=1)
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
        "fisher_jacobian_path_seconds": t_jac,
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
        "torch": torch.__version__,
        "command": "python benchmarks/fisher_pass.py",
    }
    OUT.write_text(json.dumps(doc, indent=2))
    for r in rows:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
