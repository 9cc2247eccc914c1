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
    """Epochs of fine-tuning on D until the D_f loss reaches the threshold (capped)."""

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
    weight_decay: float = 0.0,
    check_before_training: bool = True,
) -> RelearnResult:
    """Re-learn time (section 5.4 iv).

    Each epoch trains a copy of ``model`` with plain SGD (``lr``, no momentum, BatchNorm
    frozen) on ``samples_per_epoch`` samples drawn with replacement from the full training set
    D, on the loss CE + (``weight_decay``/2)||w - w_start||^2 (w_start: the weights it starts
    from; the authors' code uses 0.1, forgetbox 0 by default). The D_f loss is measured before
    each epoch; the result is the number of epochs trained when the loss is first
    ``<= threshold + tolerance`` (the threshold is usually the original model's D_f loss), or
    ``max_epochs`` when it never is. ``check_before_training=False`` (the authors' loop, which
    counts from 1) checks only after each epoch, so a model already below the threshold
    reports 1, not 0.
    """
    gen = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model).eval()
    device = next(model.parameters()).device
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    start = [p.detach().clone() for p in model.parameters()]
    losses = []
    for epoch in range(max_epochs + (0 if check_before_training else 1)):
        if check_before_training or epoch > 0:
            loss_f = evaluate(model, x_forget, y_forget)[1]
            losses.append(loss_f)
            if loss_f <= threshold + tolerance:
                return RelearnResult(epoch, threshold, tuple(losses), False)
        if epoch == max_epochs:
            break
        idx = torch.randint(0, len(x_full), (samples_per_epoch,), generator=gen)
        for i in range(0, samples_per_epoch, batch_size):
            b = idx[i : i + batch_size]
            loss = F.cross_entropy(model(x_full[b].to(device)), y_full[b].to(device))
            if weight_decay:
                pull = sum(
                    ((p - s) ** 2).sum() for p, s in zip(model.parameters(), start, strict=True)
                )
                loss = loss + 0.5 * weight_decay * pull
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return RelearnResult(max_epochs, threshold, tuple(losses), True)
