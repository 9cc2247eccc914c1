"""Why NTK + Fisher does not leave less information in the weights than Fisher at the same noise
scale (claim 9, docs/bounds-readouts.md): the white-box bound split into its mean term
(1/2) sum (mu - w(D_r))^2 / var0 and its variance term (1/2) sum (r - 1 - ln r), r = var / var0,
for Fisher (centre w(D)), NTK + Fisher (centre h_NTK = w(D) + s delta_w), and the NTK centre
without the trapezium (s = 1), with Euclidean distances to w(D_r).

    .venv/bin/python benchmarks/claim9_study.py CONFIG.toml CACHE_DIR [SEEDS]
        # -> benchmarks/results/claim9_study-<name>.json

CONFIG.toml is a run's configuration ([experiment]); the run's cache must hold its
fine-tunings (they are read, never trained here unless missing). SEEDS: comma-separated
training seeds (default: the config's seeds), for instance the ensemble seeds of an
evaluation (1000,1001,...), whose split is the config's first seed.
"""

from __future__ import annotations

import json
import sys
import tomllib
from pathlib import Path

import torch

from forgetbox import methods, models
from forgetbox.experiment import Cache, Stages, config_from_dict
from forgetbox.experiment.tasks import build_task
from forgetbox.functional import flatten, parameters_of

ALPHAS = (1e-9, 1e-8, 1e-7, 1e-6)


def terms(mean, var, mean0, var0) -> dict:
    r = (var / var0).double()
    return {
        "mean_term": float(0.5 * (((mean - mean0) ** 2) / var0).sum()),
        "variance_term": float(0.5 * (r - 1 - torch.log(r)).sum()),
    }


def one_seed(stages: Stages, task, seed: int) -> dict:
    pre = stages.pretrained(task.split.num_classes, task.split.input_shape)
    w0 = models.with_new_head(pre, task.split.num_classes, seed=seed)
    original, _ = stages.trained(task, w0, seed, "original")
    retrained, _ = stages.trained(task, w0, seed, "retrain")
    key = stages.seed_key(task, seed, w0)
    fcfg = stages.forget_config(task)
    step = methods.ntk_step(original, w0, task.retain, task.forget, fcfg, seed)
    states = {
        m: stages.scrubbed(m, task, original, w0, retrained, seed, key, direction=lambda: step)
        for m in ("fisher", "ntk_fisher")
    }
    w_d = flatten(parameters_of(original)).double()
    w_r = flatten(parameters_of(retrained)).double()
    centres = {
        "fisher (w(D))": states["fisher"]["__mean__"].double(),
        "ntk_fisher (h_NTK)": states["ntk_fisher"]["__mean__"].double(),
        "NTK centre without the trapezium": w_d + step.delta.double(),
    }
    memo = methods.FisherMemo(retrained, task.retain[0], fcfg)
    out = {"euclidean_to_retrain": {k: float((c - w_r).norm()) for k, c in centres.items()}}
    out["euclidean_w(D)_to_retrain"] = float((w_d - w_r).norm())
    for alpha in ALPHAS:
        var0 = memo.variance(w_r.float(), alpha).double()
        row = {}
        for name, c in centres.items():
            var = memo.variance(c.float(), alpha).double()
            row[name] = terms(c, var, w_r, var0)
        out[f"alpha {alpha:.0e}"] = row
    return out


def main() -> None:
    cfg_path, cache = Path(sys.argv[1]), Path(sys.argv[2])
    doc = tomllib.loads(cfg_path.read_text())
    cfg = config_from_dict(doc.get("experiment", doc)).resolved()
    seeds = [int(s) for s in sys.argv[3].split(",")] if len(sys.argv) > 3 else list(cfg.seeds)
    stages = Stages(cfg, Cache(cache), log=print)
    results = {"config": str(cfg_path), "split_seed": cfg.seeds[0], "seeds": {}}
    for seed in seeds:
        # a run seed has its own split and cohort; an ensemble seed trains on the first one's
        task = build_task(cfg, seed if seed in cfg.seeds else cfg.seeds[0], stages.stats())
        results["seeds"][seed] = one_seed(stages, task, seed)
        print(seed, json.dumps(results["seeds"][seed]["alpha 1e-08"], indent=1), flush=True)
    out = Path(__file__).with_name("results") / f"claim9_study-{cfg_path.stem}.json"
    out.write_text(json.dumps(results, indent=2))
    print(out)


if __name__ == "__main__":
    main()
