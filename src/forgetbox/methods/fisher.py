"""The noise of Fisher forgetting [16] and of eq. 11: ``alpha F^{-1}`` after the authors'
safeguards, drawn from a seed; and a memo of Fisher diagonals by the weights they were
computed at (so a Fisher is computed once per point and data set)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..functional import flatten, load_flat_, parameters_of, unflatten
from ..hashing import tensors_sha256
from ..models import head_name
from .config import ForgetConfig, NoiseAverage, NoiseConfig
from .fisher_diag import fisher_diagonal


def noise_variance(
    fisher: Tensor,
    like: Mapping[str, Tensor],
    *,
    alpha: float,
    head: str,
    config: NoiseConfig | None = None,
    forgotten_class: int | None = None,
) -> Tensor:
    """Flat diagonal covariance ``alpha * F^{-1}`` after the safeguards of :class:`NoiseConfig`.

    ``head`` is the classifier module's name (its ``.weight``/``.bias`` get ``head_cap``/boost).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    config = config or NoiseConfig()
    out = {}
    for name, F_t in unflatten(fisher, like).items():
        is_head = name.startswith(head + ".")
        cap = config.head_cap if is_head else config.cap
        var = alpha * torch.clamp(1.0 / (F_t + config.floor), max=cap)
        if var.ndim > 1 and config.average is NoiseAverage.FAN_IN:
            var = var.mean(dim=tuple(range(1, var.ndim)), keepdim=True).expand_as(var)
        elif var.ndim > 1 and config.average is NoiseAverage.INPUT_CHANNELS:
            var = var.mean(dim=1, keepdim=True).expand_as(var)
        if is_head and forgotten_class is not None:
            var = var.clone()
            var[forgotten_class] = config.class_row_variance
        if is_head or var.ndim == 1:
            var = var * config.boost
        out[name] = var
    return flatten(out)


def noisy_weights(
    model: nn.Module, mean: Tensor, var: Tensor, generator: torch.Generator, config: ForgetConfig
) -> nn.Module:
    """A copy of ``model`` with weights ``mean + sqrt(var) * N(0, I)``; a forgotten class's head
    row gets mean 0. The draw is made on the CPU (the generator's device) in float64, so a seed
    gives the same noise on any device."""
    if config.forgotten_class is not None:
        parts = {k: v.clone() for k, v in unflatten(mean, parameters_of(model)).items()}
        head = head_name(model)
        for name in (f"{head}.weight", f"{head}.bias"):
            if name in parts:
                parts[name][config.forgotten_class] = 0.0
        mean = flatten(parts)
    noise = torch.randn(mean.shape, generator=generator, dtype=torch.float64).to(mean)
    return load_flat_(copy.deepcopy(model), mean + var.to(mean).sqrt() * noise)


def method_variance(model: nn.Module, fisher: Tensor, alpha: float, config: ForgetConfig) -> Tensor:
    """:func:`noise_variance` with the model's head and the config's safeguards."""
    return noise_variance(
        fisher,
        parameters_of(model),
        alpha=alpha,
        head=head_name(model),
        config=config.noise,
        forgotten_class=config.forgotten_class,
    )


def fisher_of(model: nn.Module, x: Tensor, config: ForgetConfig) -> Tensor:
    """The diagonal Fisher of ``model`` on ``x`` under the config's chunk and memory budget."""
    return fisher_diagonal(model, x, chunk=config.ntk.chunk, memory_budget=config.ntk.memory_budget)


def variance_at(
    model: nn.Module, weights: Tensor, x_retain: Tensor, alpha: float, config: ForgetConfig
) -> Tensor:
    """alpha F^{-1} (after the noise safeguards) with F the diagonal Fisher on ``x_retain`` at
    the flat ``weights`` of ``model``'s architecture."""
    return FisherMemo(model, x_retain, config).variance(weights, alpha)


@dataclass
class FisherMemo:
    """Diagonal Fishers of one architecture on one data set ``x``, by the weights they were
    computed at: each point's Fisher is computed once (:meth:`add` records one already known)."""

    model: nn.Module
    x: Tensor
    config: ForgetConfig
    known: dict[str, Tensor] = field(default_factory=dict)
    computed: int = 0

    def add(self, weights: Tensor, fisher: Tensor) -> None:
        """Record a Fisher already computed at ``weights``."""
        device = next(self.model.parameters()).device
        self.known[tensors_sha256(weights)] = fisher.to(device)

    def __call__(self, weights: Tensor) -> Tensor:
        """The Fisher at the flat ``weights`` (``(p,)``)."""
        key = tensors_sha256(weights)
        if key not in self.known:
            probe = load_flat_(copy.deepcopy(self.model), weights)
            self.known[key] = fisher_of(probe, self.x, self.config)
            self.computed += 1
        return self.known[key]

    def variance(self, weights: Tensor, alpha: float) -> Tensor:
        """``alpha F^{-1}`` at ``weights`` after the config's safeguards."""
        return method_variance(self.model, self(weights), alpha, self.config)
