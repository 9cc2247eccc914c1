"""Information bounds of Proposition 1, in nats.

Convention: every bound is the exact KL divergence between Gaussians,
``KL(N(m1, S1) || N(m0, S0)) = 1/2 [tr(S0^{-1} S1) + (m1-m0)^T S0^{-1} (m1-m0) - k
+ ln(det S0 / det S1)]``. The paper's d(S, S0) in Proposition 1 has ``+ log|S S0^{-1}|`` where
its appendix proof (the Gaussian KL) has ``- log``, and the authors' code omits the 1/2 (it
reports twice the KL); forgetbox reports the KL itself.

- White box (eq. 6): weights scrubbed to ``N(h(w_D), Sigma)`` against the baseline
  ``N(w_{D_r}, Sigma0)``, both diagonal (``alpha F^{-1}``), with a per-tensor breakdown.
- Black box (eq. 5, 7): for queries x the outputs (logits) are ``N(f_{h(w)}(x), J Sigma J^T)``
  with J the Jacobian at h(w), against ``N(f_{w_{D_r}}(x), J' Sigma0 J'^T)``. Per query the
  full c x c covariance is used; for a query set, optionally all n c outputs jointly. No p x p
  matrix is ever formed: ``J Sigma J^T`` is the NTK of the model re-parametrised by
  ``w = m + sigma * theta``. The diagonal-only approximation of the authors' code is also given.
  ``kernel="pseudo"`` replaces ``J Sigma J^T`` by the pseudo-NTK of the re-parametrised model
  times the identity over classes (c times less Jacobian work; see :class:`forgetbox.ntk.Kernel`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from . import ntk
from .functional import ModelFn, model_function, parameters_of, unflatten


@dataclass(frozen=True)
class WhiteBoxBound:
    """The white-box bound of eq. 6 in nats, in total and per parameter tensor."""

    nats: float
    per_tensor: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class BlackBoxBound:
    """Per-query KL (full c x c covariance) and its diagonal approximation, in nats."""

    per_query: Tensor  # (n,)
    per_query_diagonal: Tensor  # (n,)
    joint: float | None = None  # all n c outputs jointly (when asked)

    @property
    def mean(self) -> float:
        """Mean per-query bound (nats), full covariance."""
        return self.per_query.mean().item()

    @property
    def mean_diagonal(self) -> float:
        """Mean per-query bound (nats), diagonal covariance approximation."""
        return self.per_query_diagonal.mean().item()


def gaussian_kl_diag(mu1: Tensor, var1: Tensor, mu0: Tensor, var0: Tensor) -> Tensor:
    """Elementwise KL(N(mu1, var1) || N(mu0, var0)) in nats (sum it for diagonal Gaussians)."""
    mu1, var1, mu0, var0 = (t.to(mu1.device, torch.float64) for t in (mu1, var1, mu0, var0))
    ratio = var1 / var0
    return 0.5 * (ratio + (mu1 - mu0) ** 2 / var0 - 1.0 - torch.log(ratio))


def gaussian_kl(mu1: Tensor, S1: Tensor, mu0: Tensor, S0: Tensor) -> Tensor:
    """KL(N(mu1, S1) || N(mu0, S0)) for full covariances; batched over leading dimensions.

    Shapes: ``mu (..., k)``, ``S (..., k, k)``; returns ``(...)`` in nats.
    """
    mu1, S1, mu0, S0 = (t.to(mu1.device, torch.float64) for t in (mu1, S1, mu0, S0))
    L0 = torch.linalg.cholesky(S0)
    L1 = torch.linalg.cholesky(S1)
    k = mu1.shape[-1]
    A = torch.linalg.solve_triangular(L0, L1, upper=False)  # L0^{-1} L1
    trace = A.pow(2).sum((-2, -1))
    d = torch.linalg.solve_triangular(L0, (mu1 - mu0).unsqueeze(-1), upper=False).squeeze(-1)
    maha = d.pow(2).sum(-1)
    logdet0 = 2 * torch.log(torch.diagonal(L0, dim1=-2, dim2=-1)).sum(-1)
    logdet1 = 2 * torch.log(torch.diagonal(L1, dim1=-2, dim2=-1)).sum(-1)
    return 0.5 * (trace + maha - k + logdet0 - logdet1)


def white_box(
    mean: Tensor,
    var: Tensor,
    mean0: Tensor,
    var0: Tensor,
    like: Mapping[str, Tensor] | None = None,
) -> WhiteBoxBound:
    """Eq. 6 as the exact KL between diagonal Gaussians over the weights, with per-tensor parts
    (``like`` names the tensors of the flat vectors)."""
    kl = gaussian_kl_diag(mean, var, mean0, var0)
    parts = {}
    if like is not None:
        parts = {k: v.sum().item() for k, v in unflatten(kl, like).items()}
    return WhiteBoxBound(kl.sum().item(), parts)


def _scaled_function(f: ModelFn, mean: dict, std: dict) -> ModelFn:
    """``g(theta, x) = f(mean + std * theta, x)``: its Jacobian at theta=0 is ``J diag(std)``."""

    def g(theta, x):
        return f({k: mean[k] + std[k] * theta[k] for k in mean}, x)

    return g


def _reparametrised(model: nn.Module, mean: Tensor, var: Tensor):
    """In float64: ``f``, the mean as a parameter dict ``m``, ``g(theta) = f(m + sigma theta)``,
    the zero point of theta, and the model's device."""
    dtype = torch.float64
    f = model_function(model, dtype)
    like = parameters_of(model, dtype)
    device = next(iter(like.values())).device
    m = unflatten(mean.to(device, dtype), like)
    s = unflatten(var.to(device, dtype).sqrt(), like)
    zero = {k: torch.zeros_like(v) for k, v in m.items()}
    return f, m, _scaled_function(f, m, s), zero, device


def output_covariances(
    model: nn.Module,
    mean: Tensor,
    var: Tensor,
    x: Tensor,
    *,
    chunk: int = 32,
    kernel: ntk.Kernel | str = ntk.Kernel.EXACT,
) -> tuple[Tensor, Tensor]:
    """Logits ``(n, c)`` at ``mean`` and per-query covariances ``J Sigma J^T`` ``(n, c, c)``
    (pseudo-NTK: ``s(x) I_c`` with ``s`` the variance of ``sum_k f_k / sqrt(c)``)."""
    pseudo = ntk.Kernel(kernel) is ntk.Kernel.PSEUDO
    dtype = torch.float64
    f, m, g, zero, device = _reparametrised(model, mean, var)
    logits, covs = [], []
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk].to(device, dtype)
        J = ntk.jacobian(g, zero, xb, pseudo=pseudo)  # (b, c or 1, p) = J diag(sigma)
        with torch.no_grad():
            logits.append(f(m, xb))
        if pseudo:
            eye = torch.eye(logits[-1].shape[-1], dtype=dtype, device=J.device)
            covs.append(J.pow(2).sum((1, 2))[:, None, None] * eye)
        else:
            covs.append(torch.einsum("bcp,bdp->bcd", J, J))
    return torch.cat(logits), torch.cat(covs)


def joint_covariance(
    model: nn.Module,
    mean: Tensor,
    var: Tensor,
    x: Tensor,
    kernel: ntk.Kernel | str = ntk.Kernel.EXACT,
) -> Tensor:
    """``J_X Sigma J_X^T`` over all n c outputs of the queries ``x`` (sample-major); for the
    pseudo-NTK the ``(n, n)`` kernel shared by every class."""
    _, _, g, zero, device = _reparametrised(model, mean, var)
    return ntk.kernel_matrix(g, zero, x.to(device, torch.float64), kernel=kernel)


def black_box(
    model: nn.Module,
    mean: Tensor,
    var: Tensor,
    mean0: Tensor,
    var0: Tensor,
    x: Tensor,
    *,
    joint: bool = False,
    jitter: float = 0.0,
    kernel: ntk.Kernel | str = ntk.Kernel.EXACT,
) -> BlackBoxBound:
    """Eq. 7 for the queries ``x``: KL between the output Gaussians of the scrubbed model
    ``(mean, var)`` and the baseline ``(mean0, var0)`` (flat weights and diagonal variances of
    ``model``'s architecture). ``jitter`` (relative) is added to every covariance's diagonal.
    ``kernel="pseudo"``: output covariances from the pseudo-NTK (see :func:`output_covariances`).
    """
    pseudo = ntk.Kernel(kernel) is ntk.Kernel.PSEUDO
    f1, S1 = output_covariances(model, mean, var, x, kernel=kernel)
    f0, S0 = output_covariances(model, mean0, var0, x, kernel=kernel)
    if jitter:
        S1 = S1 + jitter * _diag_scale(S1)
        S0 = S0 + jitter * _diag_scale(S0)
    full = gaussian_kl(f1, S1, f0, S0)
    d1, d0 = torch.diagonal(S1, dim1=-2, dim2=-1), torch.diagonal(S0, dim1=-2, dim2=-1)
    diag = gaussian_kl_diag(f1, d1, f0, d0).sum(-1)
    total = None
    if joint:
        J1 = joint_covariance(model, mean, var, x, kernel)
        J0 = joint_covariance(model, mean0, var0, x, kernel)
        if jitter:
            J1 = J1 + jitter * _diag_scale(J1)
            J0 = J0 + jitter * _diag_scale(J0)
        if pseudo:  # c independent n-dimensional Gaussians sharing one covariance
            total = gaussian_kl(f1.T, J1, f0.T, J0).sum().item()
        else:
            total = gaussian_kl(f1.reshape(-1), J1, f0.reshape(-1), J0).item()
    return BlackBoxBound(full, diag, total)


def _diag_scale(S: Tensor) -> Tensor:
    d = torch.diagonal(S, dim1=-2, dim2=-1).mean(-1, keepdim=True)
    eye = torch.eye(S.shape[-1], dtype=S.dtype, device=S.device)
    return d.unsqueeze(-1) * eye
