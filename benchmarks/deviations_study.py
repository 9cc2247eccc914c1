"""Where forgetbox and the authors' code choose differently (docs/deviations.md, items 11-15),
measured on the committed CIFAR-5 All-CNN x0.4 cpu-profile models, each choice alone.

    .venv/bin/python benchmarks/deviations_study.py runs/cache-cifar
        # -> benchmarks/results/deviations_study.json

The cache is the one `forgetbox run --dataset cifar10-npz --model allcnn --width 0.4 --profile
cpu --seeds 0,1,2 --data-dir ../shared/data --cache-dir runs/cache-cifar` fills (pre-training
and fine-tunings are read from it; the study computes everything else).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import torch

from forgetbox import bounds, methods, models, readouts
from forgetbox.experiment import Cache, ExperimentConfig, Stages
from forgetbox.experiment.tasks import build_task
from forgetbox.functional import flatten, parameters_of
from forgetbox.methods import FisherMemo, NoiseConfig

OUT = Path(__file__).with_name("results") / "deviations_study.json"
AUTHORS_RELEARN = dict(weight_decay=0.1, check_before_training=False)


def behaviour(model, task, retrained) -> dict:
    row = {}
    for name, (x, y) in (("forget", task.forget), ("retain", task.retain), ("test", task.test)):
        row[f"error_{name}"] = readouts.error_and_loss(model, x, y)[0]
    mia = readouts.membership_attack(model, task.retain, task.test, task.forget, seed=0)
    row["mia_forget_member_rate"] = mia.member_rate
    row["l1_to_retrain_forget"] = readouts.l1_distance(model, retrained, task.forget[0])
    row["l1_to_retrain_retain"] = readouts.l1_distance(model, retrained, task.retain[0])
    return row


def noise_averaging(seed, task, original, w0, retrained, fcfg, step) -> dict:
    out = {}
    for average in ("fan_in", "input_channels"):
        cfg = replace(fcfg, noise=NoiseConfig(average=average))
        memo = FisherMemo(retrained, task.retain[0], cfg)
        for method, alpha in (("fisher", 1e-6), ("ntk_fisher", 1e-9)):
            c = replace(cfg, alpha=alpha)
            res = methods.forget(
                method, original, w0, task.retain, task.forget, c, seed=seed, direction=step
            )
            mean0 = flatten(parameters_of(retrained))
            white = bounds.white_box(
                res.mean, res.noise_variance, mean0, memo.variance(mean0, alpha)
            )
            row = behaviour(res.model, task, retrained) | {"info_weights_nats": white.nats}
            out[f"{method} / {average}"] = row
    return out


def finetune_anchor(seed, task, original, w0, retrained, fcfg) -> dict:
    out = {}
    for lr in (0.003, 0.01):
        for anchor in ("pretrained", "start"):
            c = replace(fcfg, finetune_lr=lr, finetune_anchor=anchor)
            res = methods.forget("finetune", original, w0, task.retain, task.forget, c, seed=seed)
            out[f"lr {lr} / pull toward {anchor}"] = behaviour(res.model, task, retrained)
    return out


def relearn(seed, task, models_by_name, threshold, cap) -> dict:
    out = {}
    for name, model in models_by_name.items():
        for label, kw in (
            ("forgetbox: no pull, checked before training", {}),
            ("authors: pull 0.1, checked after each epoch", AUTHORS_RELEARN),
        ):
            data = (*task.full, *task.forget)
            rl = readouts.relearn_time(
                model, *data, threshold=threshold, max_epochs=cap, seed=seed, **kw
            )
            out[f"{name} / {label}"] = rl.epochs
    return out


def duplicates(stages, task, w0, seed, retrained, ntk_model) -> dict:
    dup_cfg = replace(stages.cfg, retrain_duplicates=True)
    dup_stages = Stages(dup_cfg, stages.cache, stages.log)
    dup, info = dup_stages.trained(task, w0, seed, "retrain")
    return {
        "retrain (D_r)": behaviour(retrained, task, retrained),
        "retrain (D_r + duplicates)": behaviour(dup, task, retrained),
        "ntk against the duplicates reference": behaviour(ntk_model, task, dup),
        "duplicates retrain epochs": info["epochs"],
        "duplicates retrain train error": info["train_error"],
    }


def main() -> None:
    cache = Path(sys.argv[1] if len(sys.argv) > 1 else "runs/cache-cifar")
    spec = dict(dataset="cifar10-npz", model="allcnn", width=0.4, profile="cpu")
    cfg = ExperimentConfig(**spec, seeds=(0, 1, 2), data_dir="../shared/data").resolved()
    stages = Stages(cfg, Cache(cache), log=print)
    results = {"config": cfg.as_dict(), "seeds": {}}
    t0 = time.perf_counter()
    for seed in cfg.seeds:
        task = build_task(cfg, seed, stages.stats())
        pre = stages.pretrained(task.split.num_classes, task.split.input_shape)
        w0 = models.with_new_head(pre, task.split.num_classes, seed=seed)
        original, _ = stages.trained(task, w0, seed, "original")
        retrained, _ = stages.trained(task, w0, seed, "retrain")
        fcfg = stages.forget_config(task)
        step = methods.ntk_step(original, w0, task.retain, task.forget, fcfg, seed)
        ntk = methods.forget("ntk", original, w0, task.retain, task.forget, fcfg, direction=step)
        ft = methods.forget(
            "finetune", original, w0, task.retain, task.forget, replace(fcfg, finetune_lr=0.003)
        )
        threshold = readouts.error_and_loss(original, *task.forget)[1]
        scrubbed = {"original": original, "retrain": retrained, "finetune": ft.model}
        scrubbed["ntk"] = ntk.model
        row = {
            "noise_averaging": noise_averaging(seed, task, original, w0, retrained, fcfg, step),
            "finetune_anchor": finetune_anchor(seed, task, original, w0, retrained, fcfg),
            "relearn": relearn(seed, task, scrubbed, threshold, cfg.relearn_max_epochs),
            "retrain_duplicates": duplicates(stages, task, w0, seed, retrained, ntk.model),
        }
        results["seeds"][seed] = row
        print(f"seed {seed} done after {time.perf_counter() - t0:.0f} s", flush=True)
    results["seconds"] = time.perf_counter() - t0
    results["torch_threads"] = torch.get_num_threads()
    OUT.write_text(json.dumps(results, indent=2))
    print(OUT)


if __name__ == "__main__":
    main()
