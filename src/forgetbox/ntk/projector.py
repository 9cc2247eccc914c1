"""The projector P of eq. 10 onto the complement of the retain gradients (dense, small n)."""

from __future__ import annotations

import torch
from torch import Tensor

from ..functional import ModelFn, Params
from .jacobian import jacobian
from .kernel import shifted


def apply_retain_projector(
    f: ModelFn, params: Params, x_retain: Tensor, v: Tensor, *, ridge: float = 0.0
) -> Tensor:
    """``P v = v - J_r^T (J_r J_r^T + ridge I)^{-1} J_r v`` (the P of eq. 10), dense, small n.

    With ``ridge = 0`` and J_r of full row rank, P is the orthogonal projector onto the
    complement of the span of the retain gradients.
    """
    J = jacobian(f, params, x_retain).reshape(-1, v.numel()).to(v.dtype)
    K = shifted(J @ J.T, ridge)
    return v - J.T @ torch.linalg.solve(K, J @ v)
