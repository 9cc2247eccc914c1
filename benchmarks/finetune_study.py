"""Why fine-tuning does not reach zero training error on real CIFAR-5 (issue 6): curves.

Starts from the cached pre-trained All-CNN x0.4 of the committed CPU run
(docs/results/cifar5-allcnn-cpu, pre-trained on Tiny ImageNet-32) and fine-tunes on one seed's
D with the paper's recipe and with variants, recording every 10 epochs the training error and the
regularised objective (mean cross-entropy + lambda/2 ||w - w0||^2) that fine-tuning minimises.
A recipe limited by optimisation keeps lowering the objective; one limited by the objective
itself plateaus with errors left.

    .venv/bin/python benchmarks/finetune_study.py --cache-dir runs/cache-cifar --seed 2

Results: benchmarks/results/finetune_study.json, discussed in docs/results/README.md.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from forgetbox import models, training
from forgetbox.experiment import Cache, Stages, build_task, config_from_dict
from forgetbox.functional import flatten, parameters_of

OUT = Path(__file__).with_name("results") / "finetune_study.json"
VARIANTS = {  # name: (lr, lambda, epochs, schedule)
    "paper (lr 0.01, lambda 0.1)": (0.01, 0.1, 200, "constant"),
    "lr 0.05, lambda 0.1": (0.05, 0.1, 100, "constant"),
    "lr 0.01, lambda 0.01": (0.01, 0.01, 100, "constant"),
    "lr 0.01 cosine, lambda 0.1": (0.01, 0.1, 100, "cosine"),
    "lr 0.003, lambda 0.1": (0.003, 0.1, 100, "constant"),
}


def curve(w0, x, y, lr: float, lam: float, epochs: int, schedule: str, seed: int) -> list[dict]:
    anchor = flatten(parameters_of(w0))
    points: list[dict] = []

    def record(epoch: int, model) -> None:
        if (epoch + 1) % 10:
            return
        err, ce = training.evaluate(model, x, y)
        dist2 = (flatten(parameters_of(model)) - anchor).pow(2).sum().item()
        points.append({"epoch": epoch + 1, "train_error": err, "objective": ce + 0.5 * lam * dist2})

    cfg = training.FinetuneConfig(lr=lr, weight_decay=lam, max_epochs=epochs, lr_schedule=schedule)
    training.finetune(w0, x, y, cfg, seed=seed, epochs=epochs, on_epoch=record)
    return points


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="docs/results/cifar5-allcnn-cpu/config.toml")
    ap.add_argument("--cache-dir", default="runs/cache-cifar")
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--only", help="variant names separated by semicolons")
    args = ap.parse_args()
    import tomllib

    doc = tomllib.loads(Path(args.config).read_text())["experiment"]
    doc.pop("versions", None)
    cfg = config_from_dict(doc).resolved()
    stages = Stages(cfg, Cache(Path(args.cache_dir)), print)
    task = build_task(cfg, args.seed, stages.stats())
    pre = stages.pretrained(task.split.num_classes, task.split.input_shape)
    w0 = models.with_new_head(pre, task.split.num_classes, seed=args.seed)
    results = json.loads(OUT.read_text()) if OUT.exists() else {}
    ap_only = set(args.only.split(";")) if args.only else None
    for name, (lr, lam, epochs, schedule) in VARIANTS.items():
        if ap_only is not None and name not in ap_only:
            continue
        t = time.perf_counter()
        pts = curve(w0, *task.full, lr, lam, epochs, schedule, args.seed)
        results[f"seed {args.seed}: {name}"] = {
            "lr": lr,
            "lambda": lam,
            "schedule": schedule,
            "seconds": time.perf_counter() - t,
            "curve": pts,
        }
        summary = [(p["epoch"], round(p["train_error"], 3), round(p["objective"], 4)) for p in pts]
        print(name, summary, flush=True)
        OUT.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
