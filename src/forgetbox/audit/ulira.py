"""U-LiRA (Hayes et al. 2024, "Inexact unlearning needs more careful evaluations"): a
per-example likelihood-ratio attack on unlearning.

Shadow models are trained on random halves of the data; each unlearns forget sets drawn from
its half. For a target example x, its "in" sample is the logit-scaled confidence of x under
the models that trained on x and then unlearned it, its "out" sample under the models that
never saw x. Gaussians fitted to the two samples give, for a held-out model, the log
likelihood ratio ``log N(c; mu_in, s_in) - log N(c; mu_out, s_out)`` of its confidence c; the
attack says "in" when it is positive. A perfect unlearning method makes "in" and "out" the
same distribution, and the attack's balanced accuracy 50 %.

Models are split into folds (all the forget sets of one shadow model in one fold): the
Gaussians are fitted on the other folds and the test is applied to the fold's models, so every
model is a held-out target once.

One shadow model may unlearn several cohorts. Those unlearned models share one original (its
half of the data, its seed), so for an example that none of them forgot their confidences are
near-duplicates (exact duplicates for a method that changes nothing), and the same holds for
an example in two of its cohorts. Counted as separate models they would shrink the fitted
variances (by ``C (S - 1) / (C S - 1)`` for exact duplicates of S shadow models, C cohorts
each) and inflate the pair counts. So each shadow model contributes, per example, at most one
"in" row (its first cohort that contains the example) and one "out" row (its first cohort,
when it never saw the example), to the fit and to the attacked pairs alike: the rows are
then independent draws, one per shadow model, as in LiRA (Carlini et al. 2022) with one forget
set per shadow model (the reproduction of U-LiRA in Georgiev et al.'s data-unlearning-bench,
``unlearning/auditors/ulira/ulira.py``). The other cohorts add coverage: they make more
examples forgotten by some model of each shadow model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .roc import Roc, roc

IN, OUT, EXCLUDED = 1, 0, -1
MIN_FIT = 2  # shadow models needed on each side to fit an example's Gaussians
MIN_STD = 1e-3


@dataclass(frozen=True)
class ULiRA:
    """The attack on every held-out (shadow model, example) pair: ``balanced_accuracy`` at the
    likelihood-ratio threshold 1 (0.5 is ideal), the ROC of the log ratio, the balanced
    accuracy of each attacked example (``per_example``, by pool index), and the counts."""

    balanced_accuracy: float
    roc: Roc
    per_example: dict[int, float]
    pairs_in: int
    pairs_out: int
    examples: int


def _log_normal(x: Tensor, mu: Tensor, sd: Tensor) -> Tensor:
    return -0.5 * ((x - mu) / sd) ** 2 - torch.log(sd) - 0.5 * np.log(2 * np.pi)


def _fit(conf: Tensor, status: Tensor, side: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per example: mean, standard deviation (ddof 1, floored) and count of the models with
    ``status == side``."""
    mask = (status == side).double()
    n = mask.sum(0)
    mu = (conf * mask).sum(0) / n.clamp_min(1)
    var = (((conf - mu) ** 2) * mask).sum(0) / (n - 1).clamp_min(1)
    return mu, var.sqrt().clamp_min(MIN_STD), n


def one_row_per_shadow(status: Tensor, shadows: Tensor) -> Tensor:
    """``status`` ``(M, n)`` with, for each shadow model (``shadows`` ``(M,)``: the shadow model
    of each row) and example, only its first :data:`IN` row and its first :data:`OUT` row kept;
    its other rows become :data:`EXCLUDED` for that example."""
    status = status.long()
    keep = torch.ones_like(status, dtype=torch.bool)
    for s in shadows.unique().tolist():
        rows = torch.nonzero(shadows == s).flatten()
        block = status[rows]
        for side in (IN, OUT):
            on = block == side
            keep[rows] &= ~on | (on.long().cumsum(0) == 1)
    return torch.where(keep, status, EXCLUDED)


def log_ratios(conf: Tensor, status: Tensor, folds: Tensor) -> Tensor:
    """``(M, n)`` log likelihood ratios of every model's confidences (NaN where the model's
    fold left fewer than :data:`MIN_FIT` fitting models on a side, or the pair is excluded).
    Every row counts as an independent model: see :func:`one_row_per_shadow`."""
    conf, status = conf.double(), status.long()
    out = torch.full_like(conf, float("nan"))
    for f in folds.unique().tolist():
        target, fit = folds == f, folds != f
        mu_in, sd_in, n_in = _fit(conf[fit], status[fit], IN)
        mu_out, sd_out, n_out = _fit(conf[fit], status[fit], OUT)
        lr = _log_normal(conf[target], mu_in, sd_in) - _log_normal(conf[target], mu_out, sd_out)
        ok = (n_in >= MIN_FIT) & (n_out >= MIN_FIT)
        lr = torch.where(ok[None, :] & (status[target] != EXCLUDED), lr, float("nan"))
        out[target] = lr
    return out


def ulira(conf: Tensor, status: Tensor, folds: Tensor, shadows: Tensor | None = None) -> ULiRA:
    """U-LiRA on ``conf`` ``(M, n)`` (logit-scaled confidence of n pool examples under M
    unlearned models), ``status`` ``(M, n)`` (:data:`IN`: trained on and unlearned,
    :data:`OUT`: never seen, :data:`EXCLUDED`: trained on and kept), ``folds`` ``(M,)`` and
    ``shadows`` ``(M,)``, the shadow model (original) each row was unlearned from (default:
    every row its own); one row per shadow model and side enters (:func:`one_row_per_shadow`)."""
    shadows = torch.arange(len(folds)) if shadows is None else shadows
    if conf.shape != status.shape or folds.shape != conf.shape[:1] or shadows.shape != folds.shape:
        raise ValueError(
            f"shapes differ: conf {tuple(conf.shape)}, status {tuple(status.shape)}, "
            f"folds {tuple(folds.shape)}, shadows {tuple(shadows.shape)}"
        )
    for s in shadows.unique().tolist():
        if len(folds[shadows == s].unique()) > 1:
            raise ValueError(f"shadow model {s} has rows in several folds")
    status = one_row_per_shadow(status, shadows)
    lr = log_ratios(conf, status, folds)
    attacked = ~torch.isnan(lr)
    is_in = attacked & (status == IN)
    is_out = attacked & (status == OUT)
    if not is_in.any() or not is_out.any():
        raise ValueError("too few shadow models: no example has enough 'in' and 'out' models")
    tpr = (lr[is_in] > 0).double().mean().item()
    tnr = (lr[is_out] <= 0).double().mean().item()
    per_example = {}
    for x in torch.nonzero(is_in.any(0) & is_out.any(0)).flatten().tolist():
        a = (lr[is_in[:, x], x] > 0).double().mean().item()
        b = (lr[is_out[:, x], x] <= 0).double().mean().item()
        per_example[x] = 0.5 * (a + b)
    return ULiRA(
        0.5 * (tpr + tnr),
        roc(lr[is_in].numpy(), lr[is_out].numpy()),
        per_example,
        int(is_in.sum()),
        int(is_out.sum()),
        len(per_example),
    )
