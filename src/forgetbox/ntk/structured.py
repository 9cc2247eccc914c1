"""The per-layer build of the exact kernel ``K = sum_l K_l`` (``jacobian="auto"`` or
``"structured"``; issue 31).

Per sample chunk: one batched forward recording each planned layer's input, one backward to
those layers' outputs batched over the k cotangent rows (the c classes, or the summed row of
the pseudo-NTK), then per layer (:mod:`.layer_rules`):

- **contracted**: the per-sample gradients formed from the recorded factors (one batched
  matmul, ``G_ia = D_ia^T X_i``, written straight into the weight's own contiguous block of the
  pass buffer), whose Gram matrix is accumulated as in
  :func:`~forgetbox.ntk.kernel.kernel_and_jacobian`;
- **structured**: the factors ``X`` (inputs / unfolded patches) and ``D`` (output gradients)
  held for all n samples, then ``K_l`` from them by blocks of samples (:mod:`.ghost`), no
  per-sample gradient formed.

The choice per layer follows the flop model of :mod:`.flops`; parameters without a rule (or
whose rule failed the probe of :mod:`.layer_plan`) get ``vmap(jacrev)`` Jacobian columns as in
the contraction path. Work is split into passes that fit the budget (each pass one forward and
backward per chunk, stopping at its earliest layer); passes run from the last parameters to
the first, and the last pass's Jacobian columns stay in memory for the pullback (as the
contraction path's first group). Under ``torch.distributed`` each rank fills its rows of the
buffers, which are all-reduced, and its rows of K, as the contraction path does. Large
per-chunk temporaries (conv patches, transposed output gradients) live in scratch reused by
every chunk: fresh pages cost ~20 % of the build on a CPU (glibc returns large blocks).
"""

from __future__ import annotations

import itertools
import math
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import parallel
from ..functional import ModelFn, Params, module_of
from ..progress import progress
from .flops import LayerForm, structured_bytes
from .ghost import ghost_accumulate, ghost_block_samples
from .jacobian import jacobian_blocks
from .kernel import HeldJacobian, kernel_and_jacobian, sym_accumulate
from .layer_plan import (
    AUTO_MIN_SAVING,
    Candidate,
    Entry,
    Plan,
    candidates,
    entries,
    layer_gradients,
    pack,
    plan_kernel,
    plan_saving,
)
from .layer_rules import contract
from .memory import (
    MAX_GROUPS,
    MemoryBudgetError,
    default_chunk,
    default_memory_budget,
    dense_group_columns,
    ghost_block_elems,
    itemsize,
    recording_chunk,
)
from .options import JacobianMode, Kernel
from .recording import record


@dataclass
class KernelReport:
    """What the per-layer build did: its :class:`~forgetbox.ntk.layer_plan.Plan` (None on the
    contraction path), the passes, samples per chunk, and seconds per stage (``record``:
    forward and backward; ``contract``: per-sample gradients from factors; ``gram``: their
    Gram matrix; ``structured``: the structured blocks; ``fallback``: ``vmap(jacrev)``);
    ``note``: why AUTO took the contraction path."""

    plan: Plan | None
    passes: int = 0
    chunk: int = 0
    seconds: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    note: str = ""


def build_summary(report: KernelReport) -> dict:
    """What a kernel build chose, as plain data (certificates): each factored weight's form
    (``structured`` / ``contracted``), the parameters left to ``vmap(jacrev)`` and why, both
    forms' multiply-adds; ``{"jacobian": "contraction"}`` on the contraction path."""
    plan = report.plan
    if plan is None:
        return {"jacobian": "contraction", **({"note": report.note} if report.note else {})}
    forms = {lp.factored: lp.form.value for lp in plan.layers if lp.form is not None}
    return {
        "jacobian": "per-layer",
        "forms": forms,
        "fallback": list(plan.fallback),
        "fallback_reasons": dict(plan.reasons),
        "structured_macs": plan.macs(LayerForm.STRUCTURED),
        "contracted_macs": plan.macs(LayerForm.CONTRACTED),
        "passes": report.passes,
    }


@contextmanager
def _timed(report: KernelReport, stage: str) -> Iterator[None]:
    t = time.perf_counter()
    try:
        yield
    finally:
        report.seconds[stage] += time.perf_counter() - t


def layer_kernel_and_jacobian(
    f: ModelFn,
    params: Params,
    x: Tensor,
    *,
    jacobian: JacobianMode | str = JacobianMode.AUTO,
    memory_budget: int | None = None,
    chunk: int | None = None,
    accumulate_dtype: torch.dtype = torch.float64,
    kernel: Kernel | str = Kernel.EXACT,
    force: LayerForm | None = None,
) -> tuple[Tensor, HeldJacobian | None, KernelReport]:
    """The kernel of :func:`~forgetbox.ntk.kernel.kernel_and_jacobian` (``(n k, n k)``,
    sample-major, ``accumulate_dtype``), built per layer (module docstring), the Jacobian
    columns left in memory (or None) and a :class:`KernelReport`.

    ``jacobian``: :class:`~forgetbox.ntk.options.JacobianMode`; CONTRACTION, or a function
    ``f`` that is not a :func:`~forgetbox.functional.model_function`, is the contraction path
    itself. ``force``: one form for every factored weight (tests). ``chunk``: samples per
    recording pass (default from the budget, :func:`~forgetbox.ntk.memory.recording_chunk`).
    """
    mode = JacobianMode(jacobian)
    module = module_of(f)
    opts = dict(memory_budget=memory_budget, chunk=chunk, accumulate_dtype=accumulate_dtype)
    if mode is JacobianMode.CONTRACTION or module is None:
        K, held = kernel_and_jacobian(f, params, x, kernel=kernel, **opts)
        return K, held, KernelReport(None, passes=0)
    budget = parallel.all_min(memory_budget or default_memory_budget(x.device))
    pseudo = Kernel(kernel) is Kernel.PSEUDO
    n = len(x)
    with torch.no_grad():
        c = f(params, x[:1]).shape[-1]
    k = 1 if pseudo else c
    dtype = next(iter(params.values())).dtype
    item = itemsize(dtype)
    device = x.device
    cotangent = (
        torch.full((1, c), c**-0.5, dtype=dtype, device=device)
        if pseudo
        else torch.eye(c, dtype=dtype, device=device)
    )
    max_cols = dense_group_columns(n * k, item, budget)
    plan = plan_kernel(f, params, module, x[: min(2, n)], n, k, mode, max(max_cols, 0), force)
    if mode is JacobianMode.AUTO and force is None and plan_saving(plan) < AUTO_MIN_SAVING:
        # the structured layers save little (All-CNN: every layer but the last at high
        # resolution): the contraction path builds the same kernel at least as fast
        K, held = kernel_and_jacobian(f, params, x, kernel=kernel, **opts)
        note = f"auto: the structured form saves {plan_saving(plan):.1%} of the multiply-adds"
        return K, held, KernelReport(None, note=note)
    items = entries(plan, params, item)
    need = math.ceil(sum(e.width for e in items) / MAX_GROUPS)
    if max_cols < max(need, 1):
        raise MemoryBudgetError(
            f"the per-layer kernel of {n} samples x {k} rows needs more than a budget of "
            f"{budget / 2**30:.2f} GiB for at most {MAX_GROUPS} passes; use solver='cg'"
        )
    groups = pack(items, max_cols)
    cands = candidates(module, set(params))
    shapes = {lp.name: lp.shape for lp in plan.layers if lp.shape is not None}
    widest = max([structured_bytes(k, s, 1) + k * s.numel for s in shapes.values()] + [1])
    step = chunk or recording_chunk(plan.act_numel, widest, k, item, budget, device)
    report = KernelReport(plan, passes=len(groups), chunk=step)
    ctx = _Pass(
        f,
        params,
        cands,
        cotangent,
        pseudo,
        budget,
        report,
        _scratch(step, k, shapes, dtype, device),
    )
    K = torch.zeros(n * k, n * k, dtype=accumulate_dtype, device=device)
    widths = [sum(e.hi - e.lo for e in g if e.param is not None) for g in groups]
    buffer = torch.empty(n * k * max(widths), dtype=dtype, device=device)
    alone = {lp.factored for lp in plan.layers if lp.form is LayerForm.CONTRACTED}
    lo, hi = parallel.block(n)
    block_elems = ghost_block_elems(budget, item)
    blocks: list[_Block] = []
    for group, width in progress(
        list(zip(groups, widths, strict=True))[::-1], desc=f"NTK kernel ({n * k} rows, per layer)"
    ):
        blocks = _blocks(group, buffer, n, k, {q for q in alone if _whole(group, q, params)})
        held = {
            e.layer: _factor_buffers(shapes[e.layer], n, k, dtype, device)
            for e in group
            if e.param is None
        }
        if parallel.active():
            buffer[: n * k * width].zero_()
            for X, D in held.values():
                X.zero_()
                D.zero_()
        for i in range(lo, hi, step):
            _fill(ctx, x[i : min(hi, i + step)], i, group, blocks, held)
        if parallel.active():
            parallel.all_sum(buffer[: n * k * width])
            for X, D in held.values():
                parallel.all_sum(X)
                parallel.all_sum(D)
        with _timed(report, "gram"):
            for blk in blocks:
                flat = blk.J.view(n * k, -1)
                if parallel.active():
                    K[lo * k : hi * k] += (flat[lo * k : hi * k] @ flat.T).to(K.dtype)
                else:
                    sym_accumulate(K, flat)
        with _timed(report, "structured"):
            for name, (X, D) in held.items():
                block = ghost_block_samples(k, shapes[name], block_elems)
                ghost_accumulate(K, X, D, lo, hi, block, symmetric=not parallel.active())
        del held
    parallel.all_sum(K)
    columns = tuple((e.param, e.lo, e.hi) for blk in blocks for e in blk.entries)
    held_J = None
    if columns:
        held_J = HeldJacobian(columns, ColumnBlocks([b.J.view(n * k, -1) for b in blocks]))
    return K, held_J, report


class ColumnBlocks:
    """Jacobian columns held as consecutive blocks ``(m, w_b)``: ``a @ blocks`` is ``a`` times
    their concatenation (all that :meth:`~forgetbox.ntk.problem.Problem.pullback` asks of a
    held Jacobian), without concatenating them."""

    def __init__(self, blocks: list[Tensor]):
        self.blocks = blocks

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, columns) of the held Jacobian blocks together."""
        return self.blocks[0].shape[0], sum(b.shape[1] for b in self.blocks)

    def __rmatmul__(self, a: Tensor) -> Tensor:
        return torch.cat([a @ b for b in self.blocks], dim=-1)


@dataclass(frozen=True)
class _Block:
    """Consecutive column pieces of a pass in one contiguous ``(n, k, width)`` tensor: a whole
    contracted weight alone (the matmul forming its per-sample gradients writes there), the
    other pieces together (biases, BatchNorm, split pieces, ``vmap(jacrev)`` columns)."""

    entries: tuple[Entry, ...]
    J: Tensor
    offsets: dict[Entry, int]


def _whole(group: list[Entry], name: str, params: Params) -> bool:
    return any(e.param == name and e.hi - e.lo == params[name].numel() for e in group)


def _blocks(group: list[Entry], buffer: Tensor, n: int, k: int, alone: set[str]) -> list[_Block]:
    """The pass's column pieces carved from ``buffer`` in order, each weight in ``alone`` in a
    block of its own."""
    out: list[_Block] = []
    current: list[Entry] = []
    at = 0

    def close() -> None:
        nonlocal at
        if current:
            w = sum(e.hi - e.lo for e in current)
            offsets = dict(
                zip(
                    current,
                    itertools.accumulate([0] + [e.hi - e.lo for e in current]),
                    strict=False,
                )
            )
            out.append(
                _Block(tuple(current), buffer[at * n * k : (at + w) * n * k].view(n, k, w), offsets)
            )
            at += w
            current.clear()

    for e in group:
        if e.param is None:
            continue
        if e.param in alone:
            close()
            current.append(e)
            close()
        else:
            current.append(e)
    close()
    return out


def _scratch(step: int, k: int, shapes: dict, dtype, device) -> dict[str, Tensor]:
    """Buffers every chunk reuses: "x" for a chunk's conv patches (``b g T d`` values), "d"
    for its transposed output gradients (``b k g T o``), sized for the widest layer."""
    x = max([s.groups * s.positions * s.inp for s in shapes.values()] + [0])
    d = max([s.groups * s.positions * s.out for s in shapes.values()] + [0])
    return {
        "x": torch.empty(step * x, dtype=dtype, device=device),
        "d": torch.empty(step * k * d, dtype=dtype, device=device),
    }


def _factor_buffers(shape, n: int, k: int, dtype, device) -> tuple[Tensor, Tensor]:
    """``X`` ``(g, n, T, d)`` and ``D`` ``(g, n, k, T, o)`` for all n samples."""
    g, T = shape.groups, shape.positions
    X = torch.empty(g, n, T, shape.inp, dtype=dtype, device=device)
    D = torch.empty(g, n, k, T, shape.out, dtype=dtype, device=device)
    return X, D


@dataclass(frozen=True)
class _Pass:
    """What every chunk of a pass needs."""

    f: ModelFn
    params: Params
    cands: dict[str, Candidate]
    cotangent: Tensor
    pseudo: bool
    budget: int
    report: KernelReport
    scratch: dict[str, Tensor]  # reused by every chunk: "x" conv patches, "d" D transposed


def _fill(
    ctx: _Pass,
    xb: Tensor,
    i: int,
    group: list[Entry],
    blocks: list[_Block],
    held: dict[str, tuple[Tensor, Tensor]],
) -> None:
    """Rows ``i : i + len(xb)`` of one pass: the held factors of its structured layers and the
    Jacobian columns of its other pieces (written at their places in ``blocks``)."""
    f, params, cands, report = ctx.f, ctx.params, ctx.cands, ctx.report
    j = i + len(xb)
    where = {e: (blk, off) for blk in blocks for e, off in blk.offsets.items()}
    layers = list(dict.fromkeys(e.layer for e in group if e.layer is not None))
    if layers:
        with _timed(report, "record"):
            layer_rules = {n: cands[n][:2] for n in layers}
            seen = record(f, params, xb, layer_rules, ctx.cotangent, ctx.report.plan.cloned)
        with _timed(report, "contract"):
            for name in layers:
                fac, others = layer_gradients(cands[name], *seen[name], ctx.scratch.get("x"))
                if name in held:
                    held[name][0][:, i:j].copy_(fac.X)
                    held[name][1][:, i:j].copy_(fac.D)
                for e in group:
                    if e.layer != name or e.param is None:
                        continue
                    blk, off = where[e]
                    out = blk.J[i:j, :, off : off + e.hi - e.lo]
                    if e.param in others:
                        out.copy_(others[e.param][..., e.lo : e.hi])
                    elif e.lo == 0 and e.hi == params[e.param].numel():
                        contract(fac, out, ctx.scratch.get("d"))
                    else:
                        out.copy_(contract(fac, None, ctx.scratch.get("d"))[..., e.lo : e.hi])
    rest = [e for e in group if e.layer is None]
    if rest:
        with _timed(report, "fallback"):
            names = list(dict.fromkeys(e.param for e in rest))
            touched = sum(params[q].numel() for q in names)
            sub = default_chunk(touched, blocks[0].J.shape[1], xb.dtype, ctx.budget // 2, xb.device)
            for s in range(0, len(xb), sub):
                part = xb[s : s + sub]
                jac = jacobian_blocks(f, params, part, names, ctx.pseudo)
                for e in rest:
                    blk, off = where[e]
                    rows = slice(i + s, i + s + len(part))
                    blk.J[rows, :, off : off + e.hi - e.lo] = jac[e.param][..., e.lo : e.hi]
