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
    """Detached buffers, and the frozen parameters (``requires_grad=False``: constants of the
    model function); floating ones (BatchNorm statistics) are cast to ``dtype``."""
    out = {}
    frozen = ((n, p) for n, p in model.named_parameters() if not p.requires_grad)
    for name, b in [*model.named_buffers(), *frozen]:
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
    """Number of parameters of ``model`` (all, trained or not)."""
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

    Buffers and frozen parameters are captured (cast to ``dtype`` when given); ``params`` may be
    any subset of the trainable parameter names, the rest are taken from the model (cast to
    ``dtype``). The module is kept as ``f.module`` (:func:`module_of`: per-layer rules).
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

    f.module = model  # type: ignore[attr-defined]
    return f


def module_of(f: ModelFn) -> nn.Module | None:
    """The module a :func:`model_function` evaluates (None for any other function)."""
    return getattr(f, "module", None)


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


def select_trainable(model: nn.Module, patterns=None) -> list[str]:
    """Mark which parameters were trained (``requires_grad``), in place, and return their
    names. ``patterns``: None keeps the model's own flags; else parameter names or shell-style
    patterns (a list, or one comma-separated string: ``"layer4.*,fc.*"``). Every pattern must
    match a parameter, and at least one parameter must be trainable."""
    from fnmatch import fnmatchcase

    names = [n for n, _ in model.named_parameters()]
    if patterns is not None:
        if isinstance(patterns, str):
            patterns = [p.strip() for p in patterns.split(",") if p.strip()]
        patterns = list(patterns)
        if not patterns or not all(isinstance(p, str) for p in patterns):
            raise ValueError(f"trainable must name parameters or patterns; got {patterns!r}")
        unmatched = [p for p in patterns if not any(fnmatchcase(n, p) for n in names)]
        if unmatched:
            raise ValueError(
                f"trainable: {unmatched} match no parameter of the model "
                f"(its parameters begin {names[:4]})"
            )
        for n, p in model.named_parameters():
            p.requires_grad_(any(fnmatchcase(n, pat) for pat in patterns))
    chosen = [n for n, p in model.named_parameters() if p.requires_grad]
    if not chosen:
        raise ValueError(
            "no trainable parameter: nothing to scrub (set requires_grad or trainable)"
        )
    return chosen
