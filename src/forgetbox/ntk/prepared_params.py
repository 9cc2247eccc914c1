"""Prepared deletion in parameter space, for models whose trained parameters are fewer than the
kernel's rows (a head, a last block, adapters; see :mod:`forgetbox.ntk.param_space`).

:func:`~forgetbox.ntk.preparation.prepare_state` accumulates, once, ``G_D = J^T J`` and
``b_D = J^T r`` over the whole training set at w_bar and factors
``M = G_D + |D| lambda I = L L^T`` (p x p), with ``u_D = -M^{-1} b_D``.

A request for a cohort U (with earlier requests, the union of every cohort so far) needs
``u_{D_r} = -(G_r + |D_r| lambda I)^{-1} b_r`` with ``G_r = G_D - J_U^T J_U`` and
``b_r = b_D - J_U^T r_U``. Only the cohort's Jacobian ``J_U`` (|U| c x p) is computed:

- ``B = M - J_U^T J_U`` is a rank-|U| c downdate of the stored factor, inverted by Woodbury:
  ``B^{-1} = M^{-1} + C S^{-1} C^T`` with ``C = M^{-1} J_U^T`` and ``S = I - J_U C``;
- the system matrix ``A = G_r + |D_r| lambda I`` differs from B by ``-|U| lambda I``
  (fine-tuning's weight decay scales with the set size), so ``A x = b_r`` is solved by
  conjugate gradients preconditioned with ``B^{-1}``: eigenvalues in ``[|D_r| / |D|, 1]``,
  a few iterations.

A request costs ``O(|U| c p^2 + iterations p^2)``, nothing that grows with |D|, and no pass
over D_r. The result equals :func:`forgetbox.ntk.ntk_direction` from scratch (tested to 1e-8
in float64).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from ..checkpoints import CheckpointError
from .jacobian import jacobian
from .prepared import PreparedKernel
from .solvers import cholesky, conjugate_gradient, solve_factored

SPACE = "param"


@dataclass
class PreparedParams(PreparedKernel):
    """A :class:`PreparedKernel` solved in parameter space.

    ``chol``: lower Cholesky factor of ``M = G_D + |D| lambda I``, ``(p, p)`` float64;
    ``alpha``: ``b_D = J^T r``, ``(p, 1)`` float64; ``jt_alpha``: ``M^{-1} b_D`` ``(p,)``
    (so ``u_D = -jt_alpha``); ``columns``: ``M^{-1} J_U^T`` ``(p, |U| c)`` of the cohort
    answered so far and ``jacobian``: ``J_U`` ``(|U| c, p)`` float64, rows in request order.
    """

    jacobian: Tensor | None = None

    preconditioner = "woodbury-downdate"
    space = SPACE

    @property
    def rows(self) -> int:
        """Jacobian rows per sample: c."""
        return self.c

    def nbytes(self) -> int:
        """Bytes the state holds (factor, cohort columns and Jacobian, vectors)."""
        cohort = 0 if self.columns is None else 2 * self.columns.numel() * 8
        return self.chol.numel() * 8 + cohort + self.jt_alpha.numel() * 3 * 4

    def in_words(self) -> str:
        """The prepared state in words (the CLI's one-line log)."""
        return f"parameter-space system of {self.chol.shape[0]} trained parameters"

    def _retain_solution(self, model, x, new: Tensor, tol: float, max_iter: int, chunk: int, mark):
        """``(x_r, iterations, relative residual, new state)`` with
        ``x_r = (G_r + |D_r| lambda I)^{-1} b_r`` (so ``u_{D_r} = -x_r`` before the anchor)."""
        device, dtype = self.chol.device, self.jt_alpha.dtype
        J_new = self._cohort_jacobian(model, x, new, dtype, chunk)
        cols_new = solve_factored(self.chol, J_new.T.contiguous())
        J_U = J_new if self.jacobian is None else torch.cat([self.jacobian, J_new])
        C = cols_new if self.columns is None else torch.cat([self.columns, cols_new], 1)
        forgotten = torch.cat([self.forgotten, new])
        mark("columns_seconds")
        r_U = self.residuals.to(device)[forgotten.to(device)].reshape(-1).double()
        rhs = (self.alpha[:, 0] - J_U.T @ r_U)[:, None]
        S = torch.eye(len(J_U), dtype=torch.float64, device=device) - J_U @ C
        l_s = cholesky(0.5 * (S + S.T), "the downdate")
        shift = len(forgotten) * self.weight_decay

        def op(v: Tensor) -> Tensor:
            return self.chol @ (self.chol.T @ v) - J_U.T @ (J_U @ v) - shift * v

        def precond(v: Tensor) -> Tensor:
            return solve_factored(self.chol, v) + C @ solve_factored(l_s, C.T @ v)

        sol, iters, rel = conjugate_gradient(op, rhs, precond=precond, tol=tol, max_iter=max_iter)
        mark("solve_seconds")
        state = {"columns": C, "jacobian": J_U, "forgotten": forgotten}
        return sol[:, 0].to(dtype), iters, rel, state

    def _cohort_jacobian(self, model, x, idx: Tensor, dtype, chunk: int) -> Tensor:
        """``J_U``: the logits' Jacobian at w_bar on the samples ``idx``, ``(|idx| c, p)``."""
        f, params = self._linearization(model, dtype)
        xs = x[idx.to(x.device)].to(self.chol.device, dtype)
        blocks = []
        for i in range(0, len(xs), chunk):
            J = jacobian(f, params, xs[i : i + chunk]).detach()
            blocks.append(J.reshape(-1, J.shape[-1]).double())
        return torch.cat(blocks)

    # ------------------------------------------------------------------------- storage

    def cohort_tensors(self) -> dict[str, Tensor]:
        """The cohort answered so far: indices, ``M^{-1} J_U^T`` and ``J_U``."""
        empty = torch.zeros(0, dtype=torch.float64)
        jacobian = self.jacobian if self.jacobian is not None else empty
        return {**super().cohort_tensors(), "jacobian": jacobian}

    @classmethod
    def expected_shapes(cls, n: int, c: int, kernel: str, p: int) -> dict[str, tuple[int, int]]:
        """Shapes of the kernel tensors of a state with ``p`` trained parameters."""
        return {"chol": (p, p), "alpha": (p, 1), "residuals": (n, c)}

    def with_cohort(self, t: dict[str, Tensor], device) -> PreparedParams:
        """This state with the requests of ``t`` answered (the cohort's Jacobian too)."""
        super().with_cohort(t, device)
        if "jacobian" not in t:
            raise CheckpointError("not the cohort of a parameter-space prepared state")
        jac, m = t["jacobian"], self.chol.shape[0]
        if len(self.forgotten) and tuple(jac.shape) != (len(self.forgotten) * self.rows, m):
            raise CheckpointError("jacobian of the wrong shape")
        self.jacobian = jac.to(device) if len(self.forgotten) else None
        return self


__all__ = ["SPACE", "PreparedParams"]
