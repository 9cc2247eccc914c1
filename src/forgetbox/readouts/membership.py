"""Black-box membership inference from one output statistic (section 5.4 v)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch
from torch import Tensor, nn

from ..training import predict


class AttackFeature(StrEnum):
    """Per-sample statistic the attack sees: softmax ``entropy`` (the paper's), cross-entropy
    ``loss`` of the true label, or ``confidence`` (max softmax probability)."""

    ENTROPY = "entropy"
    LOSS = "loss"
    CONFIDENCE = "confidence"


def attack_feature(logits: Tensor, labels: Tensor, kind: AttackFeature | str) -> np.ndarray:
    """The attack's feature ``(n, 1)`` from logits ``(n, c)`` (float64)."""
    logp = torch.log_softmax(logits.double(), -1)
    kind = AttackFeature(kind)
    if kind is AttackFeature.ENTROPY:
        value = -(logp.exp() * logp).sum(-1)
    elif kind is AttackFeature.LOSS:
        value = -logp.gather(1, labels[:, None]).squeeze(1)
    else:
        value = logp.exp().max(-1).values
    return value.numpy()[:, None]


@dataclass(frozen=True)
class AttackResult:
    """The membership attack's result on D_f."""

    member_rate: float  # fraction of D_f the attack calls "member"
    auc: float  # ROC AUC of the attack score, D_f (positive) vs held-out test (negative)
    feature: str
    train_accuracy: float


def membership_attack(
    model: nn.Module,
    retain: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor],
    forget: tuple[Tensor, Tensor],
    *,
    feature: AttackFeature | str = AttackFeature.ENTROPY,
    seed: int = 0,
) -> AttackResult:
    """Black-box membership inference (section 5.4 v).

    The attack model is an RBF SVM (``SVC(C=3, gamma="auto")``, the authors' settings) on one
    output statistic. The test set is split in half (seeded): the first half (label 0) and an
    equally large random subset of D_r (label 1) train the attack, so neither class dominates;
    ``member_rate`` is the fraction of D_f predicted "member"; ``auc`` compares its decision
    values on D_f against the held-out half of the test set.
    """
    from sklearn.metrics import roc_auc_score
    from sklearn.svm import SVC

    rng = np.random.default_rng(seed)
    n_test = len(test[0])
    order = rng.permutation(n_test)
    half_a, half_b = order[: n_test // 2], order[n_test // 2 :]
    n_train = min(len(half_a), len(retain[0]))
    half_a = half_a[:n_train]
    keep = rng.permutation(len(retain[0]))[:n_train]

    def feats(x, y):
        return attack_feature(predict(model, x), y, feature)

    f_r = feats(retain[0][keep], retain[1][keep])
    f_t = feats(test[0], test[1])
    f_f = feats(*forget)
    X = np.concatenate([f_r, f_t[half_a]])
    if not (np.isfinite(X).all() and np.isfinite(f_f).all()):
        raise ValueError(
            "membership attack: the model's outputs are not finite (a method that diverged?)"
        )
    Y = np.concatenate([np.ones(len(f_r)), np.zeros(len(half_a))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(X, Y)
    member_rate = float(clf.predict(f_f).mean())
    scores = np.concatenate([clf.decision_function(f_f), clf.decision_function(f_t[half_b])])
    labels = np.concatenate([np.ones(len(f_f)), np.zeros(len(half_b))])
    auc = float(roc_auc_score(labels, scores)) if len(half_b) else float("nan")
    return AttackResult(member_rate, auc, AttackFeature(feature).value, float(clf.score(X, Y)))
