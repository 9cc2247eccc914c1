"""Readout functions of section 5.4 and Figures 1, 2 and 4, as pure functions.

- :func:`error_and_loss`: top-1 error (fraction) and mean cross-entropy (nats).
- :func:`relearn_time`: epochs of SGD on D until the D_f loss falls below a threshold.
- :func:`membership_attack`: black-box membership inference from output statistics (SVM, RBF).
- :func:`l1_distance` / :func:`activation_path`: closeness of softmax outputs to a reference.
- :func:`pca_paths`: training paths and scrubbed weights on their top principal components.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import flatten, load_flat_, parameters_of
from .training import evaluate, predict

error_and_loss = evaluate


# ----------------------------------------------------------------------------- re-learn time


@dataclass(frozen=True)
class RelearnResult:
    epochs: int  # first epoch (0 = before any training) with D_f loss <= threshold; cap if never
    threshold: float
    losses: tuple[float, ...]
    capped: bool


def relearn_time(
    model: nn.Module,
    x_full: Tensor,
    y_full: Tensor,
    x_forget: Tensor,
    y_forget: Tensor,
    *,
    threshold: float,
    max_epochs: int = 100,
    samples_per_epoch: int = 500,
    batch_size: int = 128,
    lr: float = 0.01,
    tolerance: float = 1e-5,
    seed: int = 0,
) -> RelearnResult:
    """Re-learn time (section 5.4 iv), following the authors' code.

    Each epoch trains a copy of ``model`` with plain SGD (``lr``, no momentum, no weight decay,
    BatchNorm frozen) on ``samples_per_epoch`` samples drawn with replacement from the full
    training set D. The D_f loss is measured before each epoch; the result is the first epoch
    whose loss is ``<= threshold + tolerance`` (the threshold is usually the original model's D_f
    loss), or ``max_epochs`` when it never is.
    """
    gen = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model).eval()
    device = next(model.parameters()).device
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    losses = []
    for epoch in range(max_epochs):
        loss_f = evaluate(model, x_forget, y_forget)[1]
        losses.append(loss_f)
        if loss_f <= threshold + tolerance:
            return RelearnResult(epoch, threshold, tuple(losses), False)
        idx = torch.randint(0, len(x_full), (samples_per_epoch,), generator=gen)
        for i in range(0, samples_per_epoch, batch_size):
            b = idx[i : i + batch_size]
            loss = F.cross_entropy(model(x_full[b].to(device)), y_full[b].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return RelearnResult(max_epochs, threshold, tuple(losses), True)


# ----------------------------------------------------------------------------- membership


class AttackFeature(StrEnum):
    """Per-sample statistic the attack sees: softmax ``entropy`` (the paper's), cross-entropy
    ``loss`` of the true label, or ``confidence`` (max softmax probability)."""

    ENTROPY = "entropy"
    LOSS = "loss"
    CONFIDENCE = "confidence"


def attack_feature(logits: Tensor, labels: Tensor, kind: AttackFeature | str) -> np.ndarray:
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
    Y = np.concatenate([np.ones(len(f_r)), np.zeros(len(half_a))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(X, Y)
    member_rate = float(clf.predict(f_f).mean())
    scores = np.concatenate([clf.decision_function(f_f), clf.decision_function(f_t[half_b])])
    labels = np.concatenate([np.ones(len(f_f)), np.zeros(len(half_b))])
    auc = float(roc_auc_score(labels, scores)) if len(half_b) else float("nan")
    return AttackResult(member_rate, auc, AttackFeature(feature).value, float(clf.score(X, Y)))


# ----------------------------------------------------------------------------- activations


def l1_distance(model_a: nn.Module, model_b: nn.Module, x: Tensor) -> float:
    """Mean over samples of ``||softmax(f_a(x)) - softmax(f_b(x))||_1`` (Fig. 4)."""
    if len(x) == 0:
        return float("nan")
    pa = torch.softmax(predict(model_a, x).double(), -1)
    pb = torch.softmax(predict(model_b, x).double(), -1)
    return (pa - pb).abs().sum(-1).mean().item()


def activation_path(
    model: nn.Module,
    scrubbed_mean: Tensor,
    reference: nn.Module,
    subsets: dict[str, Tensor],
    alphas: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.25, 11), 3)),
) -> list[dict]:
    """L1 distance to ``reference`` along ``w(a) = w(D) + a (scrubbed - w(D))`` (Fig. 4).

    Returns one row per ``a``: ``{"alpha": a, "<subset>": distance, ...}``.
    """
    w_d = flatten(parameters_of(model))
    probe = copy.deepcopy(model)
    rows = []
    for a in alphas:
        load_flat_(probe, w_d + float(a) * (scrubbed_mean.to(w_d) - w_d))
        rows.append(
            {"alpha": float(a)} | {k: l1_distance(probe, reference, x) for k, x in subsets.items()}
        )
    return rows


# ----------------------------------------------------------------------------- PCA of paths


@dataclass(frozen=True)
class PCAResult:
    paths: dict[str, np.ndarray]  # name -> (T, k)
    points: dict[str, np.ndarray]  # name -> (k,)
    explained: np.ndarray  # fraction of variance of the fitted rows per component


def pca_paths(paths: dict[str, Tensor], points: dict[str, Tensor], *, k: int = 2) -> PCAResult:
    """Fit PCA on the stacked path weights (each ``(T, p)``) and project paths and points.

    Works through the small ``T x T`` Gram matrix, never a ``p x p`` one.
    """
    rows = torch.cat([p.double() for p in paths.values()])
    center = rows.mean(0)
    X = rows - center
    evals, evecs = torch.linalg.eigh(X @ X.T)
    order = torch.argsort(evals, descending=True)[:k]
    comps = (X.T @ evecs[:, order]) / evals[order].clamp_min(1e-300).sqrt()  # (p, k), orthonormal
    explained = (evals[order] / evals.clamp_min(0).sum()).numpy()

    def proj(v: Tensor) -> np.ndarray:
        return ((v.double() - center) @ comps).numpy()

    return PCAResult(
        {name: proj(p) for name, p in paths.items()},
        {name: proj(v) for name, v in points.items()},
        explained,
    )
