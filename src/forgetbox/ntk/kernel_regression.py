"""Training the linearized network exactly, in kernel space.

With the Jacobian J at w0 fixed, the minimiser of ``L_S(w) = (1/n) sum_i loss(f0_i + J_i (w -
w0), y_i) + (lambda/2) ||w - w0||^2`` lies in J's row space: ``w - w0 = J^T a`` with
``a`` ``(n c,)``, and with ``K = J J^T`` the problem is kernel regression (MSE) or kernel
logistic regression (cross-entropy) in a:

    f(a) = f0 + K a,   F(a) = r(f(a)) / n + lambda a   (r the residual of :func:`residuals`)

``grad L_S(w0 + J^T a) = J^T F(a)``, so its norm is ``sqrt(F^T K F)``: a stopping rule in the
parameter space's own terms, computed from K alone. MSE is one linear solve,
``a = -(K + n lambda I)^{-1} (f0 - Y)``; cross-entropy is solved by damped Newton: each step
solves ``(H K / n + lambda I) d = -F`` (H the block-diagonal softmax Hessians; the exact
Hessian of a model linear in w), with a backtracking line search on the objective. Newton
converges quadratically on this lambda-strongly convex problem (a handful of steps to 1e-12).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from .options import Linearization, Loss
from .problem import residuals


@dataclass
class KernelRegression:
    """``min_a (1/n) sum_i loss(f0_i + (K a)_i, y_i) + (lambda/2) a^T K a`` (float64).

    ``K`` ``(n c, n c)`` sample-major, ``f0`` ``(n, c)`` outputs at w0, ``y`` ``(n,)``.
    """

    K: Tensor
    f0: Tensor
    y: Tensor
    lin: Linearization
    history: list[float] = field(default_factory=list)

    @property
    def n(self) -> int:
        """Number of samples."""
        return self.f0.shape[0]

    def outputs(self, a: Tensor) -> Tensor:
        """``f0 + K a`` ``(n, c)``."""
        return self.f0 + (self.K @ a).reshape(self.f0.shape)

    def objective(self, a: Tensor) -> float:
        """The regularised loss at ``w0 + J^T a``."""
        f = self.outputs(a)
        if self.lin.loss is Loss.CE:
            data = F.cross_entropy(f, self.y)
        else:
            data = 0.5 * ((f - F.one_hot(self.y, f.shape[1]).to(f)) ** 2).sum(1).mean()
        return float(data + 0.5 * self.lin.weight_decay * (a @ (self.K @ a)))

    def fixed_point(self, a: Tensor) -> Tensor:
        """``F(a) = r(f(a)) / n + lambda a``: zero at the minimiser."""
        r = residuals(self.outputs(a), self.y, self.lin.loss).reshape(-1)
        return r / self.n + self.lin.weight_decay * a

    def grad_norm(self, a: Tensor) -> float:
        """``||grad L_S(w0 + J^T a)|| = sqrt(F^T K F)``."""
        g = self.fixed_point(a)
        return float((g @ (self.K @ g)).clamp_min(0).sqrt())

    def solve(self, a0: Tensor | None = None, *, tol: float = 1e-10, max_iter: int = 50) -> Tensor:
        """The minimiser's coefficients, to a parameter-space gradient norm <= ``tol`` (or
        ``max_iter`` Newton steps); the norms per step go to :attr:`history`."""
        m = self.K.shape[0]
        a = torch.zeros(m, dtype=torch.float64) if a0 is None else a0.double().clone()
        lam, n = self.lin.weight_decay, self.n
        eye = torch.eye(m, dtype=torch.float64)
        if self.lin.loss is Loss.MSE:  # linear residual: one solve
            target = F.one_hot(self.y, self.f0.shape[1]).double().reshape(-1)
            a = -torch.linalg.solve(self.K + n * lam * eye, self.f0.reshape(-1) - target)
            self.history.append(self.grad_norm(a))
            return a
        self.history.append(self.grad_norm(a))
        for _ in range(max_iter):
            if self.history[-1] <= tol:
                break
            system = self._hessian_times_k(a) / n + lam * eye
            a = self._line_search(a, -torch.linalg.solve(system, self.fixed_point(a)))
            self.history.append(self.grad_norm(a))
        return a

    def _hessian_times_k(self, a: Tensor) -> Tensor:
        """``H K`` with H block-diagonal, ``diag(p_i) - p_i p_i^T`` at ``f(a)`` (each block
        multiplies its sample's rows of K; H is never formed)."""
        p = torch.softmax(self.outputs(a), -1)
        blocks = torch.diag_embed(p) - p[:, :, None] * p[:, None, :]
        n, c = p.shape
        return torch.einsum("ijk,ikm->ijm", blocks, self.K.view(n, c, -1)).reshape(n * c, -1)

    def _line_search(self, a: Tensor, step: Tensor) -> Tensor:
        """Backtracking (Armijo) on the objective along the Newton step; near the minimiser,
        where the objective's change falls below float64's resolution, a step that lowers the
        gradient norm is taken (Newton's quadratic phase)."""
        base, slope = self.objective(a), float(self.fixed_point(a) @ (self.K @ step))
        norm = self.history[-1] if self.history else self.grad_norm(a)
        t = 1.0
        while t > 1e-8:
            cand = a + t * step
            if self.objective(cand) <= base + 1e-4 * t * slope or self.grad_norm(cand) < norm:
                break
            t *= 0.5
        return cand

    def __post_init__(self) -> None:
        self.K, self.f0 = self.K.double(), self.f0.double()
