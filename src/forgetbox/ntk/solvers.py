"""Linear solvers of the NTK step: Cholesky for the dense kernel; conjugate gradients over the
matrix-free kernel operator, preconditioned with a Nystrom approximation."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .. import parallel
from ..functional import ModelFn, Params, unflatten
from ..progress import progress
from .cross import layer_cross_kernel
from .jacobian import jacobian, jvp_all, vjp_sum
from .options import JacobianMode


def cholesky(A: Tensor, what: str = "kernel matrix") -> Tensor:
    """Lower Cholesky factor of ``A``, with a clear error when ``A`` is not positive definite."""
    L, info = torch.linalg.cholesky_ex(A)
    if info.item() != 0:
        raise ValueError(
            f"{what} is not positive definite (ill-conditioned); increase weight_decay "
            "or use float64"
        )
    return L


CHOLESKY_BLOCK = 256  # columns per panel of the in-place factorization


def cholesky_(A: Tensor, what: str = "kernel matrix", block: int = CHOLESKY_BLOCK) -> Tensor:
    """Factor ``A`` ``(m, m)`` in place: its lower triangle becomes the lower Cholesky factor
    of the symmetric matrix held in that lower triangle; the strict upper triangle is neither
    read nor written (so it can keep the matrix for :func:`mirror_upper_`).

    Right-looking blocked Cholesky: each ``block``-column panel is factored, the rows below it
    solved against it, and the trailing lower triangle updated by matrix products. Beyond
    panel-sized scratch no second ``(m, m)`` matrix is allocated, where
    ``torch.linalg.cholesky`` returns a new one (measured: as fast as LAPACK's at m = 4,000,
    ``benchmarks/dense_memory.py``)."""
    m = A.shape[0]
    for k in range(0, m, block):
        e = min(k + block, m)
        diag = A[k:e, k:e]
        L = cholesky(diag, what)  # reads the lower triangle only
        _set_lower_(diag, L)
        if e == m:
            break
        panel = A[e:, k:e]
        panel.copy_(torch.linalg.solve_triangular(L.mT, panel, upper=True, left=False))
        for j in range(e, m, block):  # trailing update, lower triangle only
            je = min(j + block, m)
            rows = panel[j - e : je - e]
            _set_lower_(A[j:je, j:je], A[j:je, j:je] - rows @ rows.mT)
            if je < m:
                A[je:, j:je].addmm_(panel[je - e :], rows.mT, alpha=-1)
    return A


def _set_lower_(dst: Tensor, src: Tensor) -> None:
    """Copy ``src``'s lower triangle (diagonal included) into ``dst``; ``dst``'s strict upper
    triangle is kept."""
    dst.copy_(torch.where(torch.ones_like(dst, dtype=torch.bool).tril(), src, dst))


def mirror_upper_(A: Tensor, diagonal: Tensor, block: int = CHOLESKY_BLOCK) -> Tensor:
    """Rebuild the symmetric ``A`` in place from its strict upper triangle and ``diagonal``
    (undoing :func:`cholesky_`, which leaves the upper triangle alone)."""
    m = A.shape[0]
    for i in range(0, m, block):
        e = min(i + block, m)
        A[i:e, :i].copy_(A[:i, i:e].mT)
        d = A[i:e, i:e]
        upper = d.triu(1)
        d.copy_(upper + upper.mT)
        d.diagonal().copy_(diagonal[i:e])
    return A


def solve_factored(L: Tensor, b: Tensor, block: int = CHOLESKY_BLOCK) -> Tensor:
    """``(L L^T)^{-1} b`` from a lower Cholesky factor ``L`` ``(m, m)``, ``b`` ``(m, k)``; only
    ``L``'s lower triangle is read.

    Two triangular solves that read ``L`` where it lies (``torch.cholesky_solve`` first copies
    its factor, one more kernel-sized matrix). A factor that is a strided view (the retain block
    of a kernel) is solved by blocks, since ``torch.linalg.solve_triangular`` would copy it
    whole (measured: ``benchmarks/dense_memory.py``)."""
    if L.is_contiguous():
        y = torch.linalg.solve_triangular(L, b, upper=False)
        return torch.linalg.solve_triangular(L.mT, y, upper=True)
    m = L.shape[0]
    x = b.clone()
    starts = range(0, m, block)
    for i in starts:  # forward: L y = b
        e = min(i + block, m)
        if i:
            x[i:e] -= L[i:e, :i] @ x[:i]
        x[i:e] = torch.linalg.solve_triangular(L[i:e, i:e], x[i:e], upper=False)
    for i in reversed(starts):  # backward: L^T x = y
        e = min(i + block, m)
        if e < m:
            x[i:e] -= L[e:, i:e].mT @ x[e:]
        x[i:e] = torch.linalg.solve_triangular(L[i:e, i:e].mT, x[i:e], upper=True)
    return x


def cholesky_solve(A: Tensor, b: Tensor) -> Tensor:
    """``A^{-1} b`` for a symmetric positive definite ``A`` (one factor-sized copy of ``A``)."""
    return solve_factored(cholesky(A), b)


@dataclass
class KernelOperator:
    """Matrix-free ``v -> (J J^T + shift I) v`` over a data set, ``v`` of shape ``(n, c)``."""

    f: ModelFn
    params: Params
    x: Tensor
    shift: float
    chunk: int

    def __call__(self, v: Tensor) -> Tensor:
        """``(K + shift I) v`` for ``v`` ``(n, c)`` or ``(n, c, k)``: one jvp and one vjp pass."""
        g = vjp_sum(self.f, self.params, self.x, v, self.chunk)
        tangent = unflatten(g, self.params)
        return jvp_all(self.f, self.params, self.x, tangent, self.chunk) + self.shift * v


@dataclass
class NystromPreconditioner:
    """Approximate inverse of ``K + shift I`` from the kernel columns of m sampled inputs.

    With ``C = K[:, S]`` and ``W = K[S, S]``, ``K ~ C W^{-1} C^T`` and by Woodbury
    ``(C W^{-1} C^T + mu I)^{-1} v = (v - C (mu W + C^T C)^{-1} C^T v) / mu``.
    Building C costs one Jacobian pass over the data.
    """

    C: Tensor  # (n c, m c), float64
    chol: Tensor  # Cholesky of mu W + C^T C
    shift: float

    @classmethod
    def build(
        cls,
        f: ModelFn,
        params: Params,
        x: Tensor,
        shift: float,
        m: int,
        chunk: int,
        seed: int,
        *,
        jacobian: JacobianMode | str = JacobianMode.CONTRACTION,
        memory_budget: int | None = None,
    ) -> NystromPreconditioner:
        """The preconditioner from the kernel columns of ``m`` samples drawn with ``seed``,
        built per layer (:func:`~forgetbox.ntk.cross.layer_cross_kernel`) as ``jacobian``
        says where that applies, else from the samples' Jacobian rows."""
        n = len(x)
        gen = torch.Generator().manual_seed(seed)
        # with m c rows above the p parameters, W and C^T C are singular: at most p / c samples
        p = sum(t.numel() for t in params.values())
        c = f(params, x[:1]).shape[-1]
        m = max(1, min(m, p // c))
        S = torch.randperm(n, generator=gen)[: min(m, n)].sort().values
        built = layer_cross_kernel(
            f, params, x, x[S], jacobian=jacobian, memory_budget=memory_budget
        )
        C = built[0] if built is not None else cls._columns(f, params, x, S, chunk)
        W = C.reshape(n, c, -1)[S].reshape(len(S) * c, -1)
        W = 0.5 * (W + W.T)
        inner = shift * W + C.T @ C
        inner.diagonal().add_(1e-10 * inner.diagonal().mean())
        return cls(C, cholesky(inner, "the Nystrom preconditioner"), shift)

    @staticmethod
    def _columns(f: ModelFn, params: Params, x: Tensor, S: Tensor, chunk: int) -> Tensor:
        """``K[:, S]`` (float64) from the Jacobian rows of every chunk and of the samples S."""
        n = len(x)
        JS = jacobian(f, params, x[S]).detach()
        c = JS.shape[1]
        JS = JS.reshape(len(S) * c, -1)
        mc = JS.shape[0]

        def rows(i: int, j: int) -> Tensor:  # (samples, c, m c): C's rows of these samples
            return (jacobian(f, params, x[i:j]).detach().reshape((j - i) * c, -1) @ JS.T).view(
                j - i, c, mc
            )

        return parallel.rows_of(rows, n, chunk, lambda: rows(0, 1)).reshape(n * c, mc).double()

    def __call__(self, v: Tensor) -> Tensor:
        """The preconditioner applied to ``v`` (the Nystrom approximation's inverse, Woodbury)."""
        flat = v.reshape(-1, 1).double()
        inner = solve_factored(self.chol, self.C.T @ flat)
        return ((flat - self.C @ inner) / self.shift).reshape(v.shape).to(v.dtype)


def conjugate_gradient(
    op,
    b: Tensor,
    *,
    precond=None,
    tol: float = 1e-8,
    max_iter: int = 500,
) -> tuple[Tensor, int, float]:
    """Preconditioned CG for ``op(x) = b`` (symmetric positive definite ``op``).

    Stops when ``||b - op(x)|| <= tol ||b||``. Returns ``(x, iterations, relative residual)``.
    """
    x = torch.zeros_like(b)
    r = b.clone()
    bnorm = b.norm().item()
    if bnorm == 0:
        return x, 0, 0.0
    z = precond(r) if precond else r
    p = z.clone()
    rz = (r * z).sum()
    it, rel = 0, 1.0
    bar = progress(range(1, max_iter + 1), desc="conjugate gradients")
    for it in bar:  # noqa: B007
        Ap = op(p)
        alpha = rz / (p * Ap).sum()
        x = x + alpha * p
        r = r - alpha * Ap
        rel = r.norm().item() / bnorm
        bar.set_postfix(residual=f"{rel:.1e}", refresh=False)
        if rel <= tol:
            break
        z = precond(r) if precond else r
        rz_new = (r * z).sum()
        p = z + (rz_new / rz) * p
        rz = rz_new
    bar.close()
    return x, it, rel
