"""U-LiRA's shadow models (Hayes et al. 2024): each trained on a random half of D, then made
to forget several cohorts drawn from its half, by every attacked method. What the attack needs
of each unlearned model is the confidence of every example of D and whether the model trained
on it and unlearned it, never saw it, or kept it."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from .. import audit, methods
from ..audit.ulira import EXCLUDED, IN, OUT
from ..experiment.stages import Stages, diverged, extras_of, model_from
from ..experiment.tasks import Task
from ..progress import progress
from ..training import predict
from .config import EvaluateConfig
from .releases import mechanism_sigma, released

SHADOW_SEED = 50_000  # shadow model s trains with seed seed_base + SHADOW_SEED + s


@dataclass(frozen=True)
class ShadowPlan:
    """Which examples (indices into D) each shadow model trains on, and the cohorts it
    forgets (indices into D, each inside its half)."""

    halves: list[np.ndarray]
    cohorts: list[list[np.ndarray]]


def cohort_size(task: Task, cfg_num_to_forget: int | None, half_count: int) -> int:
    """|D_f|, at most half of the forgotten class's images in a half, so that each of them is
    forgotten by about half of the models that trained on it."""
    want = len(task.forget_idx) if cfg_num_to_forget is None else cfg_num_to_forget
    return max(1, min(want, half_count // 2))


def plan(task: Task, cfg: EvaluateConfig, num_to_forget: int | None = None) -> ShadowPlan:
    """Random halves of D and, in each, ``forget_sets`` cohorts from the forgotten class
    (seeded by ``seed_base``; the same plan for every method)."""
    y = task.split.y_train.numpy()
    forget_class = int(y[task.forget_idx[0]])
    n = len(y)
    halves, cohorts = [], []
    for s in range(cfg.shadow_models):
        rng = np.random.default_rng(cfg.seed_base + SHADOW_SEED + s)
        half = np.sort(rng.permutation(n)[: n // 2])
        members = half[y[half] == forget_class]
        size = cohort_size(task, num_to_forget, len(members))
        halves.append(half)
        cohorts.append(
            [np.sort(rng.choice(members, size, replace=False)) for _ in range(cfg.forget_sets)]
        )
    return ShadowPlan(halves, cohorts)


def _sub_task(task: Task, half: np.ndarray, cohort: np.ndarray) -> Task:
    """The task of a shadow model: D restricted to ``half`` (indices recorded in the source's
    terms, so cache keys differ from the full split's), forgetting ``cohort``."""
    sp = task.split
    idx = torch.as_tensor(half)
    source = sp.indices.get("train")
    indices = dict(sp.indices)
    indices["train"] = [source[i] for i in half] if source else half.tolist()
    sub = replace(sp, x_train=sp.x_train[idx], y_train=sp.y_train[idx], indices=indices)
    local = torch.as_tensor(np.searchsorted(half, cohort))
    return Task(sub, local)


@dataclass
class ShadowConfidences:
    """Per attacked method: ``conf`` ``(M, n)`` margins of every example of D under the M
    unlearned shadow models, ``status`` ``(M, n)`` (IN / OUT / EXCLUDED), ``folds`` ``(M,)``,
    and ``shadows`` ``(M,)``, the shadow model each unlearned model comes from (its cohorts
    share one original, so U-LiRA takes one row of each per example and side)."""

    conf: dict[str, Tensor]
    status: Tensor
    folds: Tensor
    seconds: dict[str, list[float]]
    shadows: Tensor


def shadow_confidences(
    stages: Stages, task: Task, cfg: EvaluateConfig, log: Callable[[str], None] = print
) -> ShadowConfidences:
    """Train (or read from the cache) every shadow model and every unlearned version of it."""
    shadow_plan = plan(task, cfg, stages.cfg.num_to_forget)
    x, y, n = task.split.x_train, task.split.y_train, len(task.split.y_train)
    conf = {m: [] for m in cfg.attacked_methods}
    seconds = {m: [] for m in cfg.attacked_methods}
    status, folds, shadows = [], [], []
    for s in progress(range(cfg.shadow_models), desc="U-LiRA shadow models"):
        t0 = time.perf_counter()
        seed = cfg.seed_base + SHADOW_SEED + s
        half = shadow_plan.halves[s]
        w0 = stages.initial(task, seed)
        first = _sub_task(task, half, shadow_plan.cohorts[s][0])
        original, _ = stages.trained(first, w0, seed, "original")
        for cohort in shadow_plan.cohorts[s]:
            sub = _sub_task(task, half, cohort)
            row = np.full(n, OUT)
            row[half] = EXCLUDED
            row[cohort] = IN
            status.append(row)
            folds.append(s % cfg.folds)
            shadows.append(s)
            direction = _shared_step(stages, sub, original, w0, seed)
            for method in cfg.attacked_methods:
                model, secs = _unlearned(stages, sub, original, w0, seed, method, direction)
                if model is None:  # diverged: a NaN row, left out of U-LiRA (scores.ulira_part)
                    conf[method].append(torch.full((n,), torch.nan, dtype=torch.float64))
                else:
                    conf[method].append(audit.margin(predict(model, x).double(), y))
                seconds[method].append(secs)
        log(f"shadow model {s + 1}/{cfg.shadow_models} ready in {time.perf_counter() - t0:.0f} s")
    return ShadowConfidences(
        {m: torch.stack(v) for m, v in conf.items()},
        torch.as_tensor(np.stack(status)),
        torch.as_tensor(folds),
        seconds,
        torch.as_tensor(shadows),
    )


def _shared_step(stages: Stages, sub: Task, original, w0, seed: int) -> Callable:
    """The cohort's NTK step, solved at most once for ntk and ntk_fisher."""
    step: list = []

    def direction():
        if not step:
            fcfg = stages.forget_config(sub)
            step.append(methods.ntk_step(original, w0, sub.retain, sub.forget, fcfg, seed))
        return step[0]

    return direction


def _unlearned(stages: Stages, sub: Task, original, w0, seed: int, method: str, direction):
    """``(model, seconds)``: ``original`` made to forget ``sub``'s cohort by ``method`` (model
    None where the method diverged)."""
    if method == "original":
        return original, 0.0
    if method == "retrain":
        model, info = stages.trained(sub, w0, seed, "retrain")
        if stages.cfg.linearized:  # the reference mechanism: the exact retrain plus the noise
            sigma = mechanism_sigma(stages, sub, next(model.parameters()).dtype)
            cohort = sub.forget_idx.tolist()
            model = released(model, sigma, "shadow-retrain", seed, cohort)
        return model, info["seconds"]
    key_base = stages.seed_key(sub, seed, w0)
    state = stages.scrubbed(
        method, sub, original, w0, None, seed, key_base, direction=direction, allow_divergence=True
    )
    if diverged(state):
        return None, extras_of(state)["seconds"]
    return model_from(original, state).eval(), extras_of(state)["seconds"]
