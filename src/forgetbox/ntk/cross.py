"""The per-layer cross kernel ``K(x, x_S) = J(x) J(x_S)^T`` between all n inputs and m chosen
ones (the Nystrom preconditioner's columns; issue 31), built as :mod:`.structured` builds the
symmetric kernel: per pass, the m chosen samples' factors (structured layers) and per-sample
gradients (contracted layers, ``vmap(jacrev)`` columns) held once, then per chunk of the n
inputs one recording pass, the chunk's factors against the held ones (:func:`ghost_cross`) and
its gradients against the held gradients (one matmul). With m << n the plan is made for
``2 m`` samples: the contracted form then costs ``k T p_l + m k^2 p_l`` per input against the
structured form's ``m`` pair costs, the cross kernel's own ratio (:mod:`.flops`).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from .. import parallel
from ..functional import ModelFn, Params, module_of
from .flops import LayerForm, structured_bytes
from .ghost import ghost_block, ghost_block_samples
from .layer_plan import (
    AUTO_MIN_SAVING,
    candidates,
    entries,
    pack,
    plan_kernel,
    plan_saving,
)
from .memory import (
    MAX_GROUPS,
    default_memory_budget,
    ghost_block_elems,
    itemsize,
    recording_chunk,
)
from .options import JacobianMode
from .structured import KernelReport, _blocks, _factor_buffers, _fill, _Pass, _scratch, _whole


def ghost_cross(XI: Tensor, DI: Tensor, XJ: Tensor, DJ: Tensor, block: int) -> Tensor:
    """The structured block ``(bi k, bj k)`` between samples I and J (factors as in
    :func:`~forgetbox.ntk.ghost.ghost_block`) by sub-blocks of ``block`` samples a side."""
    bi, bj, k = XI.shape[1], XJ.shape[1], DI.shape[2]
    out = torch.empty(bi * k, bj * k, dtype=XI.dtype, device=XI.device)
    for i0 in range(0, bi, block):
        i1 = min(bi, i0 + block)
        for j0 in range(0, bj, block):
            j1 = min(bj, j0 + block)
            out[i0 * k : i1 * k, j0 * k : j1 * k] = ghost_block(
                XI[:, i0:i1], DI[:, i0:i1], XJ[:, j0:j1], DJ[:, j0:j1]
            )
    return out


def layer_cross_kernel(
    f: ModelFn,
    params: Params,
    x: Tensor,
    xs: Tensor,
    *,
    jacobian: JacobianMode | str = JacobianMode.AUTO,
    memory_budget: int | None = None,
    chunk: int | None = None,
    accumulate_dtype: torch.dtype = torch.float64,
    force: LayerForm | None = None,
) -> tuple[Tensor, KernelReport] | None:
    """``J(x) J(xs)^T`` (``(n c, m c)``, sample-major, ``accumulate_dtype``) built per layer,
    and its :class:`~forgetbox.ntk.structured.KernelReport`; None where the per-layer build
    does not apply (``jacobian`` CONTRACTION, ``f`` not a
    :func:`~forgetbox.functional.model_function`, AUTO with too little to save, or ``C`` and
    a pass not fitting ``memory_budget`` within :data:`~forgetbox.ntk.memory.MAX_GROUPS`
    passes): the caller then uses the Jacobian rows. ``force``: one form for every factored
    weight (tests). Under ``torch.distributed`` the budget is the least over the ranks (so
    that all take the same path) and each rank builds its rows of x, then the rows are summed
    across ranks."""
    mode = JacobianMode(jacobian)
    module = module_of(f)
    if mode is JacobianMode.CONTRACTION or module is None:
        return None
    budget = parallel.all_min(memory_budget or default_memory_budget(x.device))
    n, m = len(x), len(xs)
    with torch.no_grad():
        c = f(params, xs[:1]).shape[-1]
    dtype = next(iter(params.values())).dtype
    item, device = itemsize(dtype), x.device
    # C itself, a quarter of the budget for recording and blocks; the rest holds a pass's
    # columns for the m held samples and one chunk of the n inputs
    cap = chunk or (256 if device.type == "cuda" else 64)
    room = budget - n * c * m * c * itemsize(accumulate_dtype) - budget // 4
    max_cols = room // ((m + cap) * c * item) if room > 0 else 0
    plan = plan_kernel(f, params, module, xs[: min(2, m)], 2 * m, c, mode, max(max_cols, 0), force)
    if max_cols < 1 or (
        mode is JacobianMode.AUTO and force is None and plan_saving(plan) < AUTO_MIN_SAVING
    ):
        return None
    items = entries(plan, params, item)
    if max_cols < math.ceil(sum(e.width for e in items) / MAX_GROUPS):
        return None  # more passes than the rows path's one would cost
    groups = pack(items, max_cols)
    cands = candidates(module, set(params))
    shapes = {lp.name: lp.shape for lp in plan.layers if lp.shape is not None}
    widest = max([structured_bytes(c, s, 1) + c * s.numel for s in shapes.values()] + [1])
    step = min(cap, chunk or recording_chunk(plan.act_numel, widest, c, item, budget, device))
    report = KernelReport(plan, passes=len(groups), chunk=step)
    eye = torch.eye(c, dtype=dtype, device=device)
    ctx = _Pass(
        f, params, cands, eye, False, budget, report, _scratch(step, c, shapes, dtype, device)
    )
    alone = {lp.factored for lp in plan.layers if lp.form is LayerForm.CONTRACTED}
    C = torch.zeros(n * c, m * c, dtype=accumulate_dtype, device=device)
    for group in groups:
        solo = {q for q in alone if _whole(group, q, params)}
        _cross_pass(ctx, C, x, xs, group, solo, shapes, step, ghost_block_elems(budget, item))
    return parallel.all_sum(C), report


def _cross_pass(ctx: _Pass, C, x, xs, group, solo: set[str], shapes: dict, step, elems) -> None:
    """One pass: the held side's pieces, then this rank's rows of C from every chunk of x
    (every buffer of the pass is freed on return, before the next pass allocates its own)."""
    c, m = ctx.cotangent.shape[0], len(xs)
    dtype, device = ctx.cotangent.dtype, ctx.cotangent.device
    width = sum(e.hi - e.lo for e in group if e.param is not None)
    held_blocks, held_factors = _side(ctx, xs, group, width, solo, shapes, step)
    buffer = torch.empty(step * c * max(width, 1), dtype=dtype, device=device)
    lo, hi = parallel.block(len(x))
    for i in range(lo, hi, step):
        xb = x[i : min(hi, i + step)]
        b = len(xb)
        blocks = _blocks(group, buffer, b, c, solo)
        held = {
            e.layer: _factor_buffers(shapes[e.layer], b, c, dtype, device)
            for e in group
            if e.param is None
        }
        _fill(ctx, xb, 0, group, blocks, held)
        rows = C[i * c : (i + b) * c]
        for mine, theirs in zip(blocks, held_blocks, strict=True):
            rows += (mine.J.view(b * c, -1) @ theirs.J.view(m * c, -1).T).to(C.dtype)
        for name, (X, D) in held.items():
            XS, DS = held_factors[name]
            block = ghost_block_samples(c, shapes[name], elems)
            rows += ghost_cross(X, D, XS, DS, block).to(C.dtype)
        del blocks, held  # before the next chunk's factors are allocated


def _side(ctx: _Pass, xs: Tensor, group, width: int, solo: set[str], shapes: dict, step: int):
    """The held side of one pass: ``(blocks, factors)`` of the m chosen samples."""
    m, c = len(xs), ctx.cotangent.shape[0]
    dtype, device = ctx.cotangent.dtype, ctx.cotangent.device
    blocks = _blocks(
        group, torch.empty(m * c * max(width, 1), dtype=dtype, device=device), m, c, solo
    )
    held = {
        e.layer: _factor_buffers(shapes[e.layer], m, c, dtype, device)
        for e in group
        if e.param is None
    }
    for i in range(0, m, step):
        _fill(ctx, xs[i : min(m, i + step)], i, group, blocks, held)
    return blocks, held
