"""Newton scrubbing (eq. 12), the paper's point of comparison."""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.func import jvp, vjp

from ..functional import flatten, model_function, parameters_of, unflatten
from ..ntk import Linearization, Loss, conjugate_gradient, residuals


def newton_step(
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    linearization: Linearization,
    *,
    damping: float = 0.0,
    max_iter: int = 200,
    tol: float = 1e-6,
    chunk: int = 256,
) -> tuple[Tensor, dict]:
    """Newton shift of eq. 12: ``-H^{-1} grad L_{D_r}(w)`` (flat), matrix-free, for the loss
    and weight decay of ``linearization`` (in its precision).

    ``L_{D_r}(w) = (1/N_r) sum_i l_i + (lambda/2)||w - w0||^2``; H is its Gauss-Newton matrix
    ``(1/N_r) J^T H_out J + (lambda + damping) I`` (H_out = diag(p) - p p^T for CE, I for MSE),
    which for MSE on a linear model is the exact Hessian.
    """
    weight_decay, loss = linearization.weight_decay, linearization.loss
    dtype = linearization.dtype or next(model.parameters()).dtype
    f = model_function(model, dtype)
    params = parameters_of(model, dtype)
    device = next(iter(params.values())).device
    anchor = flatten(parameters_of(w0, dtype)).to(device)
    x, y = retain[0].to(device, dtype), retain[1].to(device)
    n = len(x)
    chunks = [(x[i : i + chunk], y[i : i + chunk]) for i in range(0, n, chunk)]
    grad = None
    for xb, yb in chunks:
        logits, pull = vjp(lambda p, xb=xb: f(p, xb), params)
        g = flatten(pull(residuals(logits.detach(), yb, loss))[0])
        grad = g if grad is None else grad + g
    grad = grad / n + weight_decay * (flatten(params) - anchor)
    cache = []
    for xb, _ in chunks:
        with torch.no_grad():
            cache.append(torch.softmax(f(params, xb), -1) if loss is Loss.CE else None)

    def hvp(v: Tensor) -> Tensor:
        tangent = unflatten(v, params)
        total = torch.zeros_like(v)
        for (xb, _), probs in zip(chunks, cache, strict=True):
            _, jv = jvp(lambda p, xb=xb: f(p, xb), (params,), (tangent,))
            if probs is not None:
                jv = probs * jv - probs * (probs * jv).sum(-1, keepdim=True)
            _, pull = vjp(lambda p, xb=xb: f(p, xb), params)
            total += flatten(pull(jv)[0])
        return total / n + (weight_decay + damping) * v

    step, iters, rel = conjugate_gradient(hvp, -grad, tol=tol, max_iter=max_iter)
    return step.detach(), {
        "cg_iterations": iters,
        "relative_residual": rel,
        "gradient_norm": grad.norm().item(),
    }
