"""Deletion at scale: prepared requests against retraining and a from-scratch scrub, and the
pseudo-NTK against the exact kernel, on real CIFAR-10 (``../shared/data/cifar10.npz``).

For each model and |D|: pre-train on CIFAR-10 classes 5-9, fine-tune on classes 0-4
(|D|/5 training images per class, the paper's recipe: weight decay 0.1 toward w0, BatchNorm frozen,
zero error + 5 epochs, capped), forget 1% of D from class 0 (at least 25 images, as in the
paper), then time:

- retraining on D_r (same recipe), the reference cost a request must beat;
- ``prepare`` (kernel + Cholesky, once) and one ``request`` (the cohort) per kernel;
- a from-scratch exact NTK step (``ntk_direction``, dense) and its agreement with the request;

and compare the pseudo-NTK's direction (relative error, cosine) and the scrubbed model's readouts
(errors, attack, L1 to the retrained model) with the exact kernel's.

    .venv/bin/python benchmarks/deletion.py --sizes 500 --models allcnn-0.4
    python3 benchmarks/deletion.py --device cuda --sizes 500,5000 --out gpu.json   # on a GPU

Results: benchmarks/results/deletion*.json, tabulated in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
from pathlib import Path

import torch

from forgetbox import data, models, ntk, readouts, training
from forgetbox.deletion import prepare
from forgetbox.functional import load_flat_
from forgetbox.methods import ForgetConfig, ntk_point

SPECS = {
    "allcnn-0.4": ("allcnn", 0.4),
    "allcnn-1.0": ("allcnn", 1.0),
    "resnet18-0.4": ("resnet18", 0.4),
}
LAM = 0.1


def sync(device: str) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def timed(dev: str, fn, *args, **kwargs):
    sync(dev)
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    sync(dev)
    return out, time.perf_counter() - t


def cifar(npz: Path) -> data.ArrayData:
    d = data.load_npz(npz)
    xp, _ = data.class_subset(d, (5, 6, 7, 8, 9))
    mean = xp.mean((0, 2, 3), keepdim=True)
    std = xp.std((0, 2, 3), keepdim=True)
    return data.ArrayData(
        (d.x_train - mean) / std, d.y_train, (d.x_test - mean) / std, d.y_test, d.class_names
    )


def fine_tune_task(d: data.ArrayData, per_class: int, seed: int):
    """D: the first ``per_class`` training images of classes 0-4; test: 100 per class."""
    idx = torch.cat([(d.y_train == k).nonzero().squeeze(1)[:per_class] for k in range(5)])
    x, y = d.x_train[idx], d.y_train[idx]
    tidx = torch.cat([(d.y_test == k).nonzero().squeeze(1)[:100] for k in range(5)])
    n_forget = max(25, len(x) // 100)
    gen = torch.Generator().manual_seed(seed)
    zeros = (y == 0).nonzero().squeeze(1)
    forget = zeros[torch.randperm(len(zeros), generator=gen)[:n_forget]].sort().values
    return (x, y), forget, (d.x_test[tidx], d.y_test[tidx])


def pretrained_w0(arch: str, width: float, d: data.ArrayData, epochs: int, device: str):
    xp, yp = data.class_subset(d, (5, 6, 7, 8, 9))
    pre = models.build_model(arch, num_classes=5, input_shape=(3, 32, 32), width=width)
    cfg = training.PretrainConfig(epochs=epochs, flip=True)
    _, secs = timed(device, training.pretrain, pre, xp, yp, cfg, seed=0, device=device)
    return models.with_new_head(pre.cpu(), 5, seed=0).eval(), secs


def readouts_of(model, retrained, parts: dict) -> dict:
    out = {f"error_{k}": readouts.error_and_loss(model, *v)[0] for k, v in parts.items()}
    for k, v in parts.items():
        out[f"l1_to_retrain_{k}"] = readouts.l1_distance(model, retrained, v[0])
    mia = readouts.membership_attack(model, parts["retain"], parts["test"], parts["forget"])
    out.update(mia_member_rate=mia.member_rate, mia_auc=mia.auc)
    return out


def cg_compare(model, w0, retain, forget, device: str) -> dict:
    """Matrix-free CG on the real fine-tuned model: plain vs Nystrom-preconditioned, against the
    dense solve (iterations to a 1e-5 relative residual, seconds, agreement)."""
    lin = ntk.Linearization(weight_decay=LAM)
    opts = ntk.NTKOptions(solver="dense", cg_tol=1e-5, cg_max_iter=400)
    dense, t_dense = timed(
        device, ntk.ntk_direction, model, retain, forget, lin, pretrained=w0, options=opts
    )
    out = {"dense_seconds": t_dense}
    for name, rank in (("plain", 0), ("nystrom64", 64), ("nystrom128", 128)):
        cg = opts.replace(solver="cg", nystrom_rank=rank)
        d, secs = timed(
            device, ntk.ntk_direction, model, retain, forget, lin, pretrained=w0, options=cg
        )
        out[name] = {
            "seconds": secs,
            "iterations": [r.iterations for r in d.reports],
            "converged": [r.converged for r in d.reports],
            "rel_diff_vs_dense": ((d.delta - dense.delta).norm() / dense.delta.norm()).item(),
        }
        print(name, out[name], flush=True)
    return out


def one(spec: str, n: int, device: str, d: data.ArrayData, args) -> dict:
    arch, width = SPECS[spec]
    row: dict = {"model": spec, "n": n, "device": device}
    w0, row["pretrain_seconds"] = pretrained_w0(arch, width, d, args.pretrain_epochs, device)
    (x, y), fidx, test = fine_tune_task(d, n // 5, seed=0)
    keep = data.retain_mask(len(x), fidx)
    retain, forget = (x[keep], y[keep]), (x[fidx], y[fidx])
    cfg = training.FinetuneConfig(weight_decay=LAM, max_epochs=args.max_epochs)
    res, row["finetune_seconds"] = timed(
        device, training.finetune, w0, x, y, cfg, seed=0, anchor=w0, device=device
    )
    ret, row["retrain_seconds"] = timed(
        device, training.finetune, w0, *retain, cfg, seed=0, anchor=w0, device=device
    )
    model, retrained = res.model.eval(), ret.model.eval()
    row.update(
        finetune_epochs=res.epochs,
        retrain_epochs=ret.epochs,
        n_forget=len(fidx),
        p=sum(t.numel() for t in model.parameters()),
    )
    parts = {"forget": forget, "retain": retain, "test": test}
    row["original"] = readouts_of(model, retrained, parts)
    row["retrain"] = readouts_of(retrained, retrained, parts)
    if args.cg_compare:
        row["cg_compare"] = cg_compare(model.to(device), w0.to(device), retain, forget, device)
    dev_model, dev_w0 = model.to(device), w0.to(device)
    lin = ntk.Linearization(weight_decay=LAM, anchored=not args.unanchored)
    row["anchored"] = not args.unanchored
    directions = {}
    for kernel in args.kernels:
        if kernel == "exact" and n > args.max_exact:
            continue
        cfg = ForgetConfig(linearization=lin, ntk=ntk.NTKOptions(kernel=kernel))
        prep, t_prep = timed(device, prepare, dev_model, (x, y), pretrained=dev_w0, config=cfg)
        direction, t_req = timed(device, prep.request, dev_model, x, prep.cohort(fidx))
        directions[kernel] = direction
        row[kernel] = {
            "prepare_seconds": t_prep,
            "request_seconds": t_req,
            "request_iterations": direction.reports[0].iterations,
            "request_relative_residual": direction.reports[0].relative_residual,
            "kernel_rows": prep.chol.shape[0],
            "kernel_gib": prep.chol.numel() * 8 / 2**30,
            "request_vs_retrain": t_req / row["retrain_seconds"],
            "request_timings": direction.extras["timings"],
        }
        del prep
        if device == "cuda":
            torch.cuda.empty_cache()
    if "exact" in directions and args.from_scratch:
        scratch, t_scratch = timed(
            device,
            ntk.ntk_direction,
            dev_model,
            retain,
            forget,
            lin,
            pretrained=dev_w0,
            options=ntk.NTKOptions(solver="dense"),
        )
        a, b = directions["exact"].delta.double(), scratch.delta.double()
        row["exact"]["from_scratch_seconds"] = t_scratch
        row["exact"]["prepared_vs_scratch_rel_diff"] = ((a - b).norm() / b.norm()).item()
    if "exact" in directions and "pseudo" in directions:
        a, b = directions["pseudo"].delta.double(), directions["exact"].delta.double()
        row["pseudo"]["delta_rel_error_vs_exact"] = ((a - b).norm() / b.norm()).item()
        row["pseudo"]["delta_cosine_vs_exact"] = (a @ b / (a.norm() * b.norm())).item()
    model, w0 = model.cpu(), w0.cpu()
    for kernel, direction in directions.items():
        cpu_dir = ntk.NTKDirection(
            direction.delta.cpu(), direction.u_retain.cpu(), direction.around.cpu()
        )
        mean, _, scale, _ = ntk_point(
            model,
            w0,
            retain,
            forget,
            ForgetConfig(linearization=lin),
            direction=cpu_dir,
        )
        scrubbed = load_flat_(copy.deepcopy(model), mean)
        row[kernel]["trapezium_scale"] = scale
        row[kernel]["readouts"] = readouts_of(scrubbed, retrained, parts)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--npz", type=Path, default=Path("../shared/data/cifar10.npz"))
    ap.add_argument("--models", default="allcnn-0.4")
    ap.add_argument("--sizes", default="500")
    ap.add_argument("--kernels", default="exact,pseudo")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--pretrain-epochs", type=int, default=20)
    ap.add_argument("--max-epochs", type=int, default=100)
    ap.add_argument("--max-exact", type=int, default=5000, help="largest |D| for the exact kernel")
    ap.add_argument("--no-from-scratch", dest="from_scratch", action="store_false")
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--cg-compare", action="store_true", help="plain vs Nystrom CG on the model")
    ap.add_argument(
        "--unanchored", action="store_true", help="linearize without the weight-decay anchor"
    )
    ap.add_argument(
        "--out", type=Path, default=Path(__file__).with_name("results") / "deletion.json"
    )
    args = ap.parse_args(argv)
    args.kernels = args.kernels.split(",")
    if args.threads:
        torch.set_num_threads(args.threads)
    d = cifar(args.npz)
    rows = []
    for spec in args.models.split(","):
        for n in (int(s) for s in args.sizes.split(",")):
            rows.append(one(spec, n, args.device, d, args))
            print(json.dumps(rows[-1]), flush=True)
            doc = {
                "command": "benchmarks/deletion.py " + " ".join(argv or sys.argv[1:]),
                "machine": platform.platform(),
                "device": torch.cuda.get_device_name() if args.device == "cuda" else "cpu",
                "threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "rows": rows,
            }
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(doc, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
