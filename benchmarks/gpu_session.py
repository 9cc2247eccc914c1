"""One prepared GPU session: float64 checks on the device, the NTK engine table (issue 3), deletion
at scale on real CIFAR-10 (issue 8), a 50,000-image pseudo-NTK prepare, and the per-layer kernel
against the contraction path (issue 31: ``--only structured`` -> gpu_structured.json).

Run from the repository root on a CUDA machine, with cifar10.npz copied into .gpudata/:

    PYTHONPATH=src python3 benchmarks/gpu_session.py --out $OUT --deadline 500

Each section writes its JSON as soon as it has a row; a section that would not finish before the
deadline is skipped (and says so). Results are committed as benchmarks/results/gpu_*.json.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))

import deletion  # noqa: E402
import ntk_engine  # noqa: E402

from forgetbox import data, models, ntk, training  # noqa: E402
from forgetbox.deletion import prepare  # noqa: E402

DEV = "cuda"
START = time.perf_counter()


def left(args) -> float:
    return args.deadline - (time.perf_counter() - START)


def dump(args, name: str, obj) -> None:
    (args.out / name).write_text(json.dumps(obj, indent=1))


def peak_reset() -> None:
    if DEV == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def peak_gib() -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if DEV == "cuda" else float("nan")


# ----------------------------------------------------------------------------- sanity


def sanity() -> dict:
    """float64 on the GPU: prepared == from scratch, CG == dense, GPU == CPU."""
    from forgetbox.models import MLP

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    model = MLP(3, 5, width=0.2).double()
    w0 = MLP(3, 5, width=0.2).double()
    x = torch.randn(40, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    out = {}
    cohort = torch.tensor([2, 7, 11])
    keep = data.retain_mask(40, cohort)
    res = {}
    for dev in dict.fromkeys(("cpu", DEV)):
        m, w = model.to(dev), w0.to(dev)
        kw = dict(pretrained=w)
        lin = ntk.Linearization(dtype=torch.float64)
        retain, forget = (x[keep], y[keep]), (x[cohort], y[cohort])
        dense = ntk.ntk_direction(m, retain, forget, lin, options=ntk.NTKOptions("dense"), **kw)
        cg = ntk.ntk_direction(m, retain, forget, lin, options=ntk.NTKOptions("cg"), **kw)
        prep = prepare(m, (x, y), pretrained=w)
        req = prep.request(m, x, prep.cohort(cohort))
        res[dev] = (dense.delta.cpu(), cg.delta.cpu(), req.delta.cpu())

    def rel(a, b):
        return ((a - b).norm() / b.norm()).item()

    out["cuda_cg_vs_dense"] = rel(res[DEV][1], res[DEV][0])
    out["cuda_prepared_vs_dense"] = rel(res[DEV][2], res[DEV][0])
    out["cuda_vs_cpu_dense"] = rel(res[DEV][0], res["cpu"][0])
    return out


# ----------------------------------------------------------------------------- engine table


@ntk.full_precision()
def reference_delta_gpu(model, retain, forget) -> torch.Tensor:
    """The reference approach on the GPU: per-sample, per-class autograd into a dense Jacobian,
    Gram matrix, explicit inverse."""
    params = list(model.parameters())
    p = sum(t.numel() for t in params)
    x = torch.cat([retain[0], forget[0]]).to(DEV)
    y = torch.cat([retain[1], forget[1]]).to(DEV)
    C = ntk_engine.C
    G = torch.empty(len(x) * C, p, device=DEV)
    r = torch.empty(len(x) * C, device=DEV)
    for i in range(len(x)):
        out = model(x[i : i + 1])[0]
        prob = torch.softmax(out, -1).detach()
        for k in range(C):
            g = torch.autograd.grad(out[k], params, retain_graph=k < C - 1)
            G[i * C + k] = torch.cat([t.reshape(-1) for t in g])
        r[i * C : (i + 1) * C] = prob - torch.nn.functional.one_hot(y[i], C).float()
    nr = len(retain[0]) * C

    def u(G, r, n):
        theta = G @ G.T + n * ntk_engine.LAM * torch.eye(len(G), device=DEV)
        return -G.T @ (torch.linalg.inv(theta) @ r)

    return u(G[:nr], r[:nr], len(retain[0])) - u(G, r, len(x))


def engine(args) -> list[dict]:
    rows = []
    for n in (60, 120) if args.small else [int(v) for v in args.engine_sizes.split(",")]:
        model, retain, forget = ntk_engine.problem("allcnn-0.4", n, torch.float32)
        model = model.to(DEV)
        row = {"model": "allcnn-0.4", "n": n, "p": sum(t.numel() for t in model.parameters())}
        deltas = {}
        for approach in ("reference", "dense", "cg", "retrain_epoch"):
            if approach == "reference" and n > 1000:
                continue
            if left(args) < 60 + 0.02 * n:
                row[approach] = {"skipped": "deadline"}
                continue
            peak_reset()
            t = time.perf_counter()
            try:
                if approach == "reference":
                    model.zero_grad(set_to_none=True)
                    deltas[approach] = reference_delta_gpu(model, retain, forget)
                    info = {}
                elif approach == "retrain_epoch":
                    training.finetune(
                        model, *retain, training.FinetuneConfig(), seed=0, epochs=3, device=DEV
                    )
                    info = {"epochs": 3}
                else:
                    d = ntk.ntk_direction(
                        model,
                        retain,
                        forget,
                        ntk.Linearization(weight_decay=ntk_engine.LAM, anchored=False),
                        options=ntk.NTKOptions(solver=approach, cg_tol=1e-5, cg_max_iter=150),
                    )
                    deltas[approach] = d.delta
                    info = {"reports": [r.__dict__ for r in d.reports]}
                deletion.sync(DEV)
                row[approach] = {
                    "seconds": time.perf_counter() - t,
                    "peak_gpu_gib": peak_gib(),
                    **info,
                }
            except Exception as exc:  # noqa: BLE001 -- record and go on
                row[approach] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
        ref = deltas.get("reference", deltas.get("dense"))
        for k, v in deltas.items():
            if ref is not None and k in row and isinstance(row[k], dict):
                row[k]["rel_diff_vs_" + ("reference" if "reference" in deltas else "dense")] = (
                    (v - ref).norm() / ref.norm()
                ).item()
        rows.append(row)
        dump(args, "gpu_engine.json", rows)
        print(json.dumps(row)[:600], flush=True)
    return rows


# ----------------------------------------------------------------------------- deletion


def deletion_rows(args) -> list[dict]:
    d = deletion.cifar(args.npz)
    ns = argparse.Namespace(
        pretrain_epochs=1 if args.small else 20,
        max_epochs=2 if args.small else 100,
        kernels=["exact", "pseudo"],
        max_exact=5000,
        from_scratch=True,
        unanchored=False,
        cg_compare=False,
    )
    rows = []
    need = {500: 40, 5000: 150}
    plan = (
        (("allcnn-0.4", 100, 0),)
        if args.small
        else [
            (spec, int(n), need.get(int(n), 150))
            for spec, n in (item.split(":") for item in args.deletion.split(","))
        ]
    )
    for spec, n, need in plan:
        if left(args) < need + args.reserve:
            rows.append({"model": spec, "n": n, "skipped": "deadline"})
            continue
        try:
            rows.append(deletion.one(spec, n, DEV, d, ns))
        except Exception:  # noqa: BLE001
            rows.append({"model": spec, "n": n, "error": traceback.format_exc()[-800:]})
        dump(args, "gpu_deletion.json", rows)
        print(json.dumps(rows[-1])[:600], flush=True)
    return rows


# ----------------------------------------------------------------------------- 50k


def augmented_50k(d: data.ArrayData, gen: torch.Generator):
    """The 10,000 real training images and 4 augmented views of each (flip, 4-pixel crops)."""
    x, y = d.x_train, d.y_train
    views = [x]
    for _ in range(4):
        v = torch.nn.functional.pad(x, (4, 4, 4, 4), mode="reflect")
        i, j = torch.randint(0, 9, (2,), generator=gen).tolist()
        v = v[:, :, i : i + 32, j : j + 32]
        flip = torch.rand(len(x), generator=gen) < 0.5
        v = torch.where(flip[:, None, None, None], v.flip(3), v)
        views.append(v)
    return torch.cat(views), y.repeat(5)


def scale50k(args) -> dict:
    d = deletion.cifar(args.npz)
    gen = torch.Generator().manual_seed(0)
    x, y = augmented_50k(d, gen)
    if args.small:
        x, y = x[:: len(x) // 1500], y[:: len(x) // 1500]
    out: dict = {
        "n": len(x),
        "classes": 10,
        "model": "allcnn-0.4",
        "data": "10,000 real CIFAR-10 training images x 5 views (original + 4 flipped/cropped)",
    }
    pre = models.build_model("allcnn", num_classes=10, input_shape=(3, 32, 32), width=0.4)
    _, out["pretrain_seconds"] = deletion.timed(
        DEV,
        training.pretrain,
        pre,
        x,
        y,
        training.PretrainConfig(epochs=3, flip=True),
        seed=0,
        device=DEV,
    )
    w0 = models.with_new_head(pre.cpu(), 10, seed=0).eval()
    zeros = (y == 0).nonzero().squeeze(1)
    fidx = zeros[torch.randperm(len(zeros), generator=gen)[: max(10, len(x) // 100)]].sort().values
    keep = data.retain_mask(len(x), fidx)
    cfg = training.FinetuneConfig(max_epochs=args.epochs_50k)
    res, out["finetune_seconds"] = deletion.timed(
        DEV, training.finetune, w0, x, y, cfg, seed=0, anchor=w0, device=DEV
    )
    out["finetune_epochs"], out["finetune_train_error"] = res.epochs, res.train_error
    dump(args, "gpu_scale50k.json", out)
    model, w0d = res.model.to(DEV).eval(), w0.to(DEV)
    peak_reset()
    free = torch.cuda.mem_get_info()[0] if DEV == "cuda" else 8 << 30
    out["free_gpu_gib_before_prepare"] = free / 2**30
    prep, out["prepare_seconds"] = deletion.timed(
        DEV,
        prepare,
        model,
        (x, y),
        pretrained=w0d,
        options=ntk.NTKOptions(kernel="pseudo", memory_budget=int(free * 0.92)),
    )
    out["prepare_peak_gpu_gib"] = peak_gib()
    out["kernel_gib"] = prep.chol.numel() * 8 / 2**30
    dump(args, "gpu_scale50k.json", out)
    direction, out["request_seconds"] = deletion.timed(
        DEV, prep.request, model, x, prep.cohort(fidx)
    )
    out["request_iterations"] = direction.reports[0].iterations
    out["request_timings"] = direction.extras["timings"]
    out["request_relative_residual"] = direction.reports[0].relative_residual
    out["n_forget"] = len(fidx)
    # a second request reuses the prepared factor and the first cohort's columns
    more = zeros[~torch.isin(zeros, fidx)][: 10 if args.small else 100]
    _, out["second_request_seconds"] = deletion.timed(DEV, prep.request, model, (x, y), more)
    dump(args, "gpu_scale50k.json", out)
    if left(args) > 60:
        ret, out["retrain_seconds"] = deletion.timed(
            DEV, training.finetune, w0, x[keep], y[keep], cfg, seed=0, anchor=w0, device=DEV
        )
        out["retrain_epochs"] = ret.epochs
        out["request_vs_retrain"] = out["request_seconds"] / out["retrain_seconds"]
    dump(args, "gpu_scale50k.json", out)
    return out


# ----------------------------------------------------------------------------- per-layer kernel

STRUCTURED_CASES = {  # issue 31's table, and ResNet-18 x1.0 at the earlier H100 prepare's scale
    "resnet18-0.4": ("resnet18", 0.4, 500),
    "resnet18-1.0": ("resnet18", 1.0, 200),
    "allcnn-0.4": ("allcnn", 0.4, 500),
    "resnet18-1.0-5000": ("resnet18", 1.0, 5000),
}


def structured_rows(args) -> list[dict]:
    """The per-layer kernel (``jacobian="auto"``) against the contraction path on the device:
    build seconds (synchronised), peak GPU memory, the kernels' relative difference; a float64
    check at a small |D| first. ResNet-18 x1.0 at |D| = 5,000 is built with ``auto`` only (the
    contraction path's Jacobian groups would take most of a session)."""
    from structured_kernel import build

    from forgetbox.functional import model_function, parameters_of
    from forgetbox.ntk.structured import layer_kernel_and_jacobian

    def kernel(arch, width, n, mode, dtype=torch.float32):
        model, x, _ = build(arch, width, n, dtype)
        model, x = model.to(DEV), x.to(DEV)
        peak_reset()
        t = time.perf_counter()
        K, _, report = layer_kernel_and_jacobian(
            model_function(model, dtype), parameters_of(model, dtype), x, jacobian=mode
        )
        deletion.sync(DEV)
        info = {"seconds": time.perf_counter() - t, "peak_gpu_gib": peak_gib()}
        info["stage_seconds"] = dict(report.seconds)
        return K, info

    rows = []
    small = 4 if args.small else 8
    row = {"model": "resnet18-0.4", "n": small, "dtype": "float64"}
    Ka, _ = kernel("resnet18", 0.4, small, "structured", torch.float64)
    Kc, _ = kernel("resnet18", 0.4, small, "contraction", torch.float64)
    row["structured_vs_contraction_rel_diff"] = ((Ka - Kc).norm() / Kc.norm()).item()
    rows.append(row)
    dump(args, "gpu_structured.json", rows)
    for name, (arch, width, n) in STRUCTURED_CASES.items():
        if args.small:
            n = min(n, 16)
        row = {"model": name, "n": n}
        for mode in ("contraction", "auto"):
            if mode == "contraction" and n > 1000:
                continue
            if left(args) < 60 + 0.05 * n:
                row[mode] = {"skipped": "deadline"}
                continue
            try:
                K, row[mode] = kernel(arch, width, n, mode)
                row[f"{mode}_K"] = K  # compared below, not written
            except Exception as exc:  # noqa: BLE001 (out of memory: recorded, the rest goes on)
                row[mode] = {"error": str(exc).splitlines()[0][:300]}
        Kc, Ka = row.pop("contraction_K", None), row.pop("auto_K", None)
        if Kc is not None and Ka is not None:
            row["auto_vs_contraction_rel_diff_float32"] = ((Ka - Kc).norm() / Kc.norm()).item()
        rows.append(row)
        dump(args, "gpu_structured.json", rows)
    return rows


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--npz", type=Path, default=Path(".gpudata/cifar10.npz"))
    ap.add_argument("--deadline", type=float, default=500)
    ap.add_argument("--reserve", type=float, default=150, help="seconds kept for the 50k section")
    ap.add_argument("--epochs-50k", type=int, default=8)
    ap.add_argument("--only", default="sanity,engine,deletion,scale")
    ap.add_argument("--engine-sizes", default="500,1000,2000,5000")
    ap.add_argument(
        "--deletion", default="allcnn-0.4:500,allcnn-0.4:5000,resnet18-0.4:500,allcnn-1.0:500"
    )
    ap.add_argument("--small", action="store_true", help="tiny sizes: a smoke test on any device")
    ap.add_argument("--device", default="cuda")
    args = ap.parse_args()
    global DEV
    DEV = args.device
    if args.small:
        args.epochs_50k = 1
    args.out.mkdir(parents=True, exist_ok=True)
    env = {
        "device": torch.cuda.get_device_name() if DEV == "cuda" else "cpu",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
    }
    print(json.dumps(env), flush=True)
    dump(args, "gpu_env.json", env)
    only = args.only.split(",")
    for name, fn in (
        ("sanity", sanity),
        ("engine", engine),
        ("deletion", deletion_rows),
        ("scale", scale50k),
        ("structured", structured_rows),
    ):
        if name not in only:
            continue
        t = time.perf_counter()
        try:
            res = fn() if name == "sanity" else fn(args)
            if name == "sanity":
                dump(args, "gpu_sanity.json", res)
                print(json.dumps(res), flush=True)
        except Exception:  # noqa: BLE001
            print(f"section {name} failed:\n{traceback.format_exc()}", flush=True)
        env[f"{name}_seconds"] = time.perf_counter() - t
        dump(args, "gpu_env.json", env)
        print(f"== {name}: {time.perf_counter() - t:.1f} s (left {left(args):.0f} s)", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
