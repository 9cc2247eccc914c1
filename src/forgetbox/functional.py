"""A model as a pure function of its parameters, and flat parameter vectors.

Everything in forgetbox that differentiates a network (NTK Jacobians, Fisher, bounds) goes
through :func:`model_function`: BatchNorm layers are evaluated in eval mode (running statistics,
never updated), so the network is a deterministic function ``f(params, x) -> logits``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextlib import contextmanager

import torch
from torch import Tensor, nn
from torch.func import functional_call

Params = dict[str, Tensor]
ModelFn = Callable[[Mapping[str, Tensor], Tensor], Tensor]


def parameters_of(model: nn.Module, dtype: torch.dtype | None = None) -> Params:
    """Detached copy of the trainable parameters, in ``model.named_parameters()`` order."""
    return {
        name: p.detach().clone().to(dtype or p.dtype)
        for name, p in model.named_parameters()
        if p.requires_grad
    }


def buffers_of(model: nn.Module, dtype: torch.dtype | None = None) -> Params:
    """Detached buffers; floating buffers (BatchNorm statistics) are cast to ``dtype``."""
    out = {}
    for name, b in model.named_buffers():
        b = b.detach()
        out[name] = b.to(dtype) if (dtype is not None and b.is_floating_point()) else b
    return out


def flatten(params: Mapping[str, Tensor]) -> Tensor:
    """Concatenate a parameter dict into one flat vector of length p."""
    return torch.cat([t.reshape(-1) for t in params.values()])


def unflatten(vector: Tensor, like: Mapping[str, Tensor]) -> Params:
    """Split a flat vector back into a dict shaped like ``like``."""
    expected = sum(t.numel() for t in like.values())
    if vector.ndim != 1 or vector.numel() != expected:
        raise ValueError(f"flat vector has shape {tuple(vector.shape)}, expected ({expected},)")
    out, start = {}, 0
    for name, t in like.items():
        out[name] = vector[start : start + t.numel()].view_as(t)
        start += t.numel()
    return out


def num_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


@contextmanager
def eval_mode(model: nn.Module):
    """Temporarily put ``model`` in eval mode (BatchNorm uses its running statistics)."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_function(model: nn.Module, dtype: torch.dtype | None = None) -> ModelFn:
    """Return ``f(params, x) -> logits`` evaluating ``model`` functionally in eval mode.

    Buffers are captured (cast to ``dtype`` when given); ``params`` may be any subset of the
    parameter names, the rest are taken from the model (cast to ``dtype``).
    """
    buffers = buffers_of(model, dtype)
    defaults = parameters_of(model, dtype)

    def f(params: Mapping[str, Tensor], x: Tensor) -> Tensor:
        merged = {**defaults, **params} if len(params) != len(defaults) else dict(params)
        was_training = model.training
        model.eval()
        try:
            return functional_call(model, (merged, buffers), (x,))
        finally:
            model.train(was_training)

    return f


def load_flat_(model: nn.Module, vector: Tensor) -> nn.Module:
    """Write a flat parameter vector into ``model`` in place; returns the model."""
    with torch.no_grad():
        like = {n: p for n, p in model.named_parameters() if p.requires_grad}
        for name, value in unflatten(vector.to(next(iter(like.values())).dtype), like).items():
            like[name].copy_(value)
    return model


def assert_finite(params: Mapping[str, Tensor], what: str = "parameters") -> None:
    """Raise ``ValueError`` naming the first tensor that holds NaN or infinity."""
    for name, t in params.items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise ValueError(f"{what}: tensor {name!r} contains NaN or infinite values")
