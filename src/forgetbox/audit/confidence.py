"""The per-example statistic of the per-example attacks and scores: the logit-scaled
confidence of the true label."""

from __future__ import annotations

import torch
from torch import Tensor


def margin(logits: Tensor, labels: Tensor) -> Tensor:
    """``z_y - logsumexp_{j != y} z_j`` per row, float64: ``(..., n, c)``, ``(n,)`` ->
    ``(..., n)``. It equals ``log p_y - log sum_{j != y} p_j`` exactly (LiRA's logit-scaled
    confidence, KLoM's margin), without underflow for very confident rows."""
    z = logits.double()
    y = labels.expand(z.shape[:-1])[..., None]
    correct = z.gather(-1, y).squeeze(-1)
    others = z.scatter(-1, y, float("-inf")).logsumexp(-1)
    return correct - others


def challenge_confidence(logits: Tensor, labels: Tensor) -> Tensor:
    """The NeurIPS 2023 challenge's confidence, as its scoring code computes it (float64):
    ``log(p_y + 1e-45) - log(sum_{j != y} p_j + 1e-45)`` with the softmax taken after
    subtracting the largest logit. Equal to :func:`margin` unless a probability underflows."""
    z = logits.double()
    z = z - z.max(-1, keepdim=True).values
    p = z.exp()
    p = p / p.sum(-1, keepdim=True)
    y = labels.expand(z.shape[:-1])[..., None]
    correct = p.gather(-1, y).squeeze(-1)
    wrong = p.scatter(-1, y, 0.0).sum(-1)
    return torch.log(correct + 1e-45) - torch.log(wrong + 1e-45)
