"""NTK engine benchmark: forgetbox's solvers against the reference approach.

The reference approach is what the authors' notebook does, written here plainly: per-sample,
per-class autograd into a dense Jacobian held as one (N c, p) numpy array, the Gram matrix,
an explicit inverse, u_S = -G Theta^{-1} r for D and D_r, delta = u_r - u_D.

Each measurement runs in its own process so its peak resident memory (ru_maxrss) is its own.

    .venv/bin/python benchmarks/ntk_engine.py                 # everything, writes the JSON
    .venv/bin/python benchmarks/ntk_engine.py --only compare  # one section
    .venv/bin/python benchmarks/ntk_engine.py --only scaling-dense  # re-measure dense cells

Results: benchmarks/results/ntk_engine.json, tabulated in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from forgetbox import models, ntk
from forgetbox.functional import model_function, parameters_of
from forgetbox.ntk.solvers import KernelOperator, NystromPreconditioner

OUT = Path(__file__).with_name("results") / "ntk_engine.json"
MODELS = {
    "allcnn-0.4": ("allcnn", 0.4),
    "allcnn-1.0": ("allcnn", 1.0),
    "resnet18-0.4": ("resnet18", 0.4),
}
C, N_FORGET, LAM = 5, 25, 0.1


def problem(name: str, n: int, dtype: torch.dtype):
    arch, width = MODELS[name]
    model = (
        models.build_model(
            arch, num_classes=C, input_shape=(3, 32, 32), width=width, generator_seed=0
        )
        .to(dtype)
        .eval()
    )
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, 3, 32, 32, generator=gen).to(dtype)
    y = torch.randint(0, C, (n,), generator=gen)
    return model, (x[N_FORGET:], y[N_FORGET:]), (x[:N_FORGET], y[:N_FORGET])


def reference_delta(model, retain, forget) -> np.ndarray:
    """Per-sample, per-class autograd into one dense (N c, p) numpy Jacobian, explicit inverse."""
    params = [p for p in model.parameters()]

    p = sum(t.numel() for t in params)
    x = torch.cat([retain[0], forget[0]])
    y = torch.cat([retain[1], forget[1]])
    G = np.empty((len(x) * C, p), dtype=np.float64 if x.dtype == torch.float64 else np.float32)
    r = np.empty(len(x) * C, dtype=G.dtype)
    for i in range(len(x)):  # one sample, then one class at a time, into a preallocated array
        out = model(x[i : i + 1])[0]
        prob = torch.softmax(out, -1).detach()
        for k in range(C):
            g = torch.autograd.grad(out[k], params, retain_graph=k < C - 1)
            G[i * C + k] = torch.cat([t.reshape(-1) for t in g]).detach().numpy()
            r[i * C + k] = prob[k].item() - float(k == y[i].item())
    nr = len(retain[0]) * C
    Gr, rr = G[:nr], r[:nr]  # contiguous rows: no copy

    def u(G, r, n):
        theta = G @ G.T + n * LAM * np.eye(G.shape[0], dtype=G.dtype)
        # (Theta^-1 r)^T G, not G.T @ (...): numpy copies the transposed 2.4 GB Jacobian for a
        # matrix-vector product (measured: peak 5.25 GB instead of 2.9 GB before 2026-11-27)
        return -(np.linalg.inv(theta) @ r) @ G

    return u(Gr, rr, len(retain[0])) - u(G, r, len(x))


def run_one(spec: dict) -> dict:
    torch.set_num_threads(2)
    dtype = torch.float64 if spec.get("dtype") == "float64" else torch.float32
    model, retain, forget = problem(spec["model"], spec["n"], dtype)
    t = time.perf_counter()
    out: dict = {}
    if spec["approach"] == "reference":
        delta = torch.from_numpy(reference_delta(model, retain, forget))
    elif spec["approach"] == "retrain_epoch":
        from forgetbox.training import FinetuneConfig, finetune

        finetune(model, *retain, FinetuneConfig(), seed=0, epochs=1)
        delta = None
    elif spec["approach"] == "cg_capped":
        # a fixed number of preconditioned CG iterations: time per iteration and peak memory
        f = model_function(model, dtype)
        params = parameters_of(model, dtype)
        x = torch.cat([retain[0], forget[0]])
        chunk = spec.get("chunk", 32)
        op = KernelOperator(f, params, x, len(x) * LAM, chunk)
        t_pre = time.perf_counter()
        pre = NystromPreconditioner.build(f, params, x, len(x) * LAM, spec["rank"], chunk, 0)
        out["preconditioner_seconds"] = time.perf_counter() - t_pre
        b = torch.randn(len(x), C, generator=torch.Generator().manual_seed(0), dtype=dtype)
        t_cg = time.perf_counter()
        _, it, rel = ntk.conjugate_gradient(
            op, b, precond=pre, tol=0.0, max_iter=spec["iterations"]
        )
        out.update(
            seconds_per_iteration=(time.perf_counter() - t_cg) / it,
            relative_residual_after=rel,
            iterations=it,
        )
        delta = None
    else:
        opts = ntk.NTKOptions(
            solver=spec["approach"],
            nystrom_rank=spec.get("rank", 64),
            memory_budget=spec.get("budget"),
            chunk=spec.get("chunk"),
            cg_max_iter=spec.get("max_iter", 100),
            cg_tol=spec.get("tol"),
        )
        lin = ntk.Linearization(weight_decay=LAM, anchored=False, dtype=dtype)
        d = ntk.ntk_direction(model, retain, forget, lin, options=opts)
        delta = d.delta
        out["reports"] = [r.__dict__ for r in d.reports]
    out["seconds"] = time.perf_counter() - t
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    if delta is not None and spec.get("save"):
        torch.save(delta.double(), spec["save"])
    out["p"] = sum(p.numel() for p in model.parameters())
    return out


# glibc told to keep freed memory for reuse (no mmap per large block, no trimming): the
# engine's chunk loop allocates blocks of up to 255 MB dozens of times (vmap(jacrev)
# intermediates, 17 GB mapped and unmapped over one All-CNN x0.4 solve, strace), each paid again
# in page faults. Applied to a measurement's process with ``"malloc": "keep"`` in its spec.
KEEP_FREED = {"MALLOC_MMAP_THRESHOLD_": str(1 << 30), "MALLOC_TRIM_THRESHOLD_": str(1 << 31)}


def measure(spec: dict, timeout: int = 3600) -> dict:
    env = {**os.environ, **(KEEP_FREED if spec.get("malloc") == "keep" else {})}
    proc = subprocess.run(
        [sys.executable, __file__, "--one", json.dumps(spec)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if proc.returncode != 0:
        lines = proc.stderr.strip().splitlines()
        why = lines[-1][:300] if lines else f"killed (exit {proc.returncode}; out of memory)"
        print(json.dumps({**spec, "error": why}), flush=True)
        return {**spec, "error": why}
    res = {**spec, **json.loads(proc.stdout.strip().splitlines()[-1])}
    print(json.dumps({k: v for k, v in res.items() if k != "reports"}), flush=True)
    return res


def rel_diff(a: Path, b: Path) -> float:
    x, y = torch.load(a), torch.load(b)
    return ((x - y).norm() / y.norm()).item()


def interleaved(specs: list[dict], repeats: int) -> list[dict]:
    """Run each spec ``repeats`` times, alternating between specs (so that a slow spell of this
    shared machine hits both); each result carries every run's seconds and the median."""
    runs: list[list[dict]] = [[] for _ in specs]
    for _ in range(repeats):
        for i, spec in enumerate(specs):
            runs[i].append(measure(spec))
    out = []
    for rs in runs:
        if any("error" in r for r in rs):
            out.append(next(r for r in rs if "error" in r))
            continue
        best = dict(rs[0])
        best["seconds_runs"] = [r["seconds"] for r in rs]
        best["seconds"] = statistics.median(best["seconds_runs"])
        best["peak_rss_gb"] = max(r["peak_rss_gb"] for r in rs)
        out.append(best)
    return out


def section_compare(tmp: Path, repeats: int = 3) -> list[dict]:
    rows = []
    for name in MODELS:
        ref_spec = {"approach": "reference", "model": name, "n": 500}
        ours_spec = {"approach": "dense", "model": name, "n": 500}
        ref_spec["save"] = str(tmp / f"{name}-ref.pt")
        ours_spec["save"] = str(tmp / f"{name}-dense.pt")
        if name == "allcnn-0.4":
            # the engine at a 0.81 GB budget (its peak is about 0.45x the reference's), at its
            # least dense memory (0.45 GB budget, 8-sample chunks: smaller chunks cut the autograd
            # intermediates, which the budget does not cover) and at the default budget
            ours_spec["budget"] = int(0.8125 * 2**30)
            small_spec = dict(ours_spec, budget=int(0.45 * 2**30), chunk=8, save=None)
            default_spec = dict(ours_spec, budget=None, save=str(tmp / f"{name}-dense-default.pt"))
            ref, ours, small, default = interleaved(
                [ref_spec, ours_spec, small_spec, default_spec], repeats
            )
        else:
            # once each: the reference's (N c, p) Jacobian alone is 16-18 GB; the engine gets
            # 5 GiB
            ref = measure(ref_spec)
            ours = measure(dict(ours_spec, budget=5 << 30))
        row = {"model": name, "reference": ref, "dense": ours}
        if name == "allcnn-0.4":
            row["dense_least_memory"] = small
            row["dense_default_budget"] = default
            row["cg"] = measure(
                {
                    "approach": "cg",
                    "model": name,
                    "n": 500,
                    "tol": 1e-5,
                    "save": str(tmp / f"{name}-cg.pt"),
                }
            )
        if "error" not in ref and "error" not in ours:
            row["dense_vs_reference_rel_diff_float32"] = rel_diff(
                tmp / f"{name}-dense.pt", tmp / f"{name}-ref.pt"
            )
        if "error" not in row.get("cg", {"error": 1}) and "error" not in ours:
            row["cg_vs_dense_rel_diff_float32"] = rel_diff(
                tmp / f"{name}-cg.pt", tmp / f"{name}-dense.pt"
            )
        rows.append(row)
    # exactness in float64 on the small model
    a = measure(
        {
            "approach": "reference",
            "model": "allcnn-0.4",
            "n": 200,
            "dtype": "float64",
            "save": str(tmp / "f64-ref.pt"),
        }
    )
    b = measure(
        {
            "approach": "dense",
            "model": "allcnn-0.4",
            "n": 200,
            "dtype": "float64",
            "save": str(tmp / "f64-dense.pt"),
        }
    )
    rows.append(
        {
            "model": "allcnn-0.4",
            "n": 200,
            "float64": True,
            "reference": a,
            "dense": b,
            "dense_vs_reference_rel_diff_float64": rel_diff(
                tmp / "f64-dense.pt", tmp / "f64-ref.pt"
            ),
        }
    )
    return rows


def section_allocator(tmp: Path, repeats: int = 3) -> list[dict]:
    """All-CNN x0.4, |D| = 500: reference and engine with glibc's default allocator settings
    and with freed memory kept (:data:`KEEP_FREED`), interleaved."""
    ref = {"approach": "reference", "model": "allcnn-0.4", "n": 500}
    ours = {"approach": "dense", "model": "allcnn-0.4", "n": 500, "budget": int(0.8125 * 2**30)}
    small = dict(ours, budget=int(0.45 * 2**30), chunk=8)
    specs = [ref, dict(ref, malloc="keep"), ours, dict(ours, malloc="keep")]
    specs.append(dict(small, malloc="keep"))
    rows = interleaved(specs, repeats)
    return [{k: v for k, v in r.items() if k != "reports"} for r in rows]


def section_scaling(
    sizes=(500, 1000, 2000, 5000), dense_max=2000, cg_max=5000, previous: list | None = None
) -> list[dict]:
    """Both solvers on All-CNN x0.4; past ``cg_max`` CG runs a few iterations only (time per
    iteration and peak memory), past ``dense_max`` the dense solver is not run. With
    ``previous`` rows, only the dense column is re-measured and the other cells are kept."""
    rows = []
    for n in sizes:
        row = {"model": "allcnn-0.4", "n": n}
        if n <= dense_max:
            row["dense"] = measure({"approach": "dense", "model": "allcnn-0.4", "n": n})
        if previous is not None:
            old = next((r for r in previous if r["n"] == n), {})
            rows.append({**old, **row})
            continue
        if n <= cg_max:
            row["cg_nystrom"] = measure(
                {"approach": "cg", "model": "allcnn-0.4", "n": n, "tol": 1e-5, "rank": 64}
            )
        else:
            row["cg_nystrom_capped"] = measure(
                {
                    "approach": "cg_capped",
                    "model": "allcnn-0.4",
                    "n": n,
                    "rank": 64,
                    "iterations": 3,
                }
            )
        if n <= 500:
            row["cg_plain"] = measure(
                {"approach": "cg", "model": "allcnn-0.4", "n": n, "tol": 1e-5, "rank": 0}
            )
        row["retrain_epoch"] = measure({"approach": "retrain_epoch", "model": "allcnn-0.4", "n": n})
        rows.append(row)
    return rows


def section_large() -> list[dict]:
    """ResNet-18 x0.4 at |D| = 5,000: the matrix-free solver within 24 GB."""
    return [
        measure(
            {
                "approach": "cg_capped",
                "model": "resnet18-0.4",
                "n": 5000,
                "rank": 32,
                "iterations": 3,
                "chunk": 16,
            }
        )
    ]


def machine() -> dict:
    """What the CPU benchmarks ran on (2 threads)."""
    return {
        "cpu_threads": 2,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "processor": platform.machine(),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--one")
    ap.add_argument("--only", choices=["compare", "allocator", "scaling", "scaling-dense", "large"])
    args = ap.parse_args()
    if args.one:
        print(json.dumps(run_one(json.loads(args.one)), default=str))
        return
    tmp = Path("runs/bench-tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    results["machine"] = machine()
    sections = {
        "compare": section_compare,
        "allocator": section_allocator,
        "scaling": section_scaling,
        "large": section_large,
    }
    if args.only == "scaling-dense":  # after an engine change that touches the dense path only
        results["scaling"] = section_scaling(previous=results.get("scaling", []))
        OUT.write_text(json.dumps(results, indent=2, default=str))
        return
    for name, fn in sections.items():
        if args.only in (None, name):
            results[name] = fn(tmp) if name in ("compare", "allocator") else fn()
            OUT.parent.mkdir(exist_ok=True)
            OUT.write_text(json.dumps(results, indent=2, default=str))


if __name__ == "__main__":
    main()
