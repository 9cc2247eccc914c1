"""l1-sparse (Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023):
fine-tune w(D) on D_r with an l1 penalty whose weight decays linearly,

    min_w  CE(w; D_r) + gamma_t ||w||_1 (+ (lambda/2)||w - anchor||^2),
    gamma_t = gamma * (1 - t / T) in epoch t = 0, ..., T - 1,

over every trained weight (biases and BatchNorm's affine parameters too). The penalty's
(sub)gradient is gamma_t sign(w), 0 at w = 0.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..progress import progress
from .baseline_config import L1SparseConfig
from .unlearning import Student, require_data, sgd, shuffled


def l1_norm(params: list[Tensor]) -> Tensor:
    """||w||_1 over the tensors ``params``."""
    return sum(p.abs().sum() for p in params)


def l1_gamma(config: L1SparseConfig, epoch: int) -> float:
    """gamma_t of ``epoch`` t (counted from 0): gamma * (1 - t / epochs)."""
    return config.gamma * (1 - epoch / config.epochs)


def l1_sparse(
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget_set: tuple[Tensor, Tensor],
    config: L1SparseConfig,
    seed: int,
) -> tuple[nn.Module, dict]:
    """l1-sparse from ``model`` = w(D) on ``retain`` alone (``forget_set`` is not used);
    ``(model, info)``. Batches come from a generator seeded with ``seed``."""
    require_data(retain, "retain set", "l1_sparse")
    gen = torch.Generator().manual_seed(seed)
    student = Student.of(
        model,
        w0,
        decay=config.decay_anchor,
        lam=config.weight_decay,
        optimizer=sgd(config.lr, config.momentum),
    )
    xr, yr = retain
    for t in progress(range(config.epochs), desc="l1-sparse"):
        gamma = l1_gamma(config, t)
        for idx in shuffled(len(xr), config.batch_size, gen):
            logits = student(xr[idx])
            loss = F.cross_entropy(logits, yr[idx].to(logits.device))
            student.step(loss + gamma * l1_norm(student.params) if gamma else loss)
    with torch.no_grad():
        info = {
            "l1_norm": float(l1_norm(student.params)),
            "zeros": sum(int((p == 0).sum()) for p in student.params),
        }
    return student.model.eval(), info
