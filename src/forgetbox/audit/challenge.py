"""The NeurIPS 2023 Machine Unlearning Challenge's score, as its official scoring code defines
it (google-deepmind/unlearning_evaluation, ``metric.py`` and ``main.py``).

Per forget example, the confidences of the unlearned models and of the retrained models are
two samples. Decision rules try to tell them apart: single thresholds (one side is "positive")
and double thresholds (an interval around the peakier sample). Each rule's false positive and
false negative rates give an epsilon of (epsilon, delta)-indistinguishability,
``max(log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR))``; the example's
epsilon is the largest over the rules (capped at 50). Epsilons fall in buckets of width 0.5
worth 1, 1/2, 1/4, ... points up to ``ceil(ln(K - 1))`` for K models per side; the forget
quality F is the mean of the points over D_f, and the final score is
``F * (RA_U / RA_R) * (TA_U / TA_R)`` with the mean retain and test accuracies of the unlearned
(U) and retrained (R) models.

Rates are computed here as exact fractions in float64 (the official code takes their mean in
float32), which can matter only for an epsilon exactly on a bucket edge.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

DELTA = 1e-5
EPSILON_CAP = 50.0
THRESHOLDS_PER_UNIT = 100
BUFFER = 2.0  # the double-threshold rule's search margin
BUCKET = 0.5


def _linspace(start: float, end: float, steps: int) -> Tensor:
    return torch.linspace(start, end, max(int(steps), 0), dtype=torch.float64)


def _double_threshold_rates(pos: Tensor, neg: Tensor) -> Tensor:
    """``(4, T)`` rates TPR, FNR, FPR, TNR of the intervals [left, right] that call a value in
    them "positive", positive being the peakier (narrower) sample."""
    pos_range, neg_range = pos.max() - pos.min(), neg.max() - neg.min()
    width = float(neg_range if pos_range > neg_range else pos_range)
    if pos_range >= neg_range:
        pos, neg = neg, pos
    low, high = float(pos.min()) + width - BUFFER, float(pos.max()) + BUFFER
    right = _linspace(low, high, math.ceil((high - low) * THRESHOLDS_PER_UNIT))
    n_left = math.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT)
    # for each right edge tr, n_left left edges from tr - width - BUFFER to tr - width + BUFFER
    frac = _linspace(0.0, 1.0, n_left)
    left = (right[:, None] - width - BUFFER) + frac[None, :] * (2 * BUFFER)
    left, right = left.reshape(-1), right.repeat_interleave(n_left)
    return _interval_rates(pos, neg, left, right)


def _interval_rates(pos: Tensor, neg: Tensor, left: Tensor, right: Tensor) -> Tensor:
    def inside(c: Tensor) -> Tensor:  # (T,) fraction of c in [left, right], by sorted counts
        s = torch.sort(c).values
        below_right = torch.searchsorted(s, right, right=True)  # count c <= right
        below_left = torch.searchsorted(s, left, right=False)  # count c < left
        return (below_right - below_left).clamp_min(0).double() / len(c)

    tpr, fpr = inside(pos), inside(neg)
    return torch.stack([tpr, 1 - tpr, fpr, 1 - fpr])


def _single_threshold_rates(pos: Tensor, neg: Tensor) -> Tensor:
    """``(4, T)`` rates of the thresholds t that call a value ``>= t`` positive."""
    both = torch.cat([pos, neg])
    lo, hi = float(both.min()), float(both.max())
    t = _linspace(lo, hi, math.ceil((hi - lo) * THRESHOLDS_PER_UNIT))
    ps, ns = torch.sort(pos).values, torch.sort(neg).values
    tpr = (len(pos) - torch.searchsorted(ps, t, right=False)).double() / len(pos)
    fpr = (len(neg) - torch.searchsorted(ns, t, right=False)).double() / len(neg)
    return torch.stack([tpr, 1 - tpr, fpr, 1 - fpr])


def _epsilon_of_rates(rates: Tensor, delta: float) -> float:
    tpr, fnr, fpr, tnr = rates.numpy()
    perfect = (fpr + fnr == 0) & (tpr + tnr == 2)
    if perfect.any():
        return math.inf
    usable = fpr * fnr != 0  # a rule with one rate at 0 (not both) is discarded
    if not usable.any():
        return 0.0  # no usable rule (the official code stops with an error here)
    fpr, fnr = fpr[usable], fnr[usable]
    with np.errstate(divide="ignore", invalid="ignore"):
        # the larger of the two that is a number (a log of a negative is not)
        eps = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    eps = eps[~np.isnan(eps)]
    return float(np.clip(eps.max(), 0, None)) if len(eps) else 0.0


def example_epsilons(unlearned: Tensor, retrained: Tensor, *, delta: float = DELTA) -> Tensor:
    """Per example, the epsilon that the two samples of confidences allow, in [0, 50]:
    ``unlearned`` and ``retrained`` are ``(K, n)`` (K models, n forget examples)."""
    u, r = unlearned.double(), retrained.double()
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"confidences must be (models, examples) alike; got {u.shape}, {r.shape}")
    retrain_positive = r.median(0).values > u.median(0).values
    out = []
    for i in range(u.shape[1]):
        pos, neg = (r[:, i], u[:, i]) if retrain_positive[i] else (u[:, i], r[:, i])
        pr, nr = float(pos.max() - pos.min()), float(neg.max() - neg.min())
        largest, smallest = max(pr, nr), min(pr, nr)
        if largest > 0 and smallest / largest < 0.01:  # one sample is far peakier: the cap
            out.append(EPSILON_CAP)
            continue
        rates = torch.cat([_double_threshold_rates(pos, neg), _single_threshold_rates(pos, neg)], 1)
        out.append(min(_epsilon_of_rates(rates, delta), EPSILON_CAP))
    return torch.tensor(out, dtype=torch.float64)


def bucket_points(num_models: int) -> list[tuple[float, float]]:
    """``(bucket start, points)``: width 0.5 from 0, points halving, while the bucket ends at
    or below ``ceil(ln(num_models - 1))``."""
    top = math.ceil(math.log(num_models - 1))
    out, start, points = [], 0.0, 1.0
    while start + BUCKET <= top:
        out.append((start, points))
        start, points = start + BUCKET, points / 2
    return out


def forget_quality(epsilons: Tensor, num_models: int) -> float:
    """F: the mean over examples of the points of each epsilon's bucket (0 beyond the last)."""
    buckets = bucket_points(num_models)
    total = 0.0
    for e in epsilons.tolist():
        total += next((p for start, p in buckets if e < start + BUCKET), 0.0)
    return total / len(epsilons)


@dataclass(frozen=True)
class ChallengeScore:
    """The score and its parts: per-example epsilons, F, the accuracy ratios, the final
    score, and the number of models per side it was computed from."""

    epsilons: list[float]
    forget_quality: float
    retain_ratio: float
    test_ratio: float
    score: float
    models: int


def challenge_score(
    unlearned: Tensor,
    retrained: Tensor,
    *,
    retain_accuracy: tuple[float, float],
    test_accuracy: tuple[float, float],
) -> ChallengeScore:
    """The final score from forget-set confidences ``(K, n)`` of both ensembles and the mean
    accuracies ``(unlearned, retrained)`` on D_r and on the test set."""
    if unlearned.shape[0] < 3:
        raise ValueError("the challenge score needs at least 3 models per side")
    eps = example_epsilons(unlearned, retrained)
    f = forget_quality(eps, unlearned.shape[0])
    ra = retain_accuracy[0] / retain_accuracy[1]
    ta = test_accuracy[0] / test_accuracy[1]
    return ChallengeScore(eps.tolist(), f, ra, ta, f * ra * ta, int(unlearned.shape[0]))
