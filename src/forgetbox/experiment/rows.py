"""One scrubbed model's readouts (a row of ``per_seed``) and the trade-off grid of Fig. 3."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .. import bounds, methods, models, readouts
from ..functional import flatten, load_flat_, parameters_of
from .stages import clone_like, extras_of, model_from

if TYPE_CHECKING:
    from .seed_run import SeedRun

READOUT_KEYS = (
    "error_forget",
    "error_retain",
    "error_test",
    "error_val",
    "loss_forget",
    "relearn_epochs",
    "mia_forget_member_rate",
    "mia_auc",
    "l1_to_retrain_forget",
    "l1_to_retrain_retain",
    "l1_to_retrain_test",
    "info_weights_nats",
    "info_activations_nats_forget",
    "info_activations_nats_retain",
    "info_activations_nats_test",
    "info_activations_diag_nats_forget",
    "seconds",
)


def subsample(x: Tensor, n: int, seed: int) -> Tensor:
    """At most ``n`` rows of ``x``, drawn with a seed and kept in their order."""
    if len(x) <= n:
        return x
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx.sort().values]


def _behaviour(run: SeedRun, model: nn.Module) -> dict:
    """Errors and losses, re-learn time, the membership attack and L1 distances."""
    stages, task, retrained, seed = run.stages, run.task, run.retrained, run.seed
    row: dict = {}
    sp = task.split
    for name, (x, y) in {
        "forget": task.forget,
        "retain": task.retain,
        "test": task.test,
        "val": (sp.x_val, sp.y_val),
    }.items():
        err, loss = readouts.error_and_loss(model, x, y)
        row[f"error_{name}"] = err
        row[f"loss_{name}"] = loss
    rl = readouts.relearn_time(
        model,
        *task.full,
        *task.forget,
        threshold=run.original_loss_forget,
        max_epochs=stages.cfg.relearn_max_epochs,
        seed=seed,
        weight_decay=stages.cfg.relearn_weight_decay,
        check_before_training=stages.cfg.relearn_check_before,
    )
    row["relearn_epochs"] = rl.epochs
    mia = readouts.membership_attack(model, task.retain, task.test, task.forget, seed=seed)
    row["mia_forget_member_rate"] = mia.member_rate
    row["mia_auc"] = mia.auc
    for name, x in (("forget", task.forget[0]), ("retain", task.retain[0]), ("test", task.test[0])):
        row[f"l1_to_retrain_{name}"] = readouts.l1_distance(model, retrained, x)
    return row


def _noise(run: SeedRun, method: str, state: dict, mean: Tensor, mean0: Tensor) -> tuple:
    """``(var, var0, alpha)``: the method's noise (or, if it has none, ntk_fisher's alpha)
    and the baseline's, each ``alpha F^{-1}`` at its point (the seed's Fisher memo gives each
    point's Fisher once). A linearized run uses the certified mechanism's isotropic noise
    ``sigma^2 I`` for every method, so the bounds are exact KLs against the exact retrain."""
    cfg = run.stages.cfg
    if cfg.linearized:
        lin = run.fcfg.linearization.replace(weight_decay=cfg.weight_decay)
        dtype = next(run.original.parameters()).dtype
        sigma = run.fcfg.certify.mechanism(dtype, lin.weight_decay)["sigma"]
        var = torch.full(mean.shape, sigma**2, dtype=torch.float64, device=mean.device)
        return var, var, None
    alpha = run.stages.alpha_for(method) if "__var__" in state else cfg.alpha_ntk_fisher
    if "__var__" in state:
        var = state["__var__"].to(mean.device)
    else:
        var = run.fishers.variance(mean, alpha)
    return var, run.fishers.variance(mean0, alpha), alpha


def _information(run: SeedRun, method: str, state: dict, model: nn.Module) -> dict:
    """The white-box and black-box bounds at the method's noise against the retrained model
    (:func:`_noise`)."""
    stages, task, seed = run.stages, run.task, run.seed
    mean = state["__mean__"].to(stages.device)
    mean0 = flatten(parameters_of(run.retrained))
    var, var0, alpha = _noise(run, method, state, mean, mean0)
    row = {"info_weights_nats": bounds.white_box(mean, var, mean0, var0).nats, "info_alpha": alpha}
    q = stages.cfg.queries_per_subset
    for name, x in (("forget", task.forget[0]), ("retain", task.retain[0]), ("test", task.test[0])):
        bb = bounds.black_box(model, mean, var, mean0, var0, subsample(x, q, seed))
        row[f"info_activations_nats_{name}"] = bb.mean
        row[f"info_activations_diag_nats_{name}"] = bb.mean_diagonal
    return row


def readout_row(run: SeedRun, method: str, state: dict) -> dict:
    """All readouts of one scrubbed model (``state``: its cached stage) of a seed (one row of
    ``per_seed``)."""
    model = model_from(run.original, state).eval()
    ex = extras_of(state)
    row: dict = {"seed": run.seed}
    row |= _behaviour(run, model)
    row |= _information(run, method, state, model)
    row["seconds"] = ex["seconds"]
    if ex.get("scale") is not None:
        row["trapezium_scale"] = ex["scale"]
    return row


def tradeoff_rows(run: SeedRun, method: str, state: dict) -> list[dict]:
    """Fig. 3: test error and remaining information over a grid of noise scales and draws."""
    stages, task, seed, fishers = run.stages, run.task, run.seed, run.fishers
    original, retrained = run.original, run.retrained
    cfg, fcfg = stages.cfg, run.fcfg
    mean = state["__mean__"].to(stages.device)
    probe = load_flat_(clone_like(original), mean)
    F = fishers(mean)
    mean0 = flatten(parameters_of(retrained))
    gen = torch.Generator().manual_seed(seed)
    rows = []
    q = subsample(task.forget[0], cfg.queries_per_subset, seed)
    for alpha in cfg.tradeoff_alphas:
        var = methods.noise_variance(
            F,
            parameters_of(probe),
            alpha=alpha,
            head=models.head_name(probe),
            config=fcfg.noise,
            forgotten_class=fcfg.forgotten_class,
        )
        var0 = fishers.variance(mean0, alpha)
        white = bounds.white_box(mean, var, mean0, var0).nats
        black = bounds.black_box(probe, mean, var, mean0, var0, q).mean
        for draw in range(cfg.tradeoff_draws):
            noisy = methods.noisy_weights(probe, mean, var, gen, fcfg)
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "alpha": alpha,
                    "draw": draw,
                    "error_test": readouts.error_and_loss(noisy, *task.test)[0],
                    "error_forget": readouts.error_and_loss(noisy, *task.forget)[0],
                    "info_weights_nats": white,
                    "info_activations_nats_forget": black,
                }
            )
    return rows
