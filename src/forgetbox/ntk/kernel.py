"""The empirical NTK ``J J^T`` (or the pseudo-NTK), built without holding the whole Jacobian:
parameter columns in groups, each group's Jacobian in sample chunks, its Gram matrix
accumulated into a float64 kernel."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from .. import parallel
from ..functional import ModelFn, Params
from ..progress import progress
from .jacobian import jacobian_blocks
from .memory import (
    MemoryBudgetError,
    default_chunk,
    default_memory_budget,
    dense_group_columns,
    dense_memory_estimate,
    itemsize,
    least_group_columns,
)
from .options import Kernel

Column = tuple[str, int, int]  # a parameter's flat elements [lo, hi)


def param_groups(params: Mapping[str, Tensor], max_elems: int) -> list[list[Column]]:
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


def group_jacobian(
    f: ModelFn, params: Params, x: Tensor, group: Sequence[Column], pseudo: bool, out: Tensor
) -> None:
    """Write the Jacobian columns of ``group`` for the samples ``x`` into ``out`` (n, c, width):
    no concatenation (it cost ~15% of the Jacobian time on a CPU)."""
    blocks = jacobian_blocks(f, params, x, list(dict.fromkeys(k for k, _, _ in group)), pseudo)
    start = 0
    for name, lo, hi in group:
        out[:, :, start : start + hi - lo] = blocks[name][:, :, lo:hi]
        start += hi - lo


def sym_accumulate(K: Tensor, J: Tensor, block: int = 256) -> None:
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


def kernel_matrix(f: ModelFn, params: Params, x: Tensor, **options) -> Tensor:
    """Empirical NTK ``J J^T`` of shape ``(n c, n c)`` (sample-major), without holding J; with
    ``kernel="pseudo"`` the pseudo-NTK ``(n, n)`` (see :class:`Kernel`). ``options`` and the
    memory plan: :func:`kernel_and_jacobian`."""
    return kernel_and_jacobian(f, params, x, **options)[0]


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
    budget (:mod:`forgetbox.ntk.memory`; at most ``MAX_GROUPS`` groups, beyond which the
    matrix-free solver is the better choice; see :func:`param_groups`). Groups are built from
    the last parameters to the first, so the group left in memory holds the first layers': the
    vjp pass for the rest stops before them, and on image models they are the costliest to
    differentiate (full resolution). Each group's Jacobian is built in sample chunks (``chunk``
    samples, or by default as many as fit the budget for that group's width, at most 32 on a
    CPU) and its Gram matrix accumulated (upper block triangle only) into an
    ``accumulate_dtype`` kernel.
    """
    budget = parallel.all_min(memory_budget or default_memory_budget(x.device))
    pseudo = Kernel(kernel) is Kernel.PSEUDO
    n = len(x)
    with torch.no_grad():
        c = 1 if pseudo else f(params, x[:1]).shape[-1]
    dtype = next(iter(params.values())).dtype
    item = itemsize(dtype)
    p = sum(t.numel() for t in params.values())
    max_elems = dense_group_columns(n * c, item, budget)
    if max_elems < least_group_columns(p):
        need = dense_memory_estimate(n * c, p, item)
        raise MemoryBudgetError(
            f"dense kernel for {n} samples x {c} outputs needs a budget of at least "
            f"{need / 2**30:.2f} GiB (given {budget / 2**30:.2f} GiB); use solver='cg' "
            "(matrix-free)"
        )
    K = torch.zeros(n * c, n * c, dtype=accumulate_dtype, device=x.device)
    groups = param_groups(params, max_elems)
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
        step = chunk or default_chunk(touched, c, dtype, budget // 2, x.device)
        J = buffer[: n * c * width].view(n, c, width)
        lo, hi = parallel.block(n)  # this rank's rows; the others' arrive in the all-reduce
        if parallel.active():
            J.zero_()
        for i in range(lo, hi, step):
            j = min(hi, i + step)
            group_jacobian(f, params, x[i:j], group, pseudo, J[i:j])
        if parallel.active():
            parallel.all_sum(J)
            flat = J.view(n * c, width)
            K[lo * c : hi * c] += (flat[lo * c : hi * c] @ flat.T).to(K.dtype)
        else:
            sym_accumulate(K, J.view(n * c, width))
    parallel.all_sum(K)
    return K, HeldJacobian(tuple(groups[0]), J.view(n * c, widths[0]))


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
