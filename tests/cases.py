"""The registry of float64 test problems (as curvlinops' ``cases.py``): every engine, method and
deletion test builds its model, w0 and data from here, so a problem is defined once.

A :class:`Case` is a model w(D) fine-tuned (or placed) near its pre-trained weights w0, a data
set D = (x, y) in float64 and a cohort D_f of indices into D. ``make(name)`` builds one, the
same tensors on every call (explicit generators, nothing global).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from forgetbox import reference
from forgetbox.functional import load_flat_
from forgetbox.models import MLP, LinearModel, SmallCNN


@dataclass(frozen=True)
class Case:
    """One float64 problem: ``model`` = w(D), ``w0``, data ``(x, y)``, cohort ``forget_idx``,
    weight decay ``lam``; ``target``: the exact retrained weights where a closed form exists."""

    name: str
    model: nn.Module
    w0: nn.Module
    x: Tensor
    y: Tensor
    forget_idx: Tensor
    lam: float = 0.1
    loss: str = "ce"
    target: Tensor | None = None

    @property
    def keep(self) -> Tensor:
        mask = torch.ones(len(self.x), dtype=torch.bool)
        mask[self.forget_idx] = False
        return mask

    @property
    def retain(self) -> tuple[Tensor, Tensor]:
        return self.x[self.keep], self.y[self.keep]

    @property
    def forget(self) -> tuple[Tensor, Tensor]:
        return self.x[self.forget_idx], self.y[self.forget_idx]

    @property
    def data(self) -> tuple[Tensor, Tensor]:
        return self.x, self.y


def randomize_batchnorm(model: nn.Module, gen: torch.Generator, affine: bool = True) -> None:
    """Running statistics (and affine parameters) away from their defaults, so that a test
    sees BatchNorm's eval-mode transform."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
            if affine:
                with torch.no_grad():
                    m.weight.copy_(1 + 0.2 * torch.randn(m.num_features, generator=gen))
                    m.bias.copy_(0.2 * torch.randn(m.num_features, generator=gen))


def _near(model: nn.Module, gen: torch.Generator, scale: float) -> nn.Module:
    """A copy of ``model`` moved by ``scale`` N(0, 1) per weight: a w0 near w(D)."""
    w0 = copy.deepcopy(model)
    with torch.no_grad():
        for p in w0.parameters():
            p.add_(scale * torch.randn(p.shape, generator=gen, dtype=p.dtype))
    return w0


def _linear(seed: int, n: int = 24, c: int = 4) -> Case:
    """A linear model (p = 28 < n c = 96: the parameter-space solver's case)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = LinearModel(c, 6).double()
    w0 = _near(model, gen, 0.1)
    x = torch.randn(n, 1, 2, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=gen)
    return Case("linear", model, w0, x, y, torch.tensor([1, 4, 6, 11, 17]))


def _ridge(seed: int, n: int = 30, nf: int = 5, c: int = 3, lam: float = 0.1) -> Case:
    """A linear model at the exact ridge solution on D with MSE: the NTK step (at w0) and
    Newton land exactly on the ridge solution on D_r (``target``)."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, 2, 2, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (n,), generator=gen)
    torch.manual_seed(2)
    w0 = LinearModel(c, 4).double()
    trained = LinearModel(c, 4).double()
    load_flat_(trained, reference.ridge_solution(x, y, w0, lam))
    target = reference.ridge_solution(x[nf:], y[nf:], w0, lam)
    forget = torch.arange(nf)
    return Case("ridge", trained, w0, x, y, forget, lam=lam, loss="mse", target=target)


def _mlp(seed: int, n: int = 14, c: int = 3) -> Case:
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed + 1)
    model = MLP(c, 5, width=0.2).double()
    x = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    w0 = _near(model, gen, 0.05)
    y = torch.randint(0, c, (n,), generator=gen)
    return Case("mlp", model, w0, x, y, torch.tensor([2, 5, 9]))


def _smallcnn(seed: int, n: int = 14, c: int = 3) -> Case:
    """A small CNN with BatchNorm in eval mode (statistics and affine parameters randomized)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed + 1)
    model = SmallCNN(c, 1, width=0.25).double()
    randomize_batchnorm(model, gen)
    x = torch.randn(n, 1, 6, 6, generator=gen, dtype=torch.float64)
    w0 = _near(model, gen, 0.05)
    y = torch.randint(0, c, (n,), generator=gen)
    return Case("smallcnn", model, w0, x, y, torch.tensor([0, 7, 13]))


BUILDERS = {"linear": _linear, "ridge": _ridge, "mlp": _mlp, "smallcnn": _smallcnn}
NAMES = tuple(BUILDERS)


def make(name: str, seed: int = 0, **sizes) -> Case:
    """The problem ``name`` (one of :data:`NAMES`), built from ``seed`` (``sizes``: the
    builder's ``n``, ``c``, ...)."""
    return BUILDERS[name](seed, **sizes)
