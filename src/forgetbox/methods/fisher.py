"""The diagonal Fisher and the noise of Fisher forgetting [16] and of eq. 11."""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import jacrev, vmap

from ..functional import flatten, load_flat_, model_function, parameters_of, unflatten
from ..models import head_name
from .config import ForgetConfig, NoiseConfig


def fisher_diagonal(
    model: nn.Module,
    x: Tensor,
    *,
    params: Mapping[str, Tensor] | None = None,
    dtype: torch.dtype | None = None,
    chunk: int = 64,
) -> Tensor:
    """Diagonal Fisher information, flat ``(p,)``, averaged over the ``n`` inputs ``x``:

    ``F = (1/n) sum_i sum_k p_k(x_i) (d log p_k(x_i) / dw)^2`` with p the model's own softmax,
    i.e. the expectation over the predictive distribution, not only the true label [16].
    """
    dtype = dtype or next(model.parameters()).dtype
    f = model_function(model, dtype)
    params = dict(params) if params is not None else parameters_of(model, dtype)
    names = list(params)

    def logp(p, x1):
        return torch.log_softmax(f(p, x1.unsqueeze(0)).squeeze(0), -1)

    device = next(iter(params.values())).device
    total = torch.zeros(sum(t.numel() for t in params.values()), dtype=dtype, device=device)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk].to(device, dtype)
        with torch.no_grad():
            probs = torch.softmax(f(params, xb), -1)  # (b, c)
        jac = vmap(jacrev(logp), in_dims=(None, 0))(params, xb)
        g = torch.cat([jac[k].reshape(len(xb), probs.shape[1], -1) for k in names], 2)
        total += torch.einsum("bc,bcp->p", probs, g.pow(2)).detach()
    return total / len(x)


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
        if config.fan_in_average and var.ndim > 1:
            var = var.mean(dim=tuple(range(1, var.ndim)), keepdim=True).expand_as(var)
        if is_head or var.ndim == 1:
            var = var * config.boost
        if is_head and forgotten_class is not None:
            var = var.clone()
            var[forgotten_class] = config.class_row_variance
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


def fisher_chunk(config: ForgetConfig) -> int:
    return config.ntk.chunk or 64


def variance_at(
    model: nn.Module, weights: Tensor, x_retain: Tensor, alpha: float, config: ForgetConfig
) -> Tensor:
    """alpha F^{-1} (after the noise safeguards) with F the diagonal Fisher on ``x_retain`` at
    the flat ``weights`` of ``model``'s architecture."""
    probe = load_flat_(copy.deepcopy(model), weights)
    fisher = fisher_diagonal(probe, x_retain, chunk=fisher_chunk(config))
    return method_variance(probe, fisher, alpha, config)
