"""Independent references for the ensemble scores, written straight from the published
definitions, one example at a time, with plain loops and broadcast comparisons (no code shared
with forgetbox.audit):

- :func:`official_epsilon`: the NeurIPS 2023 challenge's per-example epsilon as its official
  scoring code defines it (google-deepmind/unlearning_evaluation, ``metric.py``:
  ``compute_forget_score_from_confs``, ``_get_epsilons``, ``_get_double_threshold_rates``,
  ``_get_single_threshold_rates``).
- :func:`reference_klom`: KLoM as Georgiev et al.'s benchmark computes it
  (RoyRin/data-unlearning-bench, ``src/eval.py``: ``compute_binned_KL_div``).
"""

import warnings

import numpy as np
import torch
from scipy import stats

DELTA = 1e-5


def official_double_grid(peaky: np.ndarray, width: float):
    """For each right edge (``np.linspace`` over ``[min + width - 2, max + 2]`` of the peakier
    sample, ``ceil(100 * length)`` of them), its 400 left edges by ``np.linspace``."""
    lo, hi = peaky.min() + width - 2.0, peaky.max() + 2.0
    for right in np.linspace(lo, hi, int(np.ceil((hi - lo) * 100))):
        yield np.linspace(right - width - 2.0, right - width + 2.0, 400), right


def _called(c: np.ndarray, left: np.ndarray, right) -> np.ndarray:
    """``(K, T)`` whether each value of ``c`` lies in each interval ``[left, right]``."""
    return (left[None, :] <= c[:, None]) & (c[:, None] <= right)


def official_epsilon(
    u: np.ndarray, r: np.ndarray, median=np.median, nudge_left: float = 0.0
) -> float:
    """The epsilon of one example from the confidences of the K unlearned (``u``) and K
    retrained (``r``) models; NaN where no rule is usable (the official code stops there).
    ``median`` and ``nudge_left`` (added to every left edge) only show what a deviation does."""
    pos, neg = (r, u) if median(r) > median(u) else (u, r)
    pos_diff, neg_diff = pos.max() - pos.min(), neg.max() - neg.min()
    largest = pos_diff if pos_diff > neg_diff else neg_diff
    smallest = neg_diff if pos_diff > neg_diff else pos_diff
    if largest > 0 and smallest / largest < 0.01:
        return 50.0
    rates = []  # (tpr, fnr, fpr, tnr) per rule, each the mean of 0/1 calls over the models
    peaky, other = (neg, pos) if pos_diff >= neg_diff else (pos, neg)
    for left, right in official_double_grid(peaky, smallest):
        left = left + nudge_left
        tp, fp = _called(peaky, left, right), _called(other, left, right)
        rates.append(np.stack([tp.mean(0), (~tp).mean(0), fp.mean(0), (~fp).mean(0)]))
    both = torch.from_numpy(np.concatenate([pos, neg]))
    count = int(torch.ceil((both.max() - both.min()) * 100))
    t = torch.linspace(both.min(), both.max(), count).numpy()  # the default dtype, float32
    tp, fp = pos[:, None] >= t[None, :], neg[:, None] >= t[None, :]
    rates.append(np.stack([tp.mean(0), (~tp).mean(0), fp.mean(0), (~fp).mean(0)]))
    tpr, fnr, fpr, tnr = np.concatenate(rates, 1)
    if np.any((fpr + fnr == 0) & (tpr + tnr == 2)):
        return 50.0  # inf, clipped to the cap
    keep = fpr * fnr != 0
    fpr, fnr = fpr[keep], fnr[keep]
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # nanmax of a rule with two NaN
        a = np.log(1 - DELTA - fpr) - np.log(fnr)
        b = np.log(1 - DELTA - fnr) - np.log(fpr)
        eps = np.clip(np.nanmax(np.stack([a, b]), axis=0), 0, None) if len(a) else a
    eps = eps[~np.isnan(eps)]
    return float(min(eps.max(), 50.0)) if len(eps) else float("nan")


def reference_klom(u: np.ndarray, r: np.ndarray) -> float:
    """KL(unlearned || retrained) of one example's margins, binned as the benchmark bins them;
    NaN where no unlearned margin is counted (``stats.entropy`` of an all-zero ``pk``)."""
    p_arr, q_arr = np.clip(u, -100, 100), np.clip(r, -100, 100)
    start, end = min(p_arr.min(), q_arr.min()), max(p_arr.max(), q_arr.max())
    if start >= end:
        end = start + 1
    bins = np.linspace(start, end, 21)
    pc = np.array([np.sum(np.digitize(p_arr, bins) == i) for i in range(1, 21)])
    qc = np.array([np.sum(np.digitize(q_arr, bins) == i) for i in range(1, 21)])
    p = pc / pc.sum() if pc.sum() else np.zeros(20)
    q = qc / qc.sum() if qc.sum() else np.zeros(20)
    q = np.where(p > 0, np.maximum(q, 1e-5), q)
    with np.errstate(invalid="ignore"):
        return float(stats.entropy(pk=p, qk=q))
