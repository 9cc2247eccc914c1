"""Jacobians and Jacobian products of a model function ``f(params, x) -> logits``.

All batched with ``torch.func``: one ``vmap(jacrev(...))`` per chunk of samples for Jacobian
blocks, ``vjp`` for ``J^T alpha`` and ``jvp`` for ``J v``; no Python loop over samples or
classes.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import Tensor
from torch.func import jacrev, jvp, vjp, vmap

from .. import parallel
from ..functional import ModelFn, Params, flatten


def split(x: Tensor, size: int):
    """Consecutive pieces of ``x`` of ``size`` rows (the last may be shorter)."""
    for i in range(0, len(x), size):
        yield x[i : i + size]


def jacobian_blocks(
    f: ModelFn, params: Mapping[str, Tensor], x: Tensor, names: Sequence[str], pseudo: bool
) -> dict[str, Tensor]:
    """Per-parameter Jacobian blocks ``{name: (n, c or 1, numel)}`` from one vmap(jacrev)."""
    sub = {k: params[k] for k in names}
    rest = {k: v for k, v in params.items() if k not in sub}

    def single(s: Params, x1: Tensor) -> Tensor:
        out = f({**rest, **s}, x1.unsqueeze(0)).squeeze(0)
        return out.sum(-1, keepdim=True) / math.sqrt(out.shape[-1]) if pseudo else out

    jac = vmap(jacrev(single), in_dims=(None, 0))(sub, x)
    return {k: jac[k].detach().reshape(len(x), jac[k].shape[1], -1) for k in names}


def jacobian(
    f: ModelFn,
    params: Mapping[str, Tensor],
    x: Tensor,
    names: Sequence[str] | None = None,
    *,
    pseudo: bool = False,
) -> Tensor:
    """Jacobian of all outputs w.r.t. the parameters ``names`` (default all), ``(n, c, p_sub)``.

    With ``pseudo=True`` the single output ``sum_k f_k / sqrt(c)`` instead, ``(n, 1, p_sub)``
    (its Gram matrix is the pseudo-NTK). One ``vmap(jacrev(...))`` call over the batch: no
    Python loop over samples or classes.
    """
    names = list(params) if names is None else list(names)
    blocks = jacobian_blocks(f, params, x, names, pseudo)
    return torch.cat([blocks[k] for k in names], dim=2)


def vjp_sum(
    f: ModelFn,
    params: Params,
    x: Tensor,
    coeffs: Tensor,
    chunk: int,
    names: Sequence[str] | None = None,
) -> Tensor:
    """``J^T alpha`` as a flat vector, for ``alpha`` of shape ``(n, c)``, over data chunks.

    ``alpha`` of shape ``(k, n, c)`` gives ``(k, p)``: k products from one forward pass per
    chunk (the pullback is vmapped over k). ``names``: only these parameters' columns (the
    backward pass then stops at the earliest of them).
    """
    dtype = next(iter(params.values())).dtype
    names = list(params) if names is None else list(names)
    sub = {k: params[k] for k in names}
    rest = {k: v for k, v in params.items() if k not in sub}
    batched = coeffs.ndim == 3
    width = sum(sub[k].numel() for k in names)
    device = next(iter(params.values())).device
    total = torch.zeros(*coeffs.shape[:-2], width, dtype=dtype, device=device)
    lo, hi = parallel.block(len(x))  # this rank's rows (all of them in one process)
    for i in range(lo, hi, chunk):
        xb = x[i : min(hi, i + chunk)]
        cb = coeffs[..., i : i + len(xb), :].to(dtype)
        _, pullback = vjp(lambda s, xb=xb: f({**rest, **s}, xb), sub)
        if batched:
            grads = vmap(pullback)(cb)[0]
            g = torch.cat([grads[k].reshape(len(cb), -1) for k in names], dim=1)
        else:
            g = flatten(pullback(cb)[0])
        total += g
    return parallel.all_sum(total)


def jvp_all(f: ModelFn, params: Params, x: Tensor, tangent: Params, chunk: int) -> Tensor:
    """``J v`` of shape ``(n, c)`` for a tangent parameter dict ``v``, over data chunks (this
    rank's rows, assembled on every rank)."""

    def rows(i: int, j: int) -> Tensor:
        xb = x[i:j]  # read outside the transform
        return jvp(lambda p: f(p, xb), (params,), (tangent,))[1]

    return parallel.rows_of(rows, len(x), chunk, lambda: rows(0, 1))
