"""The NTK scrubbing step: delta_w = u_{D_r} - u_D (Prop. 2, eq. 10, supplement A).

Every direction is ``J_D^T coef`` for a coefficient vector over D: the solvers below only
produce coefficients, and one vector-Jacobian pass over the data turns them into a p-vector.
See :mod:`forgetbox.ntk` for the definitions and the sign convention.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..functional import flatten
from ..inputs import head
from .kernel import HeldJacobian, kernel_rows, shifted
from .memory import MemoryBudgetError, cg_memory_estimate, dense_memory_estimate, itemsize
from .options import Form, Kernel, Linearization, NTKOptions, Solver
from .param_space import param_memory_estimate, param_space_step
from .precision import full_precision
from .problem import Problem, problem_for
from .solvers import (
    KernelOperator,
    NystromPreconditioner,
    cholesky_,
    cholesky_solve,
    conjugate_gradient,
    mirror_upper_,
    solve_factored,
)


@dataclass(frozen=True)
class SolveReport:
    """What a solve did: solver, CG iterations and relative residual, time, memory estimate."""

    solver: str
    iterations: int = 0
    relative_residual: float = 0.0
    converged: bool = True
    seconds: float = 0.0
    memory_estimate_bytes: int = 0
    preconditioner: str = "none"
    kernel_build: dict | None = None  # the dense kernel's build (ntk.structured.build_summary)


@dataclass(frozen=True)
class NTKDirection:
    """Result of the NTK step: ``delta`` = u_{D_r} - u_D (flat, ``model.parameters()`` order),
    ``u_retain`` = u_{D_r}, and the point ``around`` it was linearized at."""

    delta: Tensor
    u_retain: Tensor
    around: Tensor
    reports: tuple[SolveReport, ...] = ()
    seconds: float = 0.0
    extras: dict = field(default_factory=dict)


def choose_solver(prob: Problem, solver: Solver | str, nystrom_rank: int) -> Solver:
    """The solver to use under the problem's memory budget (AUTO: dense when it fits)."""
    solver = Solver(solver)
    n, c = prob.r.shape
    p = prob.num_params
    item = itemsize(prob.r.dtype)
    dense = dense_memory_estimate(n * prob.rows, p, item)
    if prob.kernel is Kernel.PSEUDO:
        if solver in (Solver.CG, Solver.PARAM):
            raise ValueError("the pseudo-NTK uses the dense solver (its kernel is only n x n)")
        if dense > prob.budget:
            raise MemoryBudgetError(
                f"the pseudo-NTK for {n} samples needs about {dense / 2**30:.2f} GiB "
                f"(budget {prob.budget / 2**30:.2f} GiB)"
            )
        return Solver.DENSE
    cg = cg_memory_estimate(n, c, p, item, prob.chunk, nystrom_rank)
    param = param_memory_estimate(p, c, prob.chunk, item)
    if solver is Solver.PARAM:
        if param <= prob.budget:
            return solver
        raise MemoryBudgetError(
            f"the parameter-space solver needs about {param / 2**30:.2f} GiB for {p} trained "
            f"parameters (budget {prob.budget / 2**30:.2f} GiB)"
        )
    if solver is Solver.AUTO:
        if p < n * c and param <= prob.budget:
            return Solver.PARAM
        if dense <= prob.budget:
            return Solver.DENSE
        if cg <= prob.budget:
            return Solver.CG
    elif solver is Solver.DENSE:
        if dense <= prob.budget:
            return solver
        raise MemoryBudgetError(
            f"the dense solver needs about {dense / 2**30:.2f} GiB for {n} samples x {c} classes "
            f"(budget {prob.budget / 2**30:.2f} GiB); use solver='cg' (matrix-free)"
        )
    elif cg <= prob.budget:
        return solver
    raise MemoryBudgetError(
        f"no solver fits the memory budget of {prob.budget / 2**30:.3f} GiB: dense needs "
        f"{dense / 2**30:.2f} GiB, matrix-free CG {cg / 2**30:.3f} GiB"
    )


def dense_coefficients(
    prob: Problem, form: Form
) -> tuple[Tensor, Tensor, SolveReport, HeldJacobian | None]:
    """Coefficients of delta_w and of u_{D_r} from the dense kernel (Cholesky, float64)."""
    t = time.perf_counter()
    n, c = prob.r.shape
    nr = prob.n_retain
    K, J, build = prob.kernel_build()
    r, rows = kernel_rows(prob.r, prob.kernel)
    m_r = nr * rows
    solve = schur_coefficients if form is Form.SCHUR else difference_coefficients
    delta_coef, alpha_r = solve(K, r, m_r, n_total=n, n_retain=nr, lam=prob.lam)
    del K
    report = SolveReport(
        "dense",
        seconds=time.perf_counter() - t,
        memory_estimate_bytes=dense_memory_estimate(n * rows, prob.num_params),
        kernel_build=build,
    )
    return delta_coef.reshape(n, c), alpha_r.reshape(nr, c), report, J


def difference_coefficients(
    K: Tensor, r: Tensor, ncr: int, *, n_total: int, n_retain: int, lam: float
) -> tuple[Tensor, Tensor]:
    """``(coef, alpha_r)`` with ``alpha_r = (K_rr + |D_r| lambda I)^{-1} r_r`` and ``coef =
    (K + |D| lambda I)^{-1} r`` less ``alpha_r`` on the retain rows (``delta_w = J_D^T coef``).

    ``K`` (float64, retain rows first, ``ncr`` of them) is consumed: both systems are factored
    in its own storage (:func:`~forgetbox.ntk.solvers.cholesky_`; the retain block is rebuilt
    from the upper triangle in between), so no second kernel-sized matrix is allocated."""
    diagonal = K.diagonal().clone()
    retain = K[:ncr, :ncr]
    retain.diagonal().add_(n_retain * lam)
    alpha_r = solve_factored(cholesky_(retain), r[:ncr])
    mirror_upper_(retain, diagonal[:ncr])
    K.diagonal().add_(n_total * lam)
    coef = solve_factored(cholesky_(K), r)
    coef[:ncr] -= alpha_r
    return coef, alpha_r


def schur_coefficients(
    K: Tensor, r: Tensor, ncr: int, *, n_total: int, n_retain: int, lam: float
) -> tuple[Tensor, Tensor]:
    """Coefficients of eq. 10 (Schur-complement form) so that ``delta_w = J_D^T coef``, and
    ``alpha_r`` as in :func:`difference_coefficients`.

    ``K`` is ``J_D J_D^T`` (float64, retain rows first, ``ncr`` of them; consumed as in
    :func:`difference_coefficients`), ``r`` the stacked residuals (one or more columns). Only
    solves with the retain block ``B_rr = K_rr + |D| lambda I`` (and ``A = K_rr + |D_r| lambda
    I``) and the small ``|D_f| c`` system ``M^{-1} = B_ff - K_fr B_rr^{-1} K_rf`` are used:
    ``coef_f = M V`` with ``V = r_f - K_fr B_rr^{-1} r_r`` and ``coef_r = -B_rr^{-1} K_rf M V +
    (B_rr^{-1} - A^{-1}) r_r``.
    """
    r = r.double()
    k = r.shape[1]
    Krr, Krf, Kff = K[:ncr, :ncr], K[:ncr, ncr:], K[ncr:, ncr:]
    rr, rf = r[:ncr], r[ncr:]
    diagonal = Krr.diagonal().clone()
    Krr.diagonal().add_(n_total * lam)
    sol = solve_factored(cholesky_(Krr), torch.cat([rr, Krf], dim=1))
    Binv_rr, Binv_Krf = sol[:, :k], sol[:, k:]
    S = shifted(Kff, n_total * lam) - Krf.T @ Binv_Krf
    V = rf - Krf.T @ Binv_rr
    MV = cholesky_solve(0.5 * (S + S.T), V)
    mirror_upper_(Krr, diagonal + n_retain * lam)
    alpha_r = solve_factored(cholesky_(Krr), rr)
    coef_r = -Binv_Krf @ MV + Binv_rr - alpha_r
    return torch.cat([coef_r, MV]), alpha_r


def cg_coefficients(
    prob: Problem, options: NTKOptions, tol: float, seed: int
) -> tuple[Tensor, Tensor, tuple[SolveReport, ...]]:
    """Coefficients of delta_w and of u_{D_r} by preconditioned CG, matrix-free."""
    n, c = prob.r.shape
    nr = prob.n_retain
    rank = options.nystrom_rank
    reports, sols = [], []
    for x, r, shift in (
        (prob.x, prob.r, n * prob.lam),
        (head(prob.x, nr), prob.r[:nr], nr * prob.lam),
    ):
        t = time.perf_counter()
        op = KernelOperator(prob.f, prob.params, x, shift, prob.chunk)
        pre, name = None, "none"
        if rank > 0 and shift > 0:
            pre = NystromPreconditioner.build(
                prob.f,
                prob.params,
                x,
                shift,
                rank,
                prob.chunk,
                seed,
                jacobian=prob.jacobian,
                memory_budget=prob.budget,
            )
            name = f"nystrom(m={min(rank, len(x))})"
        sol, it, rel = conjugate_gradient(op, r, precond=pre, tol=tol, max_iter=options.cg_max_iter)
        mem = cg_memory_estimate(len(x), c, prob.num_params, itemsize(r.dtype), prob.chunk, rank)
        reports.append(SolveReport("cg", it, rel, rel <= tol, time.perf_counter() - t, mem, name))
        sols.append(sol)
    alpha_d, alpha_r = sols
    coef = alpha_d.clone()
    coef[:nr] -= alpha_r
    return coef, alpha_r, tuple(reports)


def _solve(prob: Problem, options: NTKOptions, seed: int, chosen: Solver):
    """Coefficients by the chosen kernel solver: ``(coef, alpha_r, reports, held J, solver)``."""
    if chosen is Solver.DENSE:
        coef, alpha_r, report, J = dense_coefficients(prob, options.form)
        return coef, alpha_r, (report,), J, chosen
    if options.form is Form.SCHUR:
        raise ValueError("the Schur form is implemented for the dense solver only")
    default_tol = 1e-10 if prob.r.dtype == torch.float64 else 1e-5
    tol = options.cg_tol if options.cg_tol is not None else default_tol
    coef, alpha_r, reports = cg_coefficients(prob, options, tol, seed)
    return coef, alpha_r, reports, None, chosen


@full_precision()
def ntk_direction(
    model: nn.Module,
    retain,
    forget,
    linearization: Linearization | None = None,
    *,
    pretrained=None,
    point=None,
    seed: int = 0,
    options: NTKOptions | None = None,
) -> NTKDirection:
    """The NTK scrubbing step with everything it used (see :mod:`forgetbox.ntk`).

    ``retain``/``forget``: ``(inputs, labels)`` pairs or datasets. ``linearization``
    (:class:`Linearization`, default its defaults): the weight decay, loss, point, anchor and
    precision. ``pretrained``: w0 (module, dict or flat vector), needed when the linearization
    is anchored or taken at w0. Anchored, the step solves the stated objective exactly for the
    model linearized at w_bar: ``u_S = -(w_bar - w0) - J^T Theta_S^{-1} (r_S - J_S (w_bar -
    w0))``, which only replaces r by ``r - J (w_bar - w0)`` (one jvp pass); unanchored (the
    authors' code) the anchor term is dropped. ``point``: an explicit linearization point
    instead of ``linearization.around`` (module, dict or flat vector). ``seed``: the Nystrom
    sample. ``options``: :class:`NTKOptions` (solver, kernel, form, budget, CG knobs).
    """
    start = time.perf_counter()
    opts = options or NTKOptions()
    prob = problem_for(
        model,
        retain,
        forget,
        linearization or Linearization(),
        pretrained=pretrained,
        point=point,
        options=opts,
    )
    nr = prob.n_retain
    chosen = choose_solver(prob, opts.solver, opts.nystrom_rank)
    if chosen is Solver.PARAM:
        if opts.form is Form.SCHUR:
            raise ValueError("the Schur form is implemented for the dense solver only")
        t = time.perf_counter()
        delta, u_retain = param_space_step(prob)
        p, c = prob.num_params, prob.r.shape[1]
        mem = param_memory_estimate(p, c, prob.chunk, itemsize(prob.r.dtype))
        reports = (
            SolveReport("param", seconds=time.perf_counter() - t, memory_estimate_bytes=mem),
        )
    else:
        coef, alpha_r, reports, J, chosen = _solve(prob, opts, seed, chosen)
        # delta_w = J_D^T coef and u_{D_r} = -J_r^T alpha_r in one pass over D
        both = torch.zeros(2, *coef.shape, dtype=prob.r.dtype, device=coef.device)
        both[0] = coef
        both[1, :nr] = -alpha_r
        delta, u_retain = prob.pullback(both, J)
        del J
    around_flat = flatten(prob.params)
    if prob.anchor is not None:  # anchored: w_lin(S) = w0 + J^T-part (the -(w_bar - w0) cancels)
        u_retain = u_retain - (around_flat - prob.anchor)
    if not torch.isfinite(delta).all():
        raise ValueError("the NTK direction is not finite (ill-conditioned kernel)")
    extras = {
        "solver": chosen.value,
        "form": opts.form.value,
        "kernel": prob.kernel.value,
        "jacobian": opts.jacobian.value,
        "n_retain": nr,
        "n_forget": len(prob.x) - nr,
    }
    return NTKDirection(
        delta.detach(), u_retain.detach(), around_flat, reports, time.perf_counter() - start, extras
    )


def scrub_direction(
    model: nn.Module,
    retain,
    forget,
    linearization: Linearization | None = None,
    *,
    pretrained=None,
    point=None,
    seed: int = 0,
    options: NTKOptions | None = None,
) -> Tensor:
    """The flat scrubbing direction ``delta_w = u_{D_r} - u_D`` (before trapezium rescaling).

    Shapes: ``retain = (x_r, y_r)`` with ``x_r`` ``(N_r, ...)``, ``forget`` likewise; the result
    has length p in ``model.parameters()`` order. Arguments: :func:`ntk_direction`.
    """
    return ntk_direction(
        model,
        retain,
        forget,
        linearization,
        pretrained=pretrained,
        point=point,
        seed=seed,
        options=options,
    ).delta
