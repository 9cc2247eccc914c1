"""Re-learn time (section 5.4 iv)."""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..training import evaluate


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
    """Re-learn time (section 5.4 iv).

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
