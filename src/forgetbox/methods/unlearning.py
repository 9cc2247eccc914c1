"""What the fine-tuning baselines share (NegGrad+, SCRUB, SalUn, l1-sparse): batches drawn from
a seeded ``torch.Generator``, the weight-decay pull toward an anchor, and a :class:`Student`: a
copy of w(D) trained in eval mode (BatchNorm statistics frozen, as forgetbox's fine-tuning),
one optimizer step at a time, optionally on a mask of its weights."""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .baseline_config import DecayAnchor

Optimizer = Callable[[list[Tensor]], torch.optim.Optimizer]


def shuffled(n: int, batch_size: int, gen: torch.Generator) -> list[Tensor]:
    """A random permutation of ``range(n)`` cut into batches of ``batch_size`` (the last may be
    smaller)."""
    return list(torch.randperm(n, generator=gen).split(batch_size))


def cycled(n: int, batch_size: int, gen: torch.Generator) -> Iterator[Tensor]:
    """Batches of ``range(n)`` without end, a new permutation each pass."""
    while True:
        yield from shuffled(n, batch_size, gen)


def decay_penalty(params: list[Tensor], anchor: list[Tensor] | None, lam: float) -> Tensor:
    """(lambda/2) ||w - anchor||^2 (``anchor`` None: the origin); its gradient is
    lambda (w - anchor)."""
    if anchor is None:
        return 0.5 * lam * sum((p**2).sum() for p in params)
    return 0.5 * lam * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))


def sgd(lr: float, momentum: float) -> Optimizer:
    """SGD at ``lr`` with ``momentum`` (its own weight decay 0: the pull is in the loss)."""
    return lambda params: torch.optim.SGD(params, lr=lr, momentum=momentum)


def adam(lr: float) -> Optimizer:
    """Adam at ``lr`` (its own weight decay 0: the pull is in the loss, which is what Adam's
    coupled ``weight_decay`` computes for the anchor at zero)."""
    return lambda params: torch.optim.Adam(params, lr=lr)


def require_data(data: tuple[Tensor, Tensor], what: str, method: str) -> None:
    """Refuse an empty ``data`` set, naming it and the method."""
    if len(data[0]) == 0:
        raise ValueError(f"{method} needs a non-empty {what}")


@dataclass
class Student:
    """A trainable copy of w(D): ``params`` (those with ``requires_grad``), the weight decay
    ``lam`` toward ``anchor`` (None: zero) and the optimizer."""

    model: nn.Module
    params: list[Tensor]
    anchor: list[Tensor] | None
    lam: float
    optimizer: torch.optim.Optimizer

    @classmethod
    def of(
        cls,
        model: nn.Module,
        w0: nn.Module,
        *,
        decay: DecayAnchor,
        lam: float,
        optimizer: Optimizer,
    ) -> Student:
        """A copy of ``model`` in eval mode with the weight decay ``lam`` toward ``decay``'s
        anchor (zero, the starting weights, or ``w0``)."""
        decay = DecayAnchor.parse(decay, "decay_anchor")
        student = copy.deepcopy(model).eval()
        params = [p for p in student.parameters() if p.requires_grad]
        anchor = None
        if decay is not DecayAnchor.ZERO:
            source = student if decay is DecayAnchor.START else w0
            device = next(student.parameters()).device
            anchor = [p.detach().clone().to(device) for p in source.parameters() if p.requires_grad]
            if len(anchor) != len(params):
                raise ValueError("w0 and the model do not have the same trained parameters")
        return cls(student, params, anchor, lam, optimizer(params))

    def __call__(self, x: Tensor) -> Tensor:
        """Logits of the student on ``x`` (moved to its device and dtype), with gradients."""
        p = self.params[0] if self.params else next(self.model.parameters())
        return self.model(x.to(p.device, p.dtype))

    def step(self, loss: Tensor, mask: list[Tensor] | None = None) -> None:
        """One optimizer step on ``loss`` plus the weight decay; with ``mask`` (0/1 tensors
        shaped as ``params``) only the weights it selects move."""
        total = loss + decay_penalty(self.params, self.anchor, self.lam) if self.lam else loss
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        if mask is not None:
            for p, m in zip(self.params, mask, strict=True):
                if p.grad is not None:
                    p.grad.mul_(m)
        self.optimizer.step()

    def set_lr(self, lr: float) -> None:
        """Set the optimizer's rate."""
        for group in self.optimizer.param_groups:
            group["lr"] = lr
