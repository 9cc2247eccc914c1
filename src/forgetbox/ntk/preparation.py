"""Preparing deletion: factor the kernel of the whole training set once, in kernel space
(:class:`~forgetbox.ntk.prepared.PreparedKernel`) or in parameter space
(:class:`~forgetbox.ntk.prepared_params.PreparedParams`)."""

from __future__ import annotations

import time

from ..functional import flatten
from .direction import choose_solver
from .kernel import kernel_rows
from .memory import MemoryBudgetError, dense_memory_estimate, itemsize
from .options import Kernel, NTKOptions, Solver
from .param_space import gram_and_rhs
from .precision import full_precision
from .prepared import PreparedKernel
from .prepared_params import PreparedParams
from .problem import Problem
from .solvers import cholesky, cholesky_, solve_factored


@full_precision()
def prepare_state(
    prob: Problem, options: NTKOptions, *, hashes: dict | None = None, started: float | None = None
) -> PreparedKernel:
    """The prepared state of ``prob`` (D whole: ``prob.n_retain`` = |D|): in parameter space
    when :func:`in_parameter_space` says so, else the factored dense kernel.

    Cost: one kernel build and one Cholesky factorization of ``(n rows)^2`` float64 values
    (memory: :func:`forgetbox.ntk.memory.dense_memory_estimate`), or one pass accumulating
    ``J^T J`` and a ``(p, p)`` factorization. ``hashes``: what the state is bound to (opaque
    here); ``started``: when the caller's work began (``perf_counter``; the recorded seconds).
    """
    start = started if started is not None else time.perf_counter()
    if in_parameter_space(prob, options):
        return _prepare_params(prob, hashes or {}, start)
    n, c = prob.r.shape
    need = dense_memory_estimate(n * prob.rows, prob.num_params, itemsize(prob.r.dtype))
    if need > prob.budget:
        raise MemoryBudgetError(
            f"preparing the {prob.kernel.value} kernel of {n} samples needs about "
            f"{need / 2**30:.2f} GiB (budget {prob.budget / 2**30:.2f} GiB)"
            + ("; the pseudo-NTK needs c^2 times less" if prob.kernel is Kernel.EXACT else "")
        )
    K, J = prob.kernel_matrix()
    K.diagonal().add_(n * prob.lam)
    L = cholesky_(K).tril_()  # factored in the kernel's own storage
    del K
    r, _ = kernel_rows(prob.r, prob.kernel)
    alpha = solve_factored(L, r)
    coef = alpha.reshape(n, c).to(prob.r.dtype)
    jt_alpha = prob.pullback(coef, J)
    del J
    state = _state(prob, hashes or {}, start)
    return PreparedKernel(chol=L, alpha=alpha, jt_alpha=jt_alpha.detach(), **state)


def _state(prob: Problem, hashes: dict, start: float) -> dict:
    """The fields a prepared state shares in kernel and parameter space."""
    n, c = prob.r.shape
    return {
        "kernel": prob.kernel.value,
        "loss": prob.linearization.loss.value,
        "weight_decay": prob.lam,
        "n": n,
        "c": c,
        "residuals": prob.r.detach(),
        "around": flatten(prob.params).detach(),
        "anchor": prob.anchor,
        "hashes": hashes,
        "seconds": time.perf_counter() - start,
    }


def in_parameter_space(prob: Problem, options: NTKOptions) -> bool:
    """Whether to prepare in parameter space: asked for (``solver="param"``), or ``auto`` and
    the trained parameters are fewer than the kernel's rows (as :func:`choose_solver` decides
    for a scrub)."""
    if options.solver not in (Solver.PARAM, Solver.AUTO):
        return False
    if prob.kernel is Kernel.PSEUDO and options.solver is Solver.AUTO:
        return False
    return choose_solver(prob, options.solver, options.nystrom_rank) is Solver.PARAM


def _prepare_params(prob: Problem, hashes: dict, start: float) -> PreparedParams:
    """Accumulate ``J^T J`` and ``J^T r`` over D in one pass and factor ``J^T J + |D| lambda I``
    (:mod:`forgetbox.ntk.prepared_params`)."""
    n, _ = prob.r.shape
    G, b = gram_and_rhs(prob.f, prob.params, prob.x, prob.r, 0, n, prob.chunk)
    G.diagonal().add_(n * prob.lam)
    L = cholesky(G, "the parameter-space system")
    del G
    jt_alpha = solve_factored(L, b[:, None])[:, 0].to(prob.r.dtype)
    state = _state(prob, hashes, start)
    return PreparedParams(chol=L, alpha=b[:, None], jt_alpha=jt_alpha.detach(), **state)
