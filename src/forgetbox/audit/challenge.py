"""The NeurIPS 2023 Machine Unlearning Challenge's score, as its official scoring code defines
it (google-deepmind/unlearning_evaluation, ``metric.py`` and ``main.py``).

Per forget example, the confidences of the unlearned models and of the retrained models are
two samples; the one with the larger median (``np.median``: for an even number of models the
mean of the two middle values) is "positive". Decision rules try to tell them apart: single
thresholds (a value ``>= t`` is positive) and double thresholds (an interval around the peakier
sample). Each rule's false positive and false negative rates give an epsilon of
(epsilon, delta)-indistinguishability,
``max(log(1 - delta - FPR) - log(FNR), log(1 - delta - FNR) - log(FPR))``; the example's
epsilon is the largest over the rules (capped at 50). Epsilons fall in buckets of width 0.5
worth 1, 1/2, 1/4, ... points up to ``ceil(ln(K - 1))`` for K models per side; the forget
quality F is the mean of the points over D_f, and the final score is
``F * (RA_U / RA_R) * (TA_U / TA_R)`` with the mean retain and test accuracies of the unlearned
(U) and retrained (R) models.

The thresholds are built as the official code builds them, so that each lands on the same
side of every data value: single thresholds by ``torch.linspace`` in float32 (the default
dtype; the confidences themselves are float64), double thresholds in float64 by
``np.linspace``, the right edges over ``[min + width - 2, max + 2]`` of the peakier sample and,
for each right edge ``r``, its left edges from ``r - width - 2`` to ``r - width + 2``. Rates are
exact fractions in float64 (the official code takes their mean in float32, which can matter
only for an epsilon within float32 rounding of a bucket edge). Where no rule is usable (every
rule has FPR or FNR at 0 without separating the samples) the official code stops with an
error; here the epsilon is NaN, "cannot be computed", and earns no points.
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


def retrained_is_positive(unlearned: np.ndarray, retrained: np.ndarray) -> np.ndarray:
    """``(n,)``: whether the retrained sample is "positive" for each example, i.e. has the
    larger ``np.median`` over the K models (rows) of ``(K, n)`` arrays; ties go to the
    unlearned sample."""
    return np.median(retrained, axis=0) > np.median(unlearned, axis=0)


def double_threshold_grid(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(peaky, other, left, right)``: the peakier sample (the narrower; the second one on a
    tie of ranges), the other, and the ``(T,)`` edges of every interval ``[left, right]``."""
    peaky, other, left, right = _double_threshold_edges(pos, neg)
    return peaky, other, left.reshape(-1), np.repeat(right, left.shape[1])


def _double_threshold_edges(pos: np.ndarray, neg: np.ndarray) -> tuple[np.ndarray, ...]:
    """As :func:`double_threshold_grid`, the left edges ``(R, L)`` by right edge ``(R,)``."""
    pos_range, neg_range = pos.max() - pos.min(), neg.max() - neg.min()
    width = neg_range if pos_range > neg_range else pos_range
    if pos_range >= neg_range:
        pos, neg = neg, pos
    low = pos.min() + width - BUFFER
    high = pos.max() + BUFFER
    right = np.linspace(low, high, int(np.ceil((high - low) * THRESHOLDS_PER_UNIT)))
    n_left = int(np.ceil(2 * BUFFER * THRESHOLDS_PER_UNIT))
    shifted = right - width
    # np.linspace row by row: i * ((stop - start) / (n - 1)) + start, the last one at stop
    left = np.linspace(shifted - BUFFER, shifted + BUFFER, n_left, axis=1)
    return pos, neg, left, right


def _rates(pos_called: np.ndarray, n_pos: int, neg_called: np.ndarray, n_neg: int) -> np.ndarray:
    """``(4, R)`` TPR, FNR, FPR, TNR as exact fractions, one column per distinct pair of
    counts called positive among the ``T`` rules: a rule's epsilon depends on its counts only,
    so the largest over the distinct pairs is the largest over the rules."""
    code = np.zeros((n_pos + 1) * (n_neg + 1), dtype=bool)
    code[pos_called * (n_neg + 1) + neg_called] = True
    pos_called, neg_called = np.divmod(np.flatnonzero(code), n_neg + 1)
    return np.stack(
        [
            pos_called / n_pos,
            (n_pos - pos_called) / n_pos,
            neg_called / n_neg,
            (n_neg - neg_called) / n_neg,
        ]
    )


def _double_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``(4, R)`` distinct rates TPR, FNR, FPR, TNR of the intervals that call a value in
    them "positive", positive being the peakier sample. The counts of each interval of
    :func:`double_threshold_grid` (tested against comparing every value with every edge), from
    one search per right edge and one per left edge in the two samples merged."""
    peaky, other, left, right = _double_threshold_edges(pos, neg)
    n_p, n = len(peaky), len(peaky) + len(other)
    merged = np.concatenate([peaky, other])
    order = np.argsort(merged, kind="stable")
    values = merged[order]
    peaky_below = np.concatenate([[0], np.cumsum(order < n_p)])  # peaky among the first i
    at_right = np.searchsorted(values, right, side="right")  # values <= right, (R,)
    at_left = np.searchsorted(values, left, side="left")  # values < left, (R, L)
    # an interval's counts follow from (at_right, at_left): mark the distinct pairs only
    seen = np.zeros((n + 1) * (n + 1), dtype=bool)
    seen[(at_right[:, None] * (n + 1) + at_left).reshape(-1)] = True
    at_right, at_left = np.divmod(np.flatnonzero(seen), n + 1)
    tp = np.clip(peaky_below[at_right] - peaky_below[at_left], 0, None)
    both = np.clip(at_right - at_left, 0, None)
    return _rates(tp, n_p, both - tp, len(other))


def single_thresholds(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """The single thresholds, float32 values (as float64): ``ceil(100 * range)`` of them from
    the smallest to the largest confidence of both samples."""
    both = np.concatenate([pos, neg])
    lo, hi = float(both.min()), float(both.max())
    n = math.ceil((hi - lo) * THRESHOLDS_PER_UNIT)
    return torch.linspace(lo, hi, n, dtype=torch.float32).double().numpy()


def _single_threshold_rates(pos: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """``(4, R)`` rates (distinct ones) of the thresholds t that call a value ``>= t`` positive."""
    t = single_thresholds(pos, neg)
    tp = len(pos) - np.searchsorted(np.sort(pos), t, side="left")  # count pos >= t
    fp = len(neg) - np.searchsorted(np.sort(neg), t, side="left")
    return _rates(tp, len(pos), fp, len(neg))


def _epsilon_of_rates(rates: np.ndarray, delta: float) -> float:
    """The largest epsilon over the rules (columns) of ``(4, T)`` rates: inf for a rule that
    separates the samples, NaN when no rule is usable."""
    tpr, fnr, fpr, tnr = rates
    if ((fpr + fnr == 0) & (tpr + tnr == 2)).any():
        return math.inf
    usable = fpr * fnr != 0  # a rule with one rate at 0 (not both) is discarded
    fpr, fnr = fpr[usable], fnr[usable]
    with np.errstate(divide="ignore", invalid="ignore"):
        # the larger of the two that is a number (a log of a negative is not)
        eps = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
    eps = eps[~np.isnan(eps)]
    return float(np.clip(eps.max(), 0, None)) if len(eps) else math.nan


def _as_array(x: Tensor | np.ndarray) -> np.ndarray:
    return x.detach().double().cpu().numpy() if isinstance(x, Tensor) else np.asarray(x, float)


def example_epsilons(unlearned: Tensor, retrained: Tensor, *, delta: float = DELTA) -> Tensor:
    """Per example, the epsilon that the two samples of confidences allow, in [0, 50] (NaN
    where no rule is usable): ``unlearned`` and ``retrained`` are ``(K, n)`` (K models, n
    forget examples)."""
    u, r = _as_array(unlearned), _as_array(retrained)
    if u.ndim != 2 or r.ndim != 2 or u.shape[1] != r.shape[1]:
        raise ValueError(f"confidences must be (models, examples) alike; got {u.shape}, {r.shape}")
    retrain_positive = retrained_is_positive(u, r)
    out = []
    for i in range(u.shape[1]):
        pos, neg = (r[:, i], u[:, i]) if retrain_positive[i] else (u[:, i], r[:, i])
        pr, nr = pos.max() - pos.min(), neg.max() - neg.min()
        largest, smallest = max(pr, nr), min(pr, nr)
        if largest > 0 and smallest / largest < 0.01:  # one sample is far peakier: the cap
            out.append(EPSILON_CAP)
            continue
        rates = np.concatenate(
            [_double_threshold_rates(pos, neg), _single_threshold_rates(pos, neg)], 1
        )
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


def points_of(epsilon: float, buckets: list[tuple[float, float]]) -> float:
    """The points of one epsilon: those of its bucket, 0 beyond the last or when NaN."""
    return next((p for start, p in buckets if epsilon < start + BUCKET), 0.0)


def forget_quality(epsilons: Tensor, num_models: int) -> float:
    """F: the mean over examples of the points of each epsilon (0 for NaN, as for the cap)."""
    return sum(example_points(epsilons.tolist(), num_models)) / len(epsilons)


def example_points(epsilons: list[float], num_models: int) -> list[float]:
    """The points of each epsilon for ``num_models`` models per side (0 for NaN)."""
    buckets = bucket_points(num_models)
    return [points_of(e, buckets) for e in epsilons]


@dataclass(frozen=True)
class ChallengeScore:
    """The score and its parts: per-example epsilons (NaN: cannot be computed), F, the
    accuracy ratios, the final score, and the number of models per side it was computed from."""

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
