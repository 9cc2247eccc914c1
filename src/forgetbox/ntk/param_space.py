"""The NTK step solved in parameter space, for models whose trained parameters are fewer than
the kernel's rows (a head, a last block, adapters).

With ``G_S = J_S^T J_S`` (p x p) and ``b_S = J_S^T r_S``, the push-through identity
``J^T (J J^T + mu I)^{-1} = (J^T J + mu I)^{-1} J^T`` turns each linear solution into
``u_S = -(G_S + |S| lambda I)^{-1} b_S`` (the shift keeps its |S| lambda scale for D and for
D_r). One pass over the data accumulates ``G`` and ``b`` for D_r and D_f separately; the
memory is ``O(p^2)`` whatever |D|, and the cost ``O(|D| c p^2 + p^3)``.
"""

from __future__ import annotations

import torch
from torch import Tensor

from .. import parallel
from ..progress import progress
from .jacobian import jacobian
from .memory import itemsize
from .solvers import cholesky, solve_factored


def param_memory_estimate(p: int, c: int, chunk: int, item: int) -> int:
    """Bytes of the parameter-space path: three p x p float64 matrices (G of D_r, of D_f and a
    factor) and one chunk's Jacobian."""
    return 3 * p * p * 8 + chunk * c * p * (item + 8)


def gram_and_rhs(f, params, x, r: Tensor, lo: int, hi: int, chunk: int) -> tuple[Tensor, Tensor]:
    """``(J^T J, J^T r)`` over rows ``lo:hi`` of the data, float64, in chunks."""
    p = sum(t.numel() for t in params.values())
    G = torch.zeros(p, p, dtype=torch.float64, device=r.device)
    b = torch.zeros(p, dtype=torch.float64, device=r.device)
    mine_lo, mine_hi = parallel.block(len(x))  # this rank's rows of the data
    lo, hi = max(lo, mine_lo), min(hi, mine_hi)
    for i in progress(range(lo, hi, chunk), desc="parameter-space J^T J"):
        j = min(hi, i + chunk)
        J = jacobian(f, params, x[i:j]).detach().reshape((j - i) * r.shape[1], p).double()
        G.addmm_(J.T, J)
        b.add_(J.T @ r[i:j].reshape(-1).double())
    return parallel.all_sum(G), parallel.all_sum(b)


def solve(G: Tensor, b: Tensor, shift: float) -> Tensor:
    """``(G + shift I)^{-1} b`` by Cholesky."""
    A = G.clone()
    A.diagonal().add_(shift)
    return solve_factored(cholesky(A, "the parameter-space system"), b[:, None])[:, 0]


def param_space_step(prob) -> tuple[Tensor, Tensor]:
    """``(delta_w, u_{D_r})`` of a :class:`~forgetbox.ntk.problem.Problem` (before the
    anchor's correction of u_{D_r}, as the kernel paths return them), in the parameters'
    dtype."""
    n, nr = len(prob.x), prob.n_retain
    G_r, b_r = gram_and_rhs(prob.f, prob.params, prob.x, prob.r, 0, nr, prob.chunk)
    G_f, b_f = gram_and_rhs(prob.f, prob.params, prob.x, prob.r, nr, n, prob.chunk)
    u_retain = -solve(G_r, b_r, nr * prob.lam)
    u_all = -solve(G_r + G_f, b_r + b_f, n * prob.lam)
    dtype = prob.r.dtype
    return (u_retain - u_all).to(dtype), u_retain.to(dtype)


__all__ = ["gram_and_rhs", "itemsize", "param_memory_estimate", "param_space_step", "solve"]
