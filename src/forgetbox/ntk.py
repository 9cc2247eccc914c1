"""The NTK scrubbing engine: linearized forgetting (Prop. 2, eq. 10, supplement A).

Definitions (all shapes for a set S of |S| samples and c classes, p parameters):

- Fine-tuning minimises ``(1/|S|) sum_i l_i + (lambda/2) ||w - w0||^2``.
- Outputs are linearized at a point w_bar (default: the trained weights w(D), which the
  supplement found better; ``around=w0`` is the paper's main-text choice):
  ``f(w) ~ f(w_bar) + J (w - w_bar)`` with ``J_S`` the stacked Jacobian ``(|S| c, p)``, rows
  ordered sample-major (row ``i*c + k`` is output k of sample i).
- Residual ``r_S`` ``(|S|, c)``: ``softmax(f(x)) - onehot(y)`` for cross-entropy (the supplement
  with the loss Hessian replaced by the identity), ``f(x) - y`` (one-hot y) for MSE.
- Kernel ``Theta_S = J_S J_S^T + |S| lambda I``; linearized update
  ``u_S = -J_S^T Theta_S^{-1} r_S`` (a vector of length p).
- Scrubbing direction ``delta_w = u_{D_r} - u_D``. With a linear model, MSE and ``w_bar = w0``,
  ``w0 + u_S`` is the exact ridge solution on S, so ``w(D) + delta_w = w(D_r)`` exactly.

Every direction is computed as ``J_D^T alpha`` for a coefficient vector alpha over D, so the
p-dimensional work is one vector-Jacobian pass; the coefficient solves use either

- ``Solver.DENSE``: the kernel built from Jacobian blocks, one parameter group at a time so the
  whole Jacobian is never held, accumulated symmetrically and solved by Cholesky in float64; or
- ``Solver.CG``: matrix-free kernel-vector products ``J (J^T v)`` (vjp + jvp over data batches),
  preconditioned conjugate gradients with a Nystrom preconditioner built from a random subset of
  samples; neither J nor the kernel is ever held.

The paper's Schur-complement form (eq. 10) is :func:`schur_coefficients`; it agrees with the
difference form (tested). Note on signs: the paper writes ``w_lin(D) = grad f0^T Theta^{-1}
(f0 - Y) + w0``, whereas gradient flow gives ``-grad f0^T Theta^{-1} (f0 - Y)``; its V is
therefore minus ours: here ``V = r_f - Theta_fr Theta_rr^{-1} r_r`` and
``delta_w = P J_f^T M V + J_r^T (B_rr^{-1} - A^{-1}) r_r``, where the second term corrects for the
different weight-decay scales |D| lambda and |D_r| lambda of the two kernels (zero when lambda=0).
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import jacrev, jvp, vjp, vmap

from .data import as_tensors
from .functional import (
    ModelFn,
    Params,
    assert_finite,
    flatten,
    model_function,
    parameters_of,
    unflatten,
)
from .progress import progress


class Solver(StrEnum):
    """How the kernel systems are solved.

    AUTO picks DENSE when the kernel fits the memory budget, else CG.
    DENSE: exact (Cholesky), cost p (Nc)^2 to build the kernel; best for |D| c up to ~10^4.
    CG: matrix-free, memory O(p + Nc), cost (iterations) x (vjp + jvp) over the data.
    """

    AUTO = "auto"
    DENSE = "dense"
    CG = "cg"


class Loss(StrEnum):
    CE = "ce"
    MSE = "mse"


class Kernel(StrEnum):
    """Which kernel the solves use.

    EXACT: the empirical NTK ``J J^T``, ``(n c, n c)``.
    PSEUDO: the pseudo-NTK of Mohamadi & Sutherland (2022): ``g g^T / c`` with ``g`` the
    gradient of the sum of the c logits, ``(n, n)``, used as that kernel times the identity over
    classes. It costs c times fewer Jacobian rows and c^2 less kernel work and memory; it is
    exact when the NTK is the identity over classes (a linear model, the last layer's share).
    The direction is still assembled with the full ``J^T`` (one vjp pass).
    """

    EXACT = "exact"
    PSEUDO = "pseudo"


class MemoryBudgetError(MemoryError):
    """No solver fits in the memory budget."""


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


# ----------------------------------------------------------------------------- basics


@contextmanager
def full_precision():
    """Turn TF32 off (cuDNN convolutions and CUDA matrix products) inside the engine.

    cuDNN convolutions default to TF32 on Ampere and later GPUs: Jacobian entries then carry
    ~1e-3 relative error, which the kernel's conditioning amplifies (measured on an H100: 1-8 %
    in delta_w). The previous settings are restored on exit. No effect on the CPU.
    """
    cudnn, matmul = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cudnn.allow_tf32 = cudnn
        torch.backends.cuda.matmul.allow_tf32 = matmul


def residuals(logits: Tensor, labels: Tensor, loss: Loss | str = Loss.CE) -> Tensor:
    """Residual ``(n, c)``: softmax(logits) - onehot(y) for CE, logits - onehot(y) for MSE."""
    onehot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    if Loss(loss) is Loss.CE:
        return torch.softmax(logits, -1) - onehot
    return logits - onehot


def _default_chunk(
    p: int, c: int, dtype: torch.dtype, budget: int, device: torch.device | str = "cpu"
) -> int:
    """Samples per Jacobian chunk so one chunk (chunk * c * p values) uses <= budget/8, at most
    32 on a CPU (measured: All-CNN x0.4, |D| = 500, dense: 23.7 s with chunks of 32 against
    32.2 s with 256; larger vmap batches are less cache-friendly) and 256 on a GPU."""
    per_sample = c * p * torch.finfo(dtype).bits // 8
    cap = 256 if torch.device(device).type == "cuda" else 32
    return int(max(1, min(cap, (budget // 8) // max(per_sample, 1))))


def default_memory_budget(device: torch.device | str | None = None) -> int:
    """Half of the machine's physical memory (or of the GPU's free memory, counting what
    PyTorch's caching allocator holds but does not use as free), in bytes."""
    if device is not None and torch.device(device).type == "cuda":
        dev = torch.device(device)
        free, _ = torch.cuda.mem_get_info(dev)
        idle = torch.cuda.memory_reserved(dev) - torch.cuda.memory_allocated(dev)
        return int((free + idle) * 0.5)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") * 0.5)
    except (ValueError, OSError, AttributeError):
        return 8 << 30


def _split(x: Tensor, size: int):
    for i in range(0, len(x), size):
        yield x[i : i + size]


def _jacobian_blocks(
    f: ModelFn, params: Mapping[str, Tensor], x: Tensor, names: Sequence[str], pseudo: bool
) -> dict[str, Tensor]:
    """Per-parameter Jacobian blocks ``{name: (n, c or 1, numel)}`` from one vmap(jacrev)."""
    sub = {k: params[k] for k in names}
    rest = {k: v for k, v in params.items() if k not in sub}

    def single(s: Params, x1: Tensor) -> Tensor:
        out = f({**rest, **s}, x1.unsqueeze(0)).squeeze(0)
        return out.sum(-1, keepdim=True) / math.sqrt(out.shape[-1]) if pseudo else out

    jac = vmap(jacrev(single), in_dims=(None, 0))(sub, x)
    return {k: jac[k].detach().reshape(len(x), jac[k].shape[1], -1) for k in names}


def jacobian(
    f: ModelFn,
    params: Mapping[str, Tensor],
    x: Tensor,
    names: Sequence[str] | None = None,
    *,
    pseudo: bool = False,
) -> Tensor:
    """Jacobian of all outputs w.r.t. the parameters ``names`` (default all), ``(n, c, p_sub)``.

    With ``pseudo=True`` the single output ``sum_k f_k / sqrt(c)`` instead, ``(n, 1, p_sub)``
    (its Gram matrix is the pseudo-NTK). One ``vmap(jacrev(...))`` call over the batch: no
    Python loop over samples or classes.
    """
    names = list(params) if names is None else list(names)
    blocks = _jacobian_blocks(f, params, x, names, pseudo)
    return torch.cat([blocks[k] for k in names], dim=2)


def vjp_sum(
    f: ModelFn,
    params: Params,
    x: Tensor,
    coeffs: Tensor,
    chunk: int,
    names: Sequence[str] | None = None,
) -> Tensor:
    """``J^T alpha`` as a flat vector, for ``alpha`` of shape ``(n, c)``, over data chunks.

    ``alpha`` of shape ``(k, n, c)`` gives ``(k, p)``: k products from one forward pass per
    chunk (the pullback is vmapped over k). ``names``: only these parameters' columns (the
    backward pass then stops at the earliest of them).
    """
    dtype = next(iter(params.values())).dtype
    names = list(params) if names is None else list(names)
    sub = {k: params[k] for k in names}
    rest = {k: v for k, v in params.items() if k not in sub}
    batched = coeffs.ndim == 3
    total = None
    for i, xb in enumerate(_split(x, chunk)):
        cb = coeffs[..., i * chunk : i * chunk + len(xb), :].to(dtype)
        _, pullback = vjp(lambda s, xb=xb: f({**rest, **s}, xb), sub)
        if batched:
            grads = vmap(pullback)(cb)[0]
            g = torch.cat([grads[k].reshape(len(cb), -1) for k in names], dim=1)
        else:
            g = flatten(pullback(cb)[0])
        total = g if total is None else total + g
    return total


def jvp_all(f: ModelFn, params: Params, x: Tensor, tangent: Params, chunk: int) -> Tensor:
    """``J v`` of shape ``(n, c)`` for a tangent parameter dict ``v``, over data chunks."""
    outs = [jvp(lambda p, xb=xb: f(p, xb), (params,), (tangent,))[1] for xb in _split(x, chunk)]
    return torch.cat(outs)


_MAX_GROUPS = 64  # more Jacobian recomputations than this: use the matrix-free solver
Column = tuple[str, int, int]  # a parameter's flat elements [lo, hi)


def _param_groups(params: Mapping[str, Tensor], max_elems: int) -> list[list[Column]]:
    """Parameter columns in groups of at most ``max_elems``: consecutive whole tensors (only a
    tensor larger than that is split, its Jacobian then recomputed once per piece), after which
    later groups of whole tensors that fit are merged into the first one.

    Consecutive groups keep each group's backward pass short; the first group's pass reaches
    the input anyway, so a later group moved into it costs only its own weight gradients, not
    another forward and backward pass (All-CNN x0.4 at a quarter budget: 6 -> 5 groups).
    Splitting tensors to fill groups was measured slower (each split tensor's per-sample
    gradients are computed twice).
    """
    groups: list[list[Column]] = []
    current: list[Column] = []
    size = 0
    for name, t in params.items():
        pieces = [(lo, min(lo + max_elems, t.numel())) for lo in range(0, t.numel(), max_elems)]
        for lo, hi in pieces:
            if current and size + hi - lo > max_elems:
                groups.append(current)
                current, size = [], 0
            current.append((name, lo, hi))
            size += hi - lo
    if current:
        groups.append(current)

    def width(g: list[Column]) -> int:
        return sum(hi - lo for _, lo, hi in g)

    def whole(g: list[Column]) -> bool:  # a piece would recompute its whole tensor's Jacobian
        return all(lo == 0 and hi == params[k].numel() for k, lo, hi in g)

    for g in sorted(groups[1:], key=width):
        if whole(g) and width(groups[0]) + width(g) <= max_elems:
            groups[0] = groups[0] + g
            groups.remove(g)
    return groups


def _group_jacobian(
    f: ModelFn, params: Params, x: Tensor, group: Sequence[Column], pseudo: bool, out: Tensor
) -> None:
    """Write the Jacobian columns of ``group`` for the samples ``x`` into ``out`` (n, c, width):
    no concatenation (it cost ~15% of the Jacobian time on a CPU)."""
    blocks = _jacobian_blocks(f, params, x, list(dict.fromkeys(k for k, _, _ in group)), pseudo)
    start = 0
    for name, lo, hi in group:
        out[:, :, start : start + hi - lo] = blocks[name][:, :, lo:hi]
        start += hi - lo


def _sym_accumulate(K: Tensor, J: Tensor, block: int = 256) -> None:
    """K += J J^T using only the upper block triangle, then mirrored: about half the flops when
    ``block`` is small next to the row count (measured, 2,500 x 255k float32 on 2 cores:
    13.9 s with blocks of 2,048, 9.1 s with 256, 8.9 s with 128; 16.3 s for the full product)."""
    m = J.shape[0]
    for i in range(0, m, block):
        rows = J[i : i + block]
        prod = (rows @ J[i:].T).to(K.dtype)
        K[i : i + block, i:] += prod
        if i + block < m:
            K[i + block :, i : i + block] += prod[:, block:].T


def kernel_matrix(f: ModelFn, params: Params, x: Tensor, **options: Any) -> Tensor:
    """Empirical NTK ``J J^T`` of shape ``(n c, n c)`` (sample-major), without holding J; with
    ``kernel="pseudo"`` the pseudo-NTK ``(n, n)`` (see :class:`Kernel`). ``options`` and the
    memory plan: :func:`kernel_and_jacobian`."""
    return kernel_and_jacobian(f, params, x, **options)[0]


@dataclass(frozen=True)
class HeldJacobian:
    """Jacobian columns still in memory after the kernel was built: ``J`` ``(n c, width)`` for
    the parameter ``columns`` (the group holding the first parameter), or all of them when the
    budget let the Jacobian be built in one piece."""

    columns: tuple[Column, ...]
    J: Tensor

    def whole(self, params: Mapping[str, Tensor]) -> dict[str, int]:
        """Names of the tensors held whole, with their offsets in ``J``'s columns."""
        out, start = {}, 0
        for name, lo, hi in self.columns:
            if lo == 0 and hi == params[name].numel():
                out[name] = start
            start += hi - lo
        return out


def kernel_and_jacobian(
    f: ModelFn,
    params: Params,
    x: Tensor,
    *,
    memory_budget: int | None = None,
    chunk: int | None = None,
    accumulate_dtype: torch.dtype = torch.float64,
    kernel: Kernel | str = Kernel.EXACT,
) -> tuple[Tensor, HeldJacobian]:
    """The kernel of :func:`kernel_matrix`, and the Jacobian columns of the last group built
    (:class:`HeldJacobian`; all of J when it fit in one piece): ``J^T alpha`` over them is a
    matrix product, and only the other columns need a vjp pass over the data.

    Parameter columns are split into groups whose Jacobian over all n samples fits in the
    budget (see :func:`_param_groups`; at most ``_MAX_GROUPS`` groups, beyond which the
    matrix-free solver is the better choice). Groups are built from the last
    parameters to the first, so the group left in memory holds the first layers': the vjp pass
    for the rest stops before them, and on image models they are the costliest to
    differentiate (full resolution). Each group's Jacobian is built in sample chunks (``chunk``
    samples, or by default as many as fit the budget for that group's width, at most 32 on a
    CPU) and its Gram matrix accumulated (upper block triangle only) into an
    ``accumulate_dtype`` kernel.
    """
    budget = memory_budget or default_memory_budget(x.device)
    pseudo = Kernel(kernel) is Kernel.PSEUDO
    n = len(x)
    with torch.no_grad():
        c = 1 if pseudo else f(params, x[:1]).shape[-1]
    dtype = next(iter(params.values())).dtype
    itemsize = torch.finfo(dtype).bits // 8
    kernel_bytes = (n * c) ** 2 * torch.finfo(accumulate_dtype).bits // 8
    # the kernel, one parameter group's Jacobian over all samples, and one sample chunk's
    # Jacobian (with its autograd intermediates) share the budget
    room = budget - 2 * kernel_bytes - budget // 4
    max_elems = room // (n * c * itemsize) if room > 0 else 0
    p = sum(t.numel() for t in params.values())
    least = -(-p // _MAX_GROUPS)
    if max_elems < least:
        need = (2 * kernel_bytes + n * c * itemsize * least) * 4 // 3
        raise MemoryBudgetError(
            f"dense kernel for {n} samples x {c} outputs needs a budget of at least "
            f"{need / 2**30:.2f} GiB (given {budget / 2**30:.2f} GiB); use solver='cg' "
            "(matrix-free)"
        )
    K = torch.zeros(n * c, n * c, dtype=accumulate_dtype, device=x.device)
    groups = _param_groups(params, max_elems)
    widths = [sum(hi - lo for _, lo, hi in g) for g in groups]
    buffer = torch.empty(n * c * max(widths), dtype=dtype, device=x.device)  # reused by groups
    for group, width in progress(
        list(zip(groups, widths, strict=True))[::-1],
        desc=f"NTK kernel ({n * c} rows)",
        total=len(groups),
    ):
        # a chunk holds the Jacobian of the group's (whole) tensors: a narrow group allows a
        # larger chunk
        touched = sum(params[k].numel() for k in dict.fromkeys(k for k, _, _ in group))
        step = chunk or _default_chunk(touched, c, dtype, budget // 2, x.device)
        J = buffer[: n * c * width].view(n, c, width)
        for i in range(0, n, step):
            _group_jacobian(f, params, x[i : i + step], group, pseudo, J[i : i + step])
        _sym_accumulate(K, J.view(n * c, width))
    return K, HeldJacobian(tuple(groups[0]), J.view(n * c, widths[0]))


# ----------------------------------------------------------------------------- solvers


def cholesky(A: Tensor, what: str = "kernel matrix") -> Tensor:
    """Lower Cholesky factor of ``A``, with a clear error when ``A`` is not positive definite."""
    L, info = torch.linalg.cholesky_ex(A)
    if info.item() != 0:
        raise ValueError(
            f"{what} is not positive definite (ill-conditioned); increase weight_decay "
            "or use float64"
        )
    return L


def _cholesky_solve(A: Tensor, b: Tensor) -> Tensor:
    return torch.cholesky_solve(b, cholesky(A))


@dataclass
class KernelOperator:
    """Matrix-free ``v -> (J J^T + shift I) v`` over a data set, ``v`` of shape ``(n, c)``."""

    f: ModelFn
    params: Params
    x: Tensor
    shift: float
    chunk: int

    def __call__(self, v: Tensor) -> Tensor:
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
        cls, f: ModelFn, params: Params, x: Tensor, shift: float, m: int, chunk: int, seed: int
    ) -> NystromPreconditioner:
        n = len(x)
        gen = torch.Generator().manual_seed(seed)
        S = torch.randperm(n, generator=gen)[: min(m, n)].sort().values
        JS = jacobian(f, params, x[S]).detach()
        c = JS.shape[1]
        JS = JS.reshape(len(S) * c, -1)
        C = torch.cat(
            [
                (jacobian(f, params, xb).detach().reshape(len(xb) * c, -1) @ JS.T)
                for xb in _split(x, chunk)
            ]
        ).double()
        W = C.reshape(n, c, -1)[S].reshape(len(S) * c, -1)
        W = 0.5 * (W + W.T)
        inner = shift * W + C.T @ C
        inner.diagonal().add_(1e-10 * inner.diagonal().mean())
        return cls(C, cholesky(inner, "the Nystrom preconditioner"), shift)

    def __call__(self, v: Tensor) -> Tensor:
        flat = v.reshape(-1, 1).double()
        inner = torch.cholesky_solve(self.C.T @ flat, self.chol)
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


# ----------------------------------------------------------------------------- the NTK step


@dataclass(frozen=True)
class _Problem:
    f: ModelFn
    params: Params
    x: Tensor  # D = retain then forget
    r: Tensor  # residuals on D, (n, c)
    n_retain: int
    lam: float
    chunk: int
    budget: int
    anchor: Tensor | None = None  # flat w0 when the linearization is anchored
    kernel: Kernel = Kernel.EXACT
    chunk_option: int | None = None  # the caller's chunk; None lets the kernel build pick

    @property
    def rows(self) -> int:
        """Kernel rows per sample: c (exact) or 1 (pseudo-NTK)."""
        return 1 if self.kernel is Kernel.PSEUDO else self.r.shape[1]

    def kernel_matrix(self) -> tuple[Tensor, HeldJacobian | None]:
        """The problem's kernel over all of D (float64, ``(n rows, n rows)``), and the exact
        Jacobian columns left in memory (see :func:`kernel_and_jacobian`; never for the
        pseudo-NTK, whose Jacobian is not the one ``delta_w`` needs)."""
        K, J = kernel_and_jacobian(
            self.f,
            self.params,
            self.x,
            memory_budget=self.budget,
            chunk=self.chunk_option,
            kernel=self.kernel,
        )
        return K, (J if self.kernel is Kernel.EXACT else None)

    def pullback(self, coef: Tensor, held: HeldJacobian | None) -> Tensor:
        """``J_D^T coef`` for ``coef`` ``(n, c)`` (or ``(k, n, c)`` -> ``(k, p)``): a matrix
        product over the ``held`` Jacobian columns, one vjp pass over D for the others."""
        coef = coef.to(self.r.dtype)
        whole = held.whole(self.params) if held is not None else {}
        rest = [k for k in self.params if k not in whole]
        if not whole:
            return vjp_sum(self.f, self.params, self.x, coef, self.chunk)
        flat = coef.reshape(*coef.shape[:-2], -1)
        held_part = flat @ held.J
        if not rest:
            return held_part
        rest_part = vjp_sum(self.f, self.params, self.x, coef, self.chunk, names=rest)
        parts, at = [], 0
        for name, t in self.params.items():
            if name in whole:
                parts.append(held_part[..., whole[name] : whole[name] + t.numel()])
            else:
                parts.append(rest_part[..., at : at + t.numel()])
                at += t.numel()
        return torch.cat(parts, -1)


def _around_params(model: nn.Module, around, dtype: torch.dtype) -> Params:
    """The parameters at ``around`` (default: the model's own), on the model's device."""
    base = parameters_of(model, dtype)
    if around is None:
        return base
    device = next(iter(base.values())).device
    if isinstance(around, nn.Module):
        given = parameters_of(around, dtype)
    elif isinstance(around, Tensor):
        given = unflatten(around.detach(), base)
    elif isinstance(around, Mapping):
        missing = set(base) - set(around)
        if missing:
            raise ValueError(f"`around` lacks parameters {sorted(missing)[:5]}")
        given = {k: around[k].detach() for k in base}
    else:
        raise TypeError("`around` must be a module, a parameter dict or a flat vector")
    return {k: given[k].to(device, dtype) for k in base}


def _setup(model: nn.Module, retain, forget, **options) -> _Problem:
    """:func:`build_problem` for D = retain then forget (both non-empty)."""
    xr, yr = as_tensors(retain, "retain")
    xf, yf = as_tensors(forget, "forget")
    if len(xf) == 0:
        raise ValueError("the forget set is empty: nothing to scrub")
    if len(xr) == 0:
        raise ValueError("the retain set is empty")
    return build_problem(model, torch.cat([xr, xf]), torch.cat([yr, yf]), len(xr), **options)


def build_problem(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    n_retain: int,
    *,
    weight_decay: float,
    loss: Loss | str,
    around,
    dtype: torch.dtype | None,
    memory_budget: int | None,
    chunk: int | None,
    pretrained=None,
    kernel: Kernel | str = Kernel.EXACT,
) -> _Problem:
    """Validated linearization data for D = (x, y), whose first ``n_retain`` rows are D_r:
    parameters at w_bar, residuals (anchored when ``pretrained`` is given), chunk and budget.
    Everything lives on the model's device."""
    dtype = dtype or next(model.parameters()).dtype
    if weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {weight_decay}")
    kernel = Kernel(kernel)
    params = _around_params(model, around, dtype)
    assert_finite(params, "model parameters")
    device = next(iter(params.values())).device
    f = model_function(model, dtype)
    x = x.to(device, dtype)
    y = y.to(device)
    try:
        with torch.no_grad():  # in batches of 64: a larger forward only raises the peak memory
            logits = torch.cat([f(params, xb) for xb in _split(x, 64)])
    except RuntimeError as exc:
        raise ValueError(f"the model rejects inputs of shape {tuple(x.shape[1:])}: {exc}") from exc
    c = logits.shape[-1]
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"labels must lie in [0, {c}) for a model with {c} outputs")
    budget = memory_budget or default_memory_budget(device)
    p = sum(t.numel() for t in params.values())
    rows = 1 if kernel is Kernel.PSEUDO else c
    chunk_option = chunk
    chunk = chunk or _default_chunk(p, rows, dtype, budget, device)
    r = residuals(logits, y, loss)
    anchor = None
    if pretrained is not None:
        anchor = flatten(_around_params(model, pretrained, dtype)).to(device)
        d = unflatten(flatten(params) - anchor, params)
        r = r - jvp_all(f, params, x, d, chunk).detach()
    return _Problem(
        f, params, x, r, n_retain, float(weight_decay), chunk, budget, anchor, kernel, chunk_option
    )


def dense_memory_estimate(n: int, c: int, p: int, itemsize: int = 4) -> int:
    """Least bytes the dense solver needs: kernel and factors (float64) plus a Jacobian column
    group of at least p/16 parameters (a larger budget means fewer groups, hence less time)."""
    return 3 * (n * c) ** 2 * 8 + n * c * itemsize * max(1, p // 16) * 4 // 3


def cg_memory_estimate(n: int, c: int, p: int, itemsize: int, chunk: int, m: int) -> int:
    """Bytes the CG solver needs: a few parameter vectors, one Jacobian chunk, Nystrom factors."""
    return 8 * p * itemsize + (chunk + m) * c * p * itemsize + n * c * m * c * 8


def choose_solver(prob: _Problem, solver: Solver | str, nystrom_rank: int) -> Solver:
    solver = Solver(solver)
    n, c = prob.r.shape
    p = sum(t.numel() for t in prob.params.values())
    itemsize = torch.finfo(prob.r.dtype).bits // 8
    dense = dense_memory_estimate(n, prob.rows, p, itemsize)
    if prob.kernel is Kernel.PSEUDO:
        if solver is Solver.CG:
            raise ValueError("the pseudo-NTK uses the dense solver (its kernel is only n x n)")
        if dense > prob.budget:
            raise MemoryBudgetError(
                f"the pseudo-NTK for {n} samples needs about {dense / 2**30:.2f} GiB "
                f"(budget {prob.budget / 2**30:.2f} GiB)"
            )
        return Solver.DENSE
    cg = cg_memory_estimate(n, c, p, itemsize, prob.chunk, nystrom_rank)
    if solver is Solver.AUTO:
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


def shifted(K: Tensor, shift: float) -> Tensor:
    """``K + shift I`` as a new tensor (no identity matrix is formed)."""
    out = K.clone()
    out.diagonal().add_(shift)
    return out


def kernel_rows(prob_r: Tensor, kernel: Kernel | str) -> tuple[Tensor, int]:
    """Residuals in the kernel's layout: ``(n c, 1)`` for the exact kernel (sample-major),
    ``(n, c)`` for the pseudo-NTK (one kernel row per sample, the classes as right-hand sides);
    and the number of kernel rows per sample."""
    n, c = prob_r.shape
    if Kernel(kernel) is Kernel.PSEUDO:
        return prob_r.double(), 1
    return prob_r.reshape(n * c, 1).double(), c


def _dense_coefficients(
    prob: _Problem, form: str
) -> tuple[Tensor, Tensor, SolveReport, Tensor | None]:
    t = time.perf_counter()
    n, c = prob.r.shape
    nr = prob.n_retain
    K, J = prob.kernel_matrix()
    r, rows = kernel_rows(prob.r, prob.kernel)
    m_r = nr * rows
    alpha_r = _cholesky_solve(shifted(K[:m_r, :m_r], nr * prob.lam), r[:m_r])
    if form == "schur":
        delta_coef = schur_coefficients(K, r, m_r, n_total=n, n_retain=nr, lam=prob.lam)
    else:
        K.diagonal().add_(n * prob.lam)
        delta_coef = _cholesky_solve(K, r)
        delta_coef[:m_r] -= alpha_r
    del K
    report = SolveReport(
        "dense",
        seconds=time.perf_counter() - t,
        memory_estimate_bytes=dense_memory_estimate(
            n, rows, sum(v.numel() for v in prob.params.values())
        ),
    )
    return delta_coef.reshape(n, c), alpha_r.reshape(nr, c), report, J


def schur_coefficients(
    K: Tensor, r: Tensor, ncr: int, *, n_total: int, n_retain: int, lam: float
) -> Tensor:
    """Coefficients of eq. 10 (Schur-complement form) so that ``delta_w = J_D^T coef``.

    ``K`` is ``J_D J_D^T`` (retain rows first, ``ncr`` of them), ``r`` the stacked residuals
    (one or more columns). Only solves with the retain block ``B_rr = K_rr + |D| lambda I`` (and
    ``A = K_rr + |D_r| lambda I``) and the small ``|D_f| c`` system ``M^{-1} = B_ff - K_fr
    B_rr^{-1} K_rf`` are used: ``coef_f = M V`` with ``V = r_f - K_fr B_rr^{-1} r_r`` and
    ``coef_r = -B_rr^{-1} K_rf M V + (B_rr^{-1} - A^{-1}) r_r``.
    """
    K = K.double()
    r = r.double()
    k = r.shape[1]
    Krr, Krf, Kff = K[:ncr, :ncr], K[:ncr, ncr:], K[ncr:, ncr:]
    rr, rf = r[:ncr], r[ncr:]
    sol = _cholesky_solve(shifted(Krr, n_total * lam), torch.cat([rr, Krf], dim=1))
    Binv_rr, Binv_Krf = sol[:, :k], sol[:, k:]
    S = shifted(Kff, n_total * lam) - Krf.T @ Binv_Krf
    V = rf - Krf.T @ Binv_rr
    MV = _cholesky_solve(0.5 * (S + S.T), V)
    coef_r = -Binv_Krf @ MV + Binv_rr - _cholesky_solve(shifted(Krr, n_retain * lam), rr)
    return torch.cat([coef_r, MV])


def _cg_coefficients(
    prob: _Problem, tol: float, max_iter: int, nystrom_rank: int, seed: int
) -> tuple[Tensor, Tensor, tuple[SolveReport, ...]]:
    n, c = prob.r.shape
    nr = prob.n_retain
    reports, sols = [], []
    for x, r, shift in (
        (prob.x, prob.r, n * prob.lam),
        (prob.x[:nr], prob.r[:nr], nr * prob.lam),
    ):
        t = time.perf_counter()
        op = KernelOperator(prob.f, prob.params, x, shift, prob.chunk)
        pre, name = None, "none"
        if nystrom_rank > 0 and shift > 0:
            pre = NystromPreconditioner.build(
                prob.f, prob.params, x, shift, nystrom_rank, prob.chunk, seed
            )
            name = f"nystrom(m={min(nystrom_rank, len(x))})"
        sol, it, rel = conjugate_gradient(op, r, precond=pre, tol=tol, max_iter=max_iter)
        p = sum(v.numel() for v in prob.params.values())
        mem = cg_memory_estimate(
            len(x), c, p, torch.finfo(r.dtype).bits // 8, prob.chunk, nystrom_rank
        )
        reports.append(SolveReport("cg", it, rel, rel <= tol, time.perf_counter() - t, mem, name))
        sols.append(sol)
    alpha_d, alpha_r = sols
    coef = alpha_d.clone()
    coef[:nr] -= alpha_r
    return coef, alpha_r, tuple(reports)


@full_precision()
def ntk_direction(
    model: nn.Module,
    retain,
    forget,
    *,
    weight_decay: float,
    loss: Loss | str = Loss.CE,
    around=None,
    solver: Solver | str = Solver.AUTO,
    dtype: torch.dtype | None = None,
    memory_budget: int | None = None,
    form: str = "difference",
    cg_tol: float | None = None,
    cg_max_iter: int = 500,
    nystrom_rank: int = 64,
    chunk: int | None = None,
    seed: int = 0,
    pretrained=None,
    kernel: Kernel | str = Kernel.EXACT,
) -> NTKDirection:
    """The NTK scrubbing step with everything it used (see the module docstring).

    ``retain``/``forget``: ``(inputs, labels)`` pairs or datasets. ``around``: the linearization
    point (module, parameter dict or flat vector; default the model's current weights).
    ``form``: ``"difference"`` (u_{D_r} - u_D) or ``"schur"`` (eq. 10; dense solver only).
    ``cg_tol`` defaults to 1e-10 in float64 and 1e-5 in float32.
    ``pretrained`` (w0; module, dict or flat vector): when given, the linearization keeps the
    weight-decay anchor, i.e. it solves the stated objective exactly for the model linearized
    at w_bar: ``u_S = -(w_bar - w0) - J^T Theta_S^{-1} (r_S - J_S (w_bar - w0))``. This only
    replaces r by ``r - J (w_bar - w0)`` (one jvp pass); at ``w_bar = w0`` it changes nothing.
    Without it (the authors' code) the anchor term is dropped.
    ``kernel``: ``"exact"`` (the NTK) or ``"pseudo"`` (pseudo-NTK, dense solver; see
    :class:`Kernel`).
    """
    start = time.perf_counter()
    prob = _setup(
        model,
        retain,
        forget,
        weight_decay=weight_decay,
        loss=loss,
        around=around,
        dtype=dtype,
        memory_budget=memory_budget,
        chunk=chunk,
        pretrained=pretrained,
        kernel=kernel,
    )
    chosen = choose_solver(prob, solver, nystrom_rank)
    if form not in ("difference", "schur"):
        raise ValueError(f"form must be 'difference' or 'schur', got {form!r}")
    J = None
    if chosen is Solver.DENSE:
        coef, alpha_r, report, J = _dense_coefficients(prob, form)
        reports = (report,)
    else:
        if form == "schur":
            raise ValueError("the Schur form is implemented for the dense solver only")
        tol = cg_tol if cg_tol is not None else (1e-10 if prob.r.dtype == torch.float64 else 1e-5)
        coef, alpha_r, reports = _cg_coefficients(prob, tol, cg_max_iter, nystrom_rank, seed)
    dt = prob.r.dtype
    nr = prob.n_retain
    # delta_w = J_D^T coef and u_{D_r} = -J_r^T alpha_r in one pass over D
    both = torch.zeros(2, *coef.shape, dtype=dt, device=coef.device)
    both[0] = coef
    both[1, :nr] = -alpha_r
    delta, u_retain = prob.pullback(both, J)
    del J
    around_flat = flatten(prob.params)
    if prob.anchor is not None:  # anchored: w_lin(S) = w0 + J^T-part (the -(w_bar - w0) cancels)
        u_retain = u_retain - (around_flat - prob.anchor)
    if not torch.isfinite(delta).all():
        raise ValueError("the NTK direction is not finite (ill-conditioned kernel)")
    return NTKDirection(
        delta.detach(),
        u_retain.detach(),
        around_flat,
        reports,
        time.perf_counter() - start,
        {
            "solver": chosen.value,
            "form": form,
            "kernel": prob.kernel.value,
            "n_retain": nr,
            "n_forget": len(prob.x) - nr,
        },
    )


def scrub_direction(
    model: nn.Module,
    retain,
    forget,
    *,
    weight_decay: float,
    loss: Loss | str = "ce",
    around=None,
    solver: Solver | str = "auto",
    dtype: torch.dtype | None = None,
    **kwargs,
) -> Tensor:
    """The flat scrubbing direction ``delta_w = u_{D_r} - u_D`` (before trapezium rescaling).

    Shapes: ``retain = (x_r, y_r)`` with ``x_r`` ``(N_r, ...)``, ``forget`` likewise; the result
    has length p in ``model.parameters()`` order. See :func:`ntk_direction` for the options.
    """
    return ntk_direction(
        model,
        retain,
        forget,
        weight_decay=weight_decay,
        loss=loss,
        around=around,
        solver=solver,
        dtype=dtype,
        **kwargs,
    ).delta


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


# ----------------------------------------------------------------------------- trapezium


@dataclass(frozen=True)
class Trapezium:
    """The trapezium trick's choice: ``scale`` multiplies delta_w (Fig. 5)."""

    scale: float
    predicted_norm: float
    delta_norm: float
    leg_norm: float
    angle: float  # radians, between delta_w and the leg m


def trapezium(delta: Tensor, *, w_full: Tensor, w_lin: Tensor) -> Trapezium:
    """Rescale the linearized direction to undo its undershoot (supplement, Fig. 5).

    Inputs: ``delta`` = w_lin(D_r) - w_lin(D), the trained weights ``w_full`` = w(D) and the
    linearized end point ``w_lin`` the trapezium's leg starts from: Fig. 5's caption uses
    w_lin(D) (leg ``m = w(D) - w_lin(D)``); the authors' code uses ``w0 + u_{D_r}``. With theta
    the angle between delta and m, the isosceles trapezium predicts
    ``||w(D_r) - w(D)|| = ||delta|| + 2 sin(a) ||m||`` with ``a = theta - pi/2`` when
    ``cos theta < 0`` and ``2 cos(theta) ||m||`` otherwise (the authors' code); both cases equal
    ``||delta|| + 2 |cos theta| ||m||``. The scrub is ``w(D) + scale * delta``.
    """
    d = delta.double()
    m = w_full.double() - w_lin.double()
    dn, mn = d.norm().item(), m.norm().item()
    if dn == 0.0:
        return Trapezium(1.0, 0.0, 0.0, mn, float("nan"))
    cos = (d @ m).item() / (dn * mn) if mn > 0 else 0.0
    cos = max(-1.0, min(1.0, cos))
    theta = math.acos(cos)
    extra = 2 * math.sin(theta - math.pi / 2) * mn if cos < 0 else 2 * math.cos(theta) * mn
    predicted = dn + extra
    return Trapezium(predicted / dn, predicted, dn, mn, theta)
