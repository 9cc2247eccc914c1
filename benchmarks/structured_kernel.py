"""The per-layer exact kernel (issue 31) against today's contraction path, on 2 CPU threads.

    .venv/bin/python benchmarks/structured_kernel.py                 # everything, writes the JSON
    .venv/bin/python benchmarks/structured_kernel.py --only resnet18-0.4 --repeats 2
    .venv/bin/python benchmarks/structured_kernel.py --only nystrom --repeats 1  # CG's columns
    .venv/bin/python benchmarks/table.py structured

Problem (as the issue specifies): random CIFAR-sized inputs 3x32x32, c = 5, float32, randomly
initialised models in eval mode; the kernel build alone (``layer_kernel_and_jacobian``) with
``jacobian`` = contraction (today's ``vmap(jacrev)`` path), auto and structured, each in its own
process (its peak resident memory, ``ru_maxrss``, is its own), runs interleaved. Recorded per
run: seconds, peak RSS, the per-stage seconds and the plan (each layer's form and both forms'
multiply-adds), from which the achieved GFLOP/s of each form (2 flops per multiply-add); the
kernels' relative difference to the contraction kernel (float32 products, float64 sums); the
machine's float32 matmul rate on 2 threads; the load average before each run (the machine is
shared) and each run's process CPU time (less sensitive to other jobs than the wall time).
``structured`` on a full model is run at a small |D| only: its early layers (T = 1024
positions) cost ~1000x the contracted form, so the time at the target |D| is the flop model's
count at the measured rate, marked predicted. Exactness: delta_w in float64 at a small |D| by
each mode against ``forgetbox.reference.dense_delta`` (per-sample autograd, brute force).

Results: benchmarks/results/structured_kernel.json, tabulated in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import torch
from ntk_engine import machine

from forgetbox import models, ntk, reference
from forgetbox.functional import model_function, parameters_of
from forgetbox.ntk.flops import LayerForm
from forgetbox.ntk.solvers import NystromPreconditioner
from forgetbox.ntk.structured import layer_kernel_and_jacobian

OUT = Path(__file__).with_name("results") / "structured_kernel.json"
TMP = Path("runs/bench-structured")
C = 5
CASES = {  # name: (arch, width, |D|, |D| for the structured mode)
    "resnet18-0.4": ("resnet18", 0.4, 500, 8),
    "resnet18-1.0": ("resnet18", 1.0, 200, 8),
    "allcnn-0.4": ("allcnn", 0.4, 500, 8),
}


def build(arch: str, width: float, n: int, dtype=torch.float32, seed: int = 1):
    model = models.build_model(
        arch, num_classes=C, input_shape=(3, 32, 32), width=width, generator_seed=0
    )
    model = model.to(dtype).eval()
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, 32, 32, generator=gen).to(dtype)
    y = torch.randint(0, C, (n,), generator=gen)
    return model, x, y


def plan_summary(report) -> dict:
    plan = report.plan
    if plan is None:  # the contraction path (chosen, or auto's choice: its note says why)
        return {"passes": 0, "note": report.note} if report.note else {}
    layers = [
        {
            "name": lp.name,
            "form": lp.form.value,
            "positions": lp.shape.positions,
            "inp": lp.shape.inp,
            "out": lp.shape.out,
            "groups": lp.shape.groups,
            "structured_macs": lp.structured_macs,
            "contracted_macs": lp.contracted_macs,
            "note": lp.note,
        }
        for lp in plan.layers
        if lp.form is not None
    ]
    return {
        "layers": layers,
        "fallback": list(plan.fallback),
        "structured_macs": plan.macs(LayerForm.STRUCTURED),
        "contracted_macs": plan.macs(LayerForm.CONTRACTED),
        "contraction_path_macs": sum(lp.contracted_macs for lp in plan.layers if lp.form),
        "passes": report.passes,
        "chunk": report.chunk,
        "stage_seconds": dict(report.seconds),
    }


def run_kernel(spec: dict) -> dict:
    """One kernel build in this process."""
    torch.set_num_threads(2)
    arch, width = spec["arch"], spec["width"]
    model, x, _ = build(arch, width, spec["n"])
    f, params = model_function(model), parameters_of(model)
    t, cpu = time.perf_counter(), time.process_time()
    K, _, report = layer_kernel_and_jacobian(
        f, params, x, jacobian=spec["mode"], memory_budget=spec.get("budget")
    )
    out = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - cpu}
    out.update(plan_summary(report))
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out["p"] = sum(t.numel() for t in params.values())
    if spec.get("save"):
        torch.save(K, spec["save"])
    return out


def run_delta(spec: dict) -> dict:
    """delta_w in float64 at a small |D| by one mode (or the brute force), saved."""
    torch.set_num_threads(2)
    model, x, y = build(spec["arch"], spec["width"], spec["n"], torch.float64)
    nf = max(1, spec["n"] // 5)
    retain, forget = (x[nf:], y[nf:]), (x[:nf], y[:nf])
    t = time.perf_counter()
    if spec["mode"] == "reference":
        delta = reference.dense_delta(model, parameters_of(model), retain, forget, 0.1)[0]
    else:
        lin = ntk.Linearization(weight_decay=0.1, anchored=False, dtype=torch.float64)
        opts = ntk.NTKOptions(solver="dense", jacobian=spec["mode"])
        delta = ntk.ntk_direction(model, retain, forget, lin, options=opts).delta
    torch.save(delta, spec["save"])
    return {"seconds": time.perf_counter() - t}


def run_step(spec: dict) -> dict:
    """The whole NTK step (``ntk_direction``: kernel, solves, pullback) in float32 at the
    run's defaults (anchored at w0, linearized at w(D)), as ``forgetbox run`` takes it."""
    torch.set_num_threads(2)
    model, x, y = build(spec["arch"], spec["width"], spec["n"])
    w0 = build(spec["arch"], spec["width"], 1, seed=2)[0]
    with torch.no_grad():  # w0: the same network, its weights moved as a fine-tuning would
        for p, q in zip(w0.parameters(), model.parameters(), strict=True):
            p.copy_(q + 0.01 * torch.randn_like(q))
    nf = spec["forget"]
    retain, forget = (x[nf:], y[nf:]), (x[:nf], y[:nf])
    opts = ntk.NTKOptions(jacobian=spec["mode"])
    t, cpu = time.perf_counter(), time.process_time()
    d = ntk.ntk_direction(model, retain, forget, ntk.Linearization(), pretrained=w0, options=opts)
    out = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - cpu}
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    torch.save(d.delta, spec["save"])
    return out


def run_nystrom(spec: dict) -> dict:
    """The Nystrom preconditioner's columns (m samples against all n), by one mode."""
    torch.set_num_threads(2)
    model, x, _ = build(spec["arch"], spec["width"], spec["n"])
    f, params = model_function(model), parameters_of(model)
    t, cpu = time.perf_counter(), time.process_time()
    pre = NystromPreconditioner.build(
        f, params, x, spec["n"] * 0.1, spec["m"], 16, seed=0, jacobian=spec["mode"]
    )
    out = {"seconds": time.perf_counter() - t, "cpu_seconds": time.process_time() - cpu}
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    torch.save(pre.C, spec["save"])
    return out


def section_nystrom(name: str = "resnet18-0.4", m: int = 64, repeats: int = 1) -> dict:
    """The Nystrom columns by their Jacobian rows (contraction) and per layer (auto)."""
    arch, width, n, _ = CASES[name]
    row = {"model": name, "n": n, "m": m, "runs": {"contraction": [], "auto": []}}
    for _ in range(repeats):
        for mode in row["runs"]:
            save = str(TMP / f"nystrom-{name}-{mode}.pt")
            spec = {"arch": arch, "width": width, "n": n, "m": m, "mode": mode, "save": save}
            row["runs"][mode].append(measure("nystrom", spec))
    if all("error" not in x for rs in row["runs"].values() for x in rs):
        row["auto_vs_contraction_rel_diff_float32"] = rel_diff(
            str(TMP / f"nystrom-{name}-auto.pt"), str(TMP / f"nystrom-{name}-contraction.pt")
        )
    return row


def section_step(name: str = "resnet18-0.4", forget: int = 25) -> dict:
    """The NTK step on the committed CIFAR-5 ResNet-18 run's sizes, both kernel builds."""
    arch, width, n, _ = CASES[name]
    base = {"arch": arch, "width": width, "n": n, "forget": forget}
    row = {"model": name, "n": n, "forget": forget}
    for mode in ("contraction", "auto"):
        save = str(TMP / f"step-{name}-{mode}.pt")
        row[mode] = measure("step", {**base, "mode": mode, "save": save})
    if all("error" not in row[m] for m in ("contraction", "auto")):
        row["auto_vs_contraction_rel_diff_float32"] = rel_diff(
            str(TMP / f"step-{name}-auto.pt"), str(TMP / f"step-{name}-contraction.pt")
        )
    return row


def blas_rate(size: int = 4096, repeats: int = 5) -> dict:
    """This CPU's float32 matmul rate on 2 threads (GFLOP/s, best of ``repeats``)."""
    torch.set_num_threads(2)
    a = torch.randn(size, size)
    a @ a
    best = min(_time(lambda: a @ a) for _ in range(repeats))
    return {"size": size, "seconds": best, "gflops": 2 * size**3 / best / 1e9}


def _time(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def measure(kind: str, spec: dict, timeout: int = 7200) -> dict:
    load = os.getloadavg()[0]
    proc = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps({**spec, "kind": kind})],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        res = {**spec, "error": lines[-1][:300] if lines else f"exit {proc.returncode}"}
    else:
        res = {**spec, **json.loads(proc.stdout.strip().splitlines()[-1])}
    res["load_before"] = load
    brief = {k: v for k, v in res.items() if k not in ("layers", "fallback")}
    print(json.dumps(brief, default=str), flush=True)
    return res


def rel_diff(a: str, b: str) -> float:
    x, y = torch.load(a), torch.load(b)
    return ((x - y).norm() / y.norm()).item()


def section_case(name: str, repeats: int, budget: int | None) -> dict:
    arch, width, n, n_small = CASES[name]
    base = {"arch": arch, "width": width, "n": n, "budget": budget}
    runs: dict[str, list[dict]] = {"contraction": [], "auto": []}
    for r in range(repeats):  # interleaved: a slow spell of the shared machine hits both
        for mode in runs:
            save = str(TMP / f"{name}-{mode}.pt") if r == 0 else None
            runs[mode].append(measure("kernel", {**base, "mode": mode, "save": save}))
    row = {"model": name, "n": n, "budget": budget, "runs": runs}
    if all("error" not in x for rs in runs.values() for x in rs):
        row["auto_vs_contraction_rel_diff_float32"] = rel_diff(
            str(TMP / f"{name}-auto.pt"), str(TMP / f"{name}-contraction.pt")
        )
    small = {**base, "n": n_small}
    row["small_n"] = n_small
    row["small"] = {
        mode: measure("kernel", {**small, "mode": mode, "save": str(TMP / f"{name}-s-{mode}.pt")})
        for mode in ("contraction", "auto", "structured")
    }
    for mode in ("auto", "structured"):
        if "error" not in row["small"][mode] and "error" not in row["small"]["contraction"]:
            row["small"][f"{mode}_vs_contraction_rel_diff_float32"] = rel_diff(
                str(TMP / f"{name}-s-{mode}.pt"), str(TMP / f"{name}-s-contraction.pt")
            )
    return row


def section_exactness(n: int = 8) -> list[dict]:
    """delta_w in float64 at |D| = n: each mode against the brute force."""
    rows = []
    for name in ("resnet18-0.4", "allcnn-0.4"):
        arch, width, _, _ = CASES[name]
        row = {"model": name, "n": n}
        for mode in ("reference", "contraction", "auto", "structured"):
            spec = {"arch": arch, "width": width, "n": n, "mode": mode}
            row[mode] = measure("delta", {**spec, "save": str(TMP / f"d-{name}-{mode}.pt")})
        ref = str(TMP / f"d-{name}-reference.pt")
        for mode in ("contraction", "auto", "structured"):
            if "error" not in row[mode]:
                row[f"{mode}_vs_reference_rel_diff_float64"] = rel_diff(
                    str(TMP / f"d-{name}-{mode}.pt"), ref
                )
        rows.append(row)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--one", help=argparse.SUPPRESS)
    ap.add_argument("--only", choices=[*CASES, "exactness", "blas", "step", "nystrom"])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument(
        "--budget-gib", type=float, help="memory budget (default: the engine's, half the RAM)"
    )
    ap.add_argument("--key", help="store the case under this key (default: its name)")
    args = ap.parse_args()
    if args.one:
        spec = json.loads(args.one)
        kinds = {"kernel": run_kernel, "delta": run_delta, "step": run_step}
        kinds["nystrom"] = run_nystrom
        fn = {**kinds, "blas": lambda s: blas_rate()}
        print(json.dumps(fn[spec["kind"]](spec), default=str))
        return
    TMP.mkdir(parents=True, exist_ok=True)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["machine"] = machine()
    todo = [args.only] if args.only else ["blas", *CASES, "exactness", "step"]
    for name in todo:
        if name == "blas":
            results["blas"] = measure("blas", {})
        elif name == "exactness":
            results["exactness"] = section_exactness()
        elif name == "step":
            results["step"] = section_step()
        elif name == "nystrom":
            results["nystrom"] = section_nystrom(repeats=args.repeats)
        else:
            budget = int(args.budget_gib * 2**30) if args.budget_gib else None
            key = args.key or name
            results.setdefault("cases", {})[key] = section_case(name, args.repeats, budget)
        OUT.parent.mkdir(exist_ok=True)
        OUT.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
