"""NegGrad+ (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023): fine-tune
w(D) on D_r while ascending the loss on D_f,

    min_w  beta * (CE(w; D_r) + (lambda/2)||w - anchor||^2) - (1 - beta) * CE(w; D_f),

by SGD over batches of D_r, each paired with the next batch of D_f (reshuffled when used up).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..progress import progress
from .baseline_config import NegGradConfig
from .unlearning import Student, cycled, require_data, sgd, shuffled


def neggrad_loss(
    student: Student,
    retain: tuple[Tensor, Tensor],
    forget: tuple[Tensor, Tensor],
    beta: float,
) -> Tensor:
    """beta * CE on the ``retain`` batch - (1 - beta) * CE on the ``forget`` batch (the weight
    decay, weighted by beta too, is the student's)."""
    y_r, y_f = retain[1], forget[1]
    loss_r = F.cross_entropy(student(retain[0]), y_r.to(student.params[0].device))
    loss_f = F.cross_entropy(student(forget[0]), y_f.to(student.params[0].device))
    return beta * loss_r - (1 - beta) * loss_f


def neggrad_plus(
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget_set: tuple[Tensor, Tensor],
    config: NegGradConfig,
    seed: int,
) -> tuple[nn.Module, dict]:
    """NegGrad+ from ``model`` = w(D); ``(model, info)``. Batches come from a generator seeded
    with ``seed``."""
    require_data(retain, "retain set", "neggrad_plus")
    require_data(forget_set, "forget set", "neggrad_plus")
    gen = torch.Generator().manual_seed(seed)
    student = Student.of(
        model,
        w0,
        decay=config.decay_anchor,
        lam=config.beta * config.weight_decay,
        optimizer=sgd(config.lr, config.momentum),
    )
    (xr, yr), (xf, yf) = retain, forget_set
    forget_batches = cycled(len(xf), config.forget_batch, gen)
    steps = 0
    for _ in progress(range(config.epochs), desc="NegGrad+"):
        for idx in shuffled(len(xr), config.retain_batch, gen):
            f_idx = next(forget_batches)
            loss = neggrad_loss(student, (xr[idx], yr[idx]), (xf[f_idx], yf[f_idx]), config.beta)
            student.step(loss)
            steps += 1
    return student.model.eval(), {"steps": steps}
