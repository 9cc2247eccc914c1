"""Population membership attacks on an unlearned model: one threshold on one statistic for
every example, forgotten examples (positives) against held-out test examples (negatives)."""

from __future__ import annotations

from dataclasses import dataclass

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
