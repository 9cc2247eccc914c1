"""SalUn (Fan et al., "SalUn: Empowering Machine Unlearning via Gradient-based Weight Saliency",
ICLR 2024): a weight-saliency mask, then random-label fine-tuning of the salient weights only.

1. g = gradient of the forget loss (mean CE on D_f) at w(D); the mask m keeps the
   ``mask_fraction`` of all trained weights with the largest |g| (one ranking over every
   tensor; ties by position, so exactly floor(fraction * p) weights).
2. Each epoch: SGD over D_f with random labels (each label replaced by one of the other classes,
   drawn anew every batch), then over D_r with its labels (loss weighted ``retain_weight``),
   the update multiplied by m: the other weights keep w(D)'s values exactly.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import eval_mode
from ..progress import progress
from .baseline_config import SalUnConfig
from .unlearning import Student, require_data, sgd, shuffled


def forget_gradient(model: nn.Module, forget_set: tuple[Tensor, Tensor], chunk: int = 256):
    """The gradient of the mean cross-entropy on ``forget_set`` at ``model`` (eval mode), one
    tensor per trained parameter (accumulated over chunks of ``chunk`` examples)."""
    params = [p for p in model.parameters() if p.requires_grad]
    x, y = forget_set
    grads = [torch.zeros_like(p) for p in params]
    with eval_mode(model):
        for i in range(0, len(x), chunk):
            xb = x[i : i + chunk].to(params[0].device, params[0].dtype)
            loss = F.cross_entropy(
                model(xb), y[i : i + chunk].to(params[0].device), reduction="sum"
            )
            for g, d in zip(grads, torch.autograd.grad(loss, params), strict=True):
                g.add_(d)
    return [g / len(x) for g in grads]


def saliency_mask(grads: list[Tensor], fraction: float) -> list[Tensor]:
    """0/1 tensors shaped as ``grads``: 1 on the floor(fraction * p) entries of largest |g|
    over all of them (a stable sort: ties go to the earlier entry)."""
    flat = torch.cat([g.detach().reshape(-1).abs() for g in grads])
    k = int(len(flat) * fraction)
    if k == 0:
        raise ValueError(f"salun.mask_fraction={fraction} selects no weight of the {len(flat)}")
    order = torch.sort(flat, descending=True, stable=True).indices
    chosen = torch.zeros_like(flat)
    chosen[order[:k]] = 1
    return [
        m.view_as(g) for m, g in zip(chosen.split([g.numel() for g in grads]), grads, strict=True)
    ]


def random_labels(y: Tensor, num_classes: int, gen: torch.Generator) -> Tensor:
    """Each label replaced by one of the other ``num_classes - 1`` classes, uniformly."""
    shift = torch.randint(1, num_classes, y.shape, generator=gen)
    return (y.cpu() + shift) % num_classes


def salun(
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget_set: tuple[Tensor, Tensor],
    config: SalUnConfig,
    seed: int,
) -> tuple[nn.Module, dict]:
    """SalUn from ``model`` = w(D); ``(model, info)``. Batches and random labels come from a
    generator seeded with ``seed``."""
    require_data(retain, "retain set", "salun")
    require_data(forget_set, "forget set", "salun")
    gen = torch.Generator().manual_seed(seed)
    mask = saliency_mask(forget_gradient(model, forget_set), config.mask_fraction)
    student = Student.of(
        model,
        w0,
        decay=config.decay_anchor,
        lam=config.weight_decay,
        optimizer=sgd(config.lr, config.momentum),
    )
    (xr, yr), (xf, yf) = retain, forget_set
    with torch.no_grad():
        num_classes = student(xf[:1]).shape[1]
    if num_classes < 2:
        raise ValueError("salun needs at least two classes to relabel D_f")
    for _ in progress(range(config.epochs), desc="SalUn"):
        for idx in shuffled(len(xf), config.batch_size, gen):
            labels = random_labels(yf[idx], num_classes, gen).to(mask[0].device)
            student.step(F.cross_entropy(student(xf[idx]), labels), mask)
        for idx in shuffled(len(xr), config.batch_size, gen):
            loss = F.cross_entropy(student(xr[idx]), yr[idx].to(mask[0].device))
            student.step(config.retain_weight * loss, mask)
    kept = int(sum(m.sum().item() for m in mask))
    info = {"trained_weights": kept, "weights": sum(m.numel() for m in mask)}
    return student.model.eval(), info
