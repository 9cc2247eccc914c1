"""Population membership attacks on an unlearned model: one threshold on one statistic for
every example, forgotten examples (positives) against held-out test examples (negatives)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from .roc import Roc, roc

STATISTICS = ("loss", "confidence")


@dataclass(frozen=True)
class PopulationAttack:
    """A threshold attack's ROC (:class:`~forgetbox.audit.roc.Roc`) and its statistic."""

    statistic: str
    roc: Roc


def member_score(logits: Tensor, labels: Tensor, statistic: str) -> Tensor:
    """Higher means "more likely trained on": minus the cross-entropy loss (``loss``) or the
    softmax probability of the true label (``confidence``), float64, ``(..., n)``."""
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {STATISTICS}; got {statistic!r}")
    logp = torch.log_softmax(logits.double(), -1)
    own = logp.gather(-1, labels.expand(logp.shape[:-1])[..., None]).squeeze(-1)
    return own if statistic == "loss" else own.exp()


def threshold_attack(
    forget_logits: Tensor,
    forget_labels: Tensor,
    test_logits: Tensor,
    test_labels: Tensor,
    statistic: str,
) -> PopulationAttack:
    """The ROC of a threshold on ``statistic`` separating D_f from test examples; logits
    ``(..., n, c)`` (a leading model axis pools the examples of every model)."""
    pos = member_score(forget_logits, forget_labels, statistic).reshape(-1).numpy()
    neg = member_score(test_logits, test_labels, statistic).reshape(-1).numpy()
    return PopulationAttack(statistic, roc(pos, neg))


def same_class_negatives(
    test_logits: Tensor, test_labels: Tensor, forget_labels: Tensor
) -> tuple[Tensor, Tensor]:
    """The test examples whose label occurs in D_f, logits ``(..., n', c)`` and labels
    ``(n',)``: negatives that share D_f's classes, so that a threshold attack measures
    membership rather than how hard D_f's classes are. Exact for a one-class cohort (the paper's
    protocol); for a cohort of several classes it drops the other classes without reweighting.
    """
    keep = torch.isin(test_labels, forget_labels.unique())
    if not bool(keep.any()):
        raise ValueError("no test example shares a class with the forget set")
    return test_logits[..., keep, :], test_labels[keep]


def auc_interval(
    forget_logits: Tensor,
    forget_labels: Tensor,
    test_logits: Tensor,
    test_labels: Tensor,
    statistic: str,
    *,
    draws: int = 1000,
    seed: int = 0,
) -> tuple[float, float]:
    """A 95 % percentile interval of :func:`threshold_attack`'s AUC from ``draws`` bootstrap
    resamples of the *examples* (D_f and test each, every model's score of an example kept
    together): pooling K models multiplies the scores, not the distinct examples, and the
    interval says how much a cohort of |D_f| examples can tell."""
    pos = member_score(forget_logits, forget_labels, statistic).reshape(-1, len(forget_labels))
    neg = member_score(test_logits, test_labels, statistic).reshape(-1, len(test_labels))
    pos, neg = pos.numpy(), neg.numpy()
    if np.isnan(pos).any() or np.isnan(neg).any():
        return math.nan, math.nan  # as ranking gives: a NaN score has no rank
    pairs = pair_wins(pos, neg)
    rng = np.random.default_rng(seed)
    n_pos, n_neg = pos.shape[1], neg.shape[1]
    w, v = np.empty((draws, n_pos)), np.empty((draws, n_neg))
    for i in range(draws):  # the draws of the examples (each with all its models' scores)
        w[i] = np.bincount(rng.integers(0, n_pos, n_pos), minlength=n_pos)
        v[i] = np.bincount(rng.integers(0, n_neg, n_neg), minlength=n_neg)
    # the Mann-Whitney count of each draw: sum over example pairs of their multiplicities
    # times their wins; half-integers below 2**52, so exact in any order, and the AUC rounded
    # once, as rank_auc's (tested equal)
    wins = ((w @ pairs) * v).sum(1)
    aucs = wins / (pos.size * neg.size)
    lo, hi = np.quantile(aucs, (0.025, 0.975))
    return float(lo), float(hi)


def pair_wins(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``(n_pos, n_neg)``: for each positive example e and negative example t (columns of
    ``(K_pos, n_pos)`` and ``(K_neg, n_neg)`` scores, one row per model), the number of model
    pairs with ``pos[k, e] > neg[k', t]`` plus half of those with equal scores."""
    out = np.empty((pos.shape[1], neg.shape[1]))
    for e in range(pos.shape[1]):  # one positive example's K scores against every column
        x = pos[:, e][:, None, None]
        below = (neg[None] < x).sum((0, 1))
        equal = (neg[None] == x).sum((0, 1))
        out[e] = below + 0.5 * equal
    return out
