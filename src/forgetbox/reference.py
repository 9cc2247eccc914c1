"""Brute-force references: slow, simple, float64 computations of what the fast paths compute.

They loop over samples and classes with plain autograd and solve with ``torch.linalg.solve``;
the tests compare every fast path against them on tiny problems, and a user can check a
result on a small problem of their own. Nothing here is meant to be fast.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import flatten, model_function, parameters_of


def per_sample_jacobian(model: nn.Module, params: Mapping[str, Tensor], x: Tensor) -> Tensor:
    """Jacobian of the logits, ``(n c, p)`` sample-major, one autograd call per sample and
    class (float64)."""
    f = model_function(model, torch.float64)
    names = list(params)
    rows = []
    with torch.no_grad():
        c = f(params, x[:1]).shape[1]
    for i in range(len(x)):
        for k in range(c):
            p = {n: params[n].detach().double().clone().requires_grad_(True) for n in names}
            out = f(p, x[i : i + 1].double())[0, k]
            grads = torch.autograd.grad(out, list(p.values()), allow_unused=True)
            rows.append(
                torch.cat(
                    [
                        (g if g is not None else torch.zeros_like(t)).reshape(-1)
                        for g, t in zip(grads, p.values(), strict=True)
                    ]
                )
            )
    return torch.stack(rows)


def residual_vector(model: nn.Module, params, x: Tensor, y: Tensor, loss: str = "ce") -> Tensor:
    """Stacked residuals ``(n c,)``: softmax - onehot (CE) or logits - onehot (MSE)."""
    f = model_function(model, torch.float64)
    with torch.no_grad():
        z = f(params, x.double())
    onehot = F.one_hot(y, z.shape[1]).double()
    return (torch.softmax(z, 1) - onehot if loss == "ce" else z - onehot).reshape(-1)


def linearized_update(
    model: nn.Module,
    params,
    x: Tensor,
    y: Tensor,
    lam: float,
    loss: str = "ce",
    pretrained: Mapping[str, Tensor] | None = None,
) -> Tensor:
    """``u_S = -J^T (J J^T + |S| lam I)^{-1} r`` at ``params`` (dense); with ``pretrained``
    (w0) the anchored form ``-(w - w0) - J^T Theta^{-1} (r - J (w - w0))``."""
    J = per_sample_jacobian(model, params, x)
    r = residual_vector(model, params, x, y, loss)
    K = J @ J.T + len(x) * lam * torch.eye(len(J), dtype=torch.float64)
    if pretrained is None:
        return -J.T @ torch.linalg.solve(K, r)
    d = flatten(params).double() - flatten(pretrained).double()
    return -d - J.T @ torch.linalg.solve(K, r - J @ d)


def dense_delta(
    model: nn.Module,
    params,
    retain: tuple[Tensor, Tensor],
    forget: tuple[Tensor, Tensor],
    lam: float,
    loss: str = "ce",
    pretrained: Mapping[str, Tensor] | None = None,
) -> tuple[Tensor, Tensor]:
    """``(delta_w, u_{D_r})`` with ``delta_w = u_{D_r} - u_D`` (D = retain then forget), dense."""
    xd, yd = torch.cat([retain[0], forget[0]]), torch.cat([retain[1], forget[1]])
    u_retain = linearized_update(model, params, *retain, lam, loss, pretrained)
    return u_retain - linearized_update(model, params, xd, yd, lam, loss, pretrained), u_retain


def ridge_solution(x: Tensor, y: Tensor, w0_model: nn.Module, lam: float) -> Tensor:
    """Closed-form minimiser of ``(1/N) sum 1/2 ||W x + b - onehot(y)||^2 + lam/2 ||w - w0||^2``
    for a linear model with ``classifier`` weight and bias; flat, weight then bias."""
    X = torch.cat([x.flatten(1), torch.ones(len(x), 1, dtype=x.dtype)], 1)
    W0 = torch.cat([w0_model.classifier.weight, w0_model.classifier.bias[:, None]], 1).detach()
    Y = F.one_hot(y, W0.shape[0]).to(x.dtype)
    n, d = X.shape
    A = X.T @ X / n + lam * torch.eye(d, dtype=x.dtype)
    theta = torch.linalg.solve(A, X.T @ Y / n + lam * W0.T)  # (d, c)
    return torch.cat([theta[:-1].T.reshape(-1), theta[-1]])


def fisher_diagonal(model: nn.Module, x: Tensor) -> Tensor:
    """``(1/n) sum_i sum_k p_k (d log p_k / dw)^2``, one autograd call per sample and class."""
    f = model_function(model, torch.float64)
    params = parameters_of(model, torch.float64)
    total = torch.zeros(sum(t.numel() for t in params.values()), dtype=torch.float64)
    for i in range(len(x)):
        with torch.no_grad():
            c = f(params, x[i : i + 1].double()).shape[1]
        for k in range(c):
            p = {n: t.clone().requires_grad_(True) for n, t in params.items()}
            logp = torch.log_softmax(f(p, x[i : i + 1].double()), -1)[0]
            grads = torch.autograd.grad(logp[k], list(p.values()))
            total += logp[k].exp().detach() * torch.cat([g.reshape(-1) for g in grads]) ** 2
    return total / len(x)
