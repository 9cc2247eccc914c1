"""What linearization and certification cost, measured (issue 32; docs/certified.md).

For each seed of the paper's split (the experiment's data, pre-training and recipes, cached in
``--cache-dir``):

1. *Linearization*: the test error of the network fine-tuned as usual (SGD, the profile's
   recipe) and linearized at w0 (trained exactly), with every parameter trained, the last
   block and the head, and the head alone; seconds and the linearized gradient norm.
2. *Certification* (every parameter trained, linearized): for each ε at δ = 1e-5, the noise σ,
   the test and D_f error of the released model against the exact linearized retrain, the
   seconds of a one-off request and of a request from a prepared kernel (and the preparation),
   against retraining the linearized model and retraining the standard one.

    python benchmarks/certified_study.py --dataset cifar10-npz --model allcnn --width 0.4 \
        --profile cpu --data-dir ../shared/data --cache-dir runs/cache-certified \
        --out benchmarks/results/certified_allcnn.json
    python benchmarks/certified_study.py --dataset cifar10-npz --model resnet18 --width 0.4 \
        --profile cpu --data-dir ../shared/data --cache-dir runs/cache-certified-resnet \
        --out benchmarks/results/certified_resnet18.json

Resumable: every training goes through the stage cache; the JSON is rewritten after each seed.
The requests are timed again on every run, so the machine must be idle throughout. ``--previous
FILE`` carries the rows of every seed not in ``--seeds`` over from an earlier JSON of the same
setup (its command, commit and hardware are kept under ``previous``), so that one seed can be
timed again, or the remaining seeds added, without re-timing the others.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import torch

from forgetbox import methods, ntk, readouts
from forgetbox.experiment import ExperimentConfig, Stages
from forgetbox.experiment.cache import Cache
from forgetbox.experiment.tasks import build_task
from forgetbox.versions import hardware, source_commit, versions

SUBSETS = {  # name -> trainable patterns by architecture
    "all": {"allcnn": None, "resnet18": None, "smallcnn": None},
    "last block + head": {
        "allcnn": "features.6.*,features.7.*,classifier.*",
        "resnet18": "layers.3.*,classifier.*",
        "smallcnn": "features.2.*,classifier.*",
    },
    "head": {"allcnn": "classifier.*", "resnet18": "classifier.*", "smallcnn": "classifier.*"},
}
EPSILONS = (0.1, 1.0, 10.0)
DELTA = 1e-5


def _stages(base: ExperimentConfig, cache: Path, **changes) -> Stages:
    return Stages(replace(base, **changes).resolved(), Cache(cache), log=lambda s: None)


def _errors(model, task) -> dict:
    return {
        "test": readouts.error_and_loss(model, *task.test)[0],
        "forget": readouts.error_and_loss(model, *task.forget)[0],
        "retain": readouts.error_and_loss(model, *task.retain)[0],
    }


def linearization_rows(base: ExperimentConfig, cache: Path, seed: int) -> list[dict]:
    rows = []
    for name, patterns in SUBSETS.items():
        for linearized in (False, True):
            stages = _stages(base, cache, trainable=patterns[base.model], linearized=linearized)
            task = build_task(stages.cfg, seed, stages.stats())
            w0 = stages.initial(task, seed)
            model, info = stages.trained(task, w0, seed, "original")
            rows.append(
                {
                    "seed": seed,
                    "trained": name,
                    "fine-tuning": "linearized" if linearized else "standard",
                    "parameters": sum(p.numel() for p in model.parameters() if p.requires_grad),
                    "errors": _errors(model, task),
                    "seconds": info["seconds"],
                    "grad_norm": info.get("grad_norm"),
                    "epochs_or_newton_steps": info["epochs"],
                }
            )
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _timed(fn, *args, **kwargs):
    t = time.perf_counter()
    out = fn(*args, **kwargs)
    return out, time.perf_counter() - t


def certification_rows(base: ExperimentConfig, cache: Path, seed: int) -> list[dict]:
    lin_stages = _stages(base, cache, linearized=True)
    std_stages = _stages(base, cache, linearized=False)
    task = build_task(lin_stages.cfg, seed, lin_stages.stats())
    w0 = lin_stages.initial(task, seed)
    original, _ = lin_stages.trained(task, w0, seed, "original")
    exact, exact_info = lin_stages.trained(task, w0, seed, "retrain")
    _, std_info = std_stages.trained(task, std_stages.initial(task, seed), seed, "retrain")
    lin = ntk.Linearization(weight_decay=base.weight_decay)
    opts = ntk.NTKOptions()
    keep = torch.ones(len(task.split.y_train), dtype=torch.bool)
    keep[task.forget_idx] = False
    state, prep_seconds = _timed(methods.prepare_certified, original, task.full, opts)
    rows = []
    for eps in EPSILONS:
        certify = methods.CertifyConfig(epsilon=eps, delta=DELTA)
        gen = torch.Generator
        one, one_s = _timed(
            methods.certified_release,
            original,
            task.retain,
            lin,
            opts,
            certify,
            gen().manual_seed(seed),
        )
        fast, fast_s = _timed(
            methods.certified_release,
            original,
            task.retain,
            lin,
            opts,
            certify,
            gen().manual_seed(seed),
            prepared=(state, keep),
        )
        released = ntk.linearized_with_weights(original, one.released)
        record = one.record
        rows.append(
            {
                "seed": seed,
                "epsilon": eps,
                "delta": DELTA,
                "mu": record["mu"],
                "sigma": record["sigma"],
                "residual_budget": record["residual_budget"],
                "residual": record["operator_record"]["residual_grad_norm"],
                "residual_prepared": fast.record["operator_record"]["residual_grad_norm"],
                "newton_steps": record["operator_record"]["iterations"],
                "errors_released": _errors(released, task),
                "errors_exact_retrain": _errors(exact, task),
                "errors_original": _errors(original, task),
                "request_seconds": one_s,
                "prepared_request_seconds": fast_s,
                "prepare_seconds": prep_seconds,
                "linearized_retrain_seconds": exact_info["seconds"],
                "standard_retrain_seconds": std_info["seconds"],
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def _carry_over(doc: dict, previous: dict, seeds: list[int]) -> None:
    """Copy ``previous``'s rows of the seeds not in ``seeds`` into ``doc`` (refused unless the
    setups match), recording where they came from."""
    if previous.get("setup") != doc["setup"]:
        raise SystemExit(f"--previous: another setup ({previous.get('setup')})")
    for key in ("linearization", "certification"):
        doc[key] += [r for r in previous[key] if r["seed"] not in seeds]
    doc["previous"] = {
        "seeds": sorted({r["seed"] for r in previous["certification"]} - set(seeds)),
        "command": previous["command"],
        "provenance": previous["provenance"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--dataset", default="cifar10-npz")
    p.add_argument("--model", default="allcnn")
    p.add_argument("--width", type=float, default=0.4)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--cache-dir", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--train-per-class", type=int)
    p.add_argument("--previous", type=Path, help="carry the other seeds' rows over from this JSON")
    args = p.parse_args()
    torch.set_num_threads(2)
    base = ExperimentConfig(
        dataset=args.dataset,
        model=args.model,
        width=args.width,
        profile=args.profile,
        data_dir=args.data_dir,
        seeds=tuple(args.seeds),
        train_per_class=args.train_per_class,
        out=str(args.out.parent),
    )
    doc = {
        "command": "python benchmarks/certified_study.py "
        + " ".join(
            f"--{k.replace('_', '-')} {v if not isinstance(v, list) else ' '.join(map(str, v))}"
            for k, v in vars(args).items()
            if v is not None
        ),
        "setup": {k: getattr(base, k) for k in ("dataset", "model", "width", "profile")},
        "versions": versions(),
        "provenance": {"source": source_commit(), "hardware": hardware("cpu")},
        "linearization": [],
        "certification": [],
    }
    if args.previous is not None:
        _carry_over(doc, json.loads(args.previous.read_text()), args.seeds)
    for seed in args.seeds:
        doc["linearization"] += linearization_rows(base, args.cache_dir, seed)
        doc["certification"] += certification_rows(base, args.cache_dir, seed)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(doc, indent=1) + "\n")


if __name__ == "__main__":
    main()
