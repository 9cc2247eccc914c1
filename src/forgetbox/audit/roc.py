"""ROC curves of a score that should be higher for positives: AUC and TPR at a low FPR."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata


@dataclass(frozen=True)
class Roc:
    """``fpr``/``tpr`` at every distinct threshold (from (0, 0) to (1, 1)), the area under the
    curve (ties count one half), and the TPR at 1 % and 0.1 % FPR (the largest TPR whose FPR
    does not exceed it; with fewer than 1/FPR negatives this is the TPR at FPR 0)."""

    fpr: np.ndarray
    tpr: np.ndarray
    auc: float
    tpr_at_1pct: float
    tpr_at_01pct: float
    positives: int
    negatives: int

    def tpr_at(self, fpr: float) -> float:
        """The true-positive rate at false-positive rate ``fpr`` (the ROC interpolated)."""
        ok = self.fpr <= fpr + 1e-12
        return float(self.tpr[ok].max()) if ok.any() else 0.0


def rank_auc(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUC = P(pos > neg) + P(pos = neg) / 2 (Mann-Whitney), exact with ties; 1-d arrays."""
    ranks = rankdata(np.concatenate([pos, neg]), method="average")
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def roc(positive: np.ndarray, negative: np.ndarray) -> Roc:
    """The ROC of scores ``positive`` (should be high) against ``negative``."""
    pos = np.asarray(positive, dtype=float).ravel()
    neg = np.asarray(negative, dtype=float).ravel()
    if len(pos) == 0 or len(neg) == 0:
        raise ValueError("a ROC needs at least one positive and one negative score")
    thresholds = np.unique(np.concatenate([pos, neg]))[::-1]
    # predicted positive when score >= threshold: counts by threshold, via sorted search
    tp = len(pos) - np.searchsorted(np.sort(pos), thresholds, side="left")
    fp = len(neg) - np.searchsorted(np.sort(neg), thresholds, side="left")
    tpr = np.concatenate([[0.0], tp / len(pos)])
    fpr = np.concatenate([[0.0], fp / len(neg)])
    auc = rank_auc(pos, neg)
    out = Roc(fpr, tpr, float(auc), 0.0, 0.0, len(pos), len(neg))
    return Roc(fpr, tpr, float(auc), out.tpr_at(0.01), out.tpr_at(0.001), len(pos), len(neg))
