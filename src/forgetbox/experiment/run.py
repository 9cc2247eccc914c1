"""The paper's experiment: pre-train -> fine-tune -> forget -> read out, over seeds.

Each stage is cached in ``<out>/cache`` under a hash of everything it depends on, so an
interrupted run continues where it stopped and an identical second run recomputes nothing.
:func:`run_experiment` returns the results dictionary written to ``results.json`` (schema in
``docs/experiment.md``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .. import paths, readouts
from ..atomic import atomic_write_json, staged_files
from ..functional import flatten, num_parameters, parameters_of
from ..progress import progress
from ..report.outputs import write_all
from ..versions import hardware, source_commit, versions
from . import claims
from .cache import Cache
from .config import ExperimentConfig
from .rows import readout_row, tradeoff_rows
from .seed_run import SeedRun
from .stages import Stages, model_from
from .tasks import Task, build_task

NOISY_METHODS = ("ntk_fisher", "fisher")  # the trade-off sweep (Fig. 3)
PATH_METHODS = ("ntk", "ntk_fisher", "fisher", "newton")  # the L1 path (Fig. 4)


def _methods_and_rows(run: SeedRun) -> tuple[dict, dict]:
    stages, cfg, task = run.stages, run.stages.cfg, run.task
    rows, states = {}, {}
    for method in progress(cfg.methods, desc=f"methods (seed {run.seed})"):
        state = stages.scrubbed(
            method,
            task,
            run.original,
            run.w0,
            run.retrained,
            run.seed,
            run.key_base,
            direction=run.direction,
        )
        states[method] = state
        run.known_fisher(state)
        rows[method] = stages.cache.json(
            run.readout_key(method), lambda m=method, s=state: readout_row(run, m, s)
        )
    return rows, states


def _tradeoff(run: SeedRun, states: dict) -> list[dict]:
    out = []
    for method in (m for m in NOISY_METHODS if m in states):
        out += run.stages.cache.json(
            run.tradeoff_key(method), lambda m=method: tradeoff_rows(run, m, states[m])
        )
    return out


def _activation_path(run: SeedRun, states: dict) -> list[dict]:
    task = run.task
    subsets = {"forget": task.forget[0], "retain": task.retain[0], "test": task.test[0]}
    alphas = tuple(run.stages.cfg.path_alphas)
    out = []
    for method in (m for m in PATH_METHODS if m in states):
        rows = run.stages.cache.json(
            run.path_key(method),
            lambda m=method: readouts.activation_path(
                run.original, states[m]["__mean__"], run.retrained, subsets, alphas
            ),
        )
        out += [{"method": method, "seed": run.seed, **r} for r in rows]
    return out


# noisy draws per noisy method shown as a cloud in Fig. 1
CLOUD_DRAWS = 16


def _noise_cloud(state: dict, seed: int) -> Tensor:
    """``(CLOUD_DRAWS, p)`` draws ``mean + sqrt(var) * N(0, I)`` of a noisy method (seeded)."""
    mean, std = state["__mean__"].cpu().double(), state["__var__"].cpu().double().sqrt()
    gen = torch.Generator().manual_seed(20_000 + seed)
    return mean + std * torch.randn(CLOUD_DRAWS, len(mean), generator=gen, dtype=torch.float64)


def _pca(run: SeedRun, states: dict) -> dict:
    pts = {m: states[m]["__mean__"] for m in ("ntk", "ntk_fisher", "fisher") if m in states}
    noisy = {
        m: flatten(parameters_of(model_from(run.original, states[m]))).cpu()
        for m in ("ntk_fisher", "fisher")
        if m in states
    }
    clouds = {m: _noise_cloud(states[m], run.seed) for m in noisy if "__var__" in states[m]}
    res = readouts.pca_paths(
        {"D": run.orig_info["trajectory"], "D_r": run.retr_info["trajectory"]},
        {
            **{f"{m} (mean)": v for m, v in pts.items()},
            **{f"{m} (noisy)": v for m, v in noisy.items()},
        },
        clouds=clouds,
    )
    return {
        "paths": {k: v.tolist() for k, v in res.paths.items()},
        "points": {k: v.tolist() for k, v in res.points.items()},
        "clouds": {k: v.tolist() for k, v in (res.clouds or {}).items()},
        "explained": res.explained.tolist(),
    }


def _task_info(run: SeedRun) -> dict:
    """Sizes of the data and the model (the same for every seed)."""
    sp = run.task.split
    return {
        "n_train": len(sp.y_train),
        "n_forget": len(run.task.forget_idx),
        "n_retain": len(sp.y_train) - len(run.task.forget_idx),
        "n_val": len(sp.y_val),
        "n_test": len(sp.y_test),
        "num_classes": sp.num_classes,
        "input_shape": list(sp.input_shape),
        "num_params": num_parameters(run.w0),
        "pretrain": run.stages.pretrain_info,
    }


def run_seed(stages: Stages, seed: int, task: Task | None = None) -> dict:
    """Every stage of one seed; the seed's rows, trade-off, path, PCA, split and training."""
    task = task or build_task(stages.cfg, seed, stages.stats())
    run = SeedRun.build(stages, seed, task)
    rows, states = _methods_and_rows(run)
    tradeoff = _tradeoff(run, states)
    path = _activation_path(run, states)
    pca = _pca(run, states) if seed == stages.cfg.seeds[0] else None
    task = run.task
    return {
        "rows": rows,
        "tradeoff": tradeoff,
        "activation_path": path,
        "pca": pca,
        "splits": {"seed": seed, **task.split.indices, "forget": task.forget_idx.tolist()},
        "task": _task_info(run),
        "training": {
            "original": {k: v for k, v in run.orig_info.items() if k != "trajectory"},
            "retrain": {k: v for k, v in run.retr_info.items() if k != "trajectory"},
        },
    }


def aggregate(per_seed_rows: dict[str, list[dict]]) -> dict:
    """Mean and standard deviation over seeds of every readout, per method."""
    out = {}
    for method, rows in per_seed_rows.items():
        keys = [k for k in rows[0] if k != "seed"]
        mean, std = {}, {}
        for k in keys:
            vals = np.array([r[k] for r in rows if r.get(k) is not None], dtype=float)
            vals = vals[np.isfinite(vals)]
            mean[k] = float(vals.mean()) if len(vals) else None
            std[k] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out[method] = {"per_seed": rows, "mean": mean, "std": std}
    return out


def prepare_run(cfg: ExperimentConfig, log: Callable[[str], None]) -> tuple[Stages, dict]:
    """The resolved configuration's stages and every seed's task, checked before any work or
    write: settings (when resolved), the output and cache folders, the data files and each
    seed's split and cohort."""
    cfg = cfg.resolved()
    out = paths.output_dir(cfg.out)
    if cfg.cache_dir is not None:
        paths.output_dir(cfg.cache_dir, "--cache-dir")
    stages = Stages(cfg, Cache(Path(cfg.cache_dir) if cfg.cache_dir else out / "cache"), log)
    tasks = {seed: build_task(cfg, seed, stages.stats()) for seed in cfg.seeds}
    return stages, tasks


def run_experiment(cfg: ExperimentConfig, *, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the whole experiment; write every output into ``cfg.out``."""
    stages, tasks = prepare_run(cfg, log)
    cfg, out = stages.cfg, Path(stages.cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    per_method: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    tradeoff, path, pca, splits, trainings, task_info = [], [], None, [], [], None
    for seed in progress(cfg.seeds, desc="seeds"):
        res = run_seed(stages, seed, tasks[seed])
        task_info = task_info or res["task"]
        for m in cfg.methods:
            per_method[m].append(res["rows"][m])
        tradeoff += res["tradeoff"]
        path += res["activation_path"]
        pca = pca or res["pca"]
        splits.append(res["splits"])
        trainings.append({"seed": seed, **res["training"]})
    results = {
        "config": cfg.as_dict(),
        "versions": versions(),
        "provenance": {
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "source": source_commit(),
            "hardware": hardware(cfg.device),
        },
        "task": task_info,
        "seeds": list(cfg.seeds),
        "methods": aggregate(per_method),
        "tradeoff": tradeoff,
        "activation_path": path,
        "pca": pca,
        "training": trainings,
        "wall_seconds": time.perf_counter() - t0,
        "cache": {"hits": stages.cache.hits, "misses": stages.cache.misses},
        "compute": stages.cache.compute(),
    }
    claims.judge(results, out)
    for w in results["warnings"]:
        log(f"warning: {w}")
    publish(out, results, splits)
    return results


def publish(out: Path, results: dict, splits: list) -> None:
    """Write every output into a staging folder inside ``out``, then move the files into
    place, ``results.json`` last: a run stopped while writing leaves the previous outputs
    whole (never new figures beside an old report)."""
    with staged_files(out, last="results.json") as stage:
        atomic_write_json(stage / "splits.json", splits)
        write_all(results, stage)


def train_only(cfg: ExperimentConfig, *, log: Callable[[str], None] = print) -> list[dict]:
    """Pre-train and fine-tune on D and D_r (cached), without forgetting: per seed and model
    (w0, original, retrain) the errors on D_r, D_f and test and the epochs trained."""
    stages, tasks = prepare_run(cfg, log)
    rows = []
    for seed, task in tasks.items():
        w0 = stages.initial(task, seed)
        for name, (model, info) in (
            ("w0", (w0, {"epochs": 0})),
            ("original", stages.trained(task, w0, seed, "original")),
            ("retrain", stages.trained(task, w0, seed, "retrain")),
        ):
            sets = {"retain": task.retain, "forget": task.forget, "test": task.test}
            row = {"seed": seed, "model": name}
            row |= {f"error_{k}": readouts.error_and_loss(model, *v)[0] for k, v in sets.items()}
            if "grad_norm" in info:  # a linearized fine-tuning's stationarity
                row["grad_norm"] = info["grad_norm"]
            rows.append(row | {"epochs": info["epochs"]})
    return rows
