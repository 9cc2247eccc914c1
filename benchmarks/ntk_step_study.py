"""How far the NTK step goes on converged fine-tuning (issue 6, claims 1 and 8).

On the committed CIFAR-5 All-CNN x0.4 run (cosine fine-tuning, converged), the NTK step moves
D_f toward the retrained model but stops short. This study takes the cached models of each seed
and compares the linearization variants of ``ForgetConfig`` (anchored or the authors' unanchored
form; linearized at w(D) or at w0) and the two trapezium legs by the D_f / D_r error and the L1
distance to the retrained model on D_f, at each trapezium scale and along the direction (scales
0 to 3).

    .venv/bin/python benchmarks/ntk_step_study.py --cache-dir runs/cache-cifar

Results: benchmarks/results/ntk_step_study.json, discussed in docs/results/README.md.
"""

from __future__ import annotations

import argparse
import copy
import json
import tomllib
from dataclasses import replace
from pathlib import Path

from forgetbox import methods, models, readouts, training
from forgetbox.experiment import Cache, Stages, build_task, config_from_dict
from forgetbox.functional import flatten, load_flat_, parameters_of

OUT = Path(__file__).with_name("results") / "ntk_step_study.json"
VARIANTS = {  # each measured with both trapezium legs ("full": Fig. 5; "retain": the authors')
    "anchored, at w(D)": dict(anchored=True, around="trained"),
    "unanchored, at w(D) (the authors' direction)": dict(anchored=False, around="trained"),
    "anchored, at w0": dict(anchored=True, around="pretrained"),
}
SCALES = (0.0, 0.5, 1.0, 1.5, 2.0, 2.5, 3.0)


def evaluate_at(original, retrained, task, weights) -> dict:
    """Errors on D_f and D_r and the L1 distance to the retrained model on D_f at ``weights``."""
    model = load_flat_(copy.deepcopy(original), weights)
    return {
        "error_forget": training.evaluate(model, *task.forget)[0],
        "error_retain": training.evaluate(model, *task.retain)[0],
        "l1_to_retrain_forget": readouts.l1_distance(model, retrained, task.forget[0]),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config", default="docs/results/cifar5-allcnn-cpu/config.toml")
    ap.add_argument("--cache-dir", default="runs/cache-cifar")
    ap.add_argument("--seeds", default="0,1,2")
    args = ap.parse_args()
    doc = tomllib.loads(Path(args.config).read_text())["experiment"]
    cfg = config_from_dict(doc).resolved()
    stages = Stages(cfg, Cache(Path(args.cache_dir)), lambda s: None)
    rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        task = build_task(cfg, seed, stages.stats())
        pre = stages.pretrained(task.split.num_classes, task.split.input_shape)
        w0 = models.with_new_head(pre, task.split.num_classes, seed=seed)
        original, _ = stages.trained(task, w0, seed, "original")
        retrained, _ = stages.trained(task, w0, seed, "retrain")
        w_d = flatten(parameters_of(original))
        target = (flatten(parameters_of(retrained)) - w_d).norm().item()
        for name, options in VARIANTS.items():
            fcfg = replace(stages.forget_config(task), **options)
            step = methods.ntk_step(original, w0, task.retain, task.forget, fcfg, seed)

            models_ = (original, retrained, task)
            legs = {}
            for leg in ("full", "retain"):
                c = replace(fcfg, trapezium_leg=leg)
                scale = methods.ntk_point(
                    original, w0, task.retain, task.forget, c, seed, direction=step
                )[2]
                legs[leg] = evaluate_at(*models_, w_d + scale * step.delta) | {"scale": scale}
            rows.append(
                {
                    "seed": seed,
                    "variant": name,
                    "delta_norm": step.delta.norm().item(),
                    "retrain_distance": target,
                    "retrain_error_forget": training.evaluate(retrained, *task.forget)[0],
                    "legs": legs,
                    "path": [
                        evaluate_at(*models_, w_d + s * step.delta) | {"scale": s} for s in SCALES
                    ],
                }
            )
            for leg, at in legs.items():
                print(
                    seed,
                    name,
                    f"{leg} leg: scale {at['scale']:.2f}",
                    f"D_f err {at['error_forget']:.2f} D_r err {at['error_retain']:.3f}",
                    f"L1 {at['l1_to_retrain_forget']:.3f}",
                    flush=True,
                )
            OUT.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
