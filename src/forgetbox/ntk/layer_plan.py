"""The plan of the per-layer kernel build: which trainable parameters a layer rule computes and
in which form, which fall back to ``vmap(jacrev)``, and how the work is split into passes that
fit the memory budget.

A layer's rule is used only if, on a probe batch (the first two samples), the layer is called
exactly once, its input is not changed in place afterwards, and the rule's per-sample gradients
of ``sum_k f_k / sqrt(c)`` from the two-sample batch equal plain autograd's for each sample
evaluated alone, for every trainable parameter it owns (to 1e-3 relative in float32, 1e-9 in
float64). This catches what a type check cannot: a weight also used outside its module, tied
weights, a batch dimension that is not the first, samples that interact. Every other
trainable parameter falls back to ``vmap(jacrev)``, with the reason recorded.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from ..functional import ModelFn, Params
from .flops import (
    LayerForm,
    LayerShape,
    choose_form,
    contracted_macs,
    structured_bytes,
    structured_macs,
)
from .layer_rules import Factors, LayerRule, contract, rule_for
from .options import JacobianMode
from .recording import output_gradients, recorded_forward

Candidate = tuple[nn.Module, LayerRule, dict[str, str]]  # module, rule, {local: full name}


@dataclass(frozen=True)
class LayerPlan:
    """One layer handled by its rule: ``params`` (full names, trainable), the ``factored``
    weight (full name, or None) with its ``shape`` and chosen ``form``, and both forms' costs
    in multiply-adds (:mod:`forgetbox.ntk.flops`); ``note`` says why a form was imposed."""

    name: str
    kind: str
    params: tuple[str, ...]
    factored: str | None = None
    shape: LayerShape | None = None
    form: LayerForm | None = None
    structured_macs: int = 0
    contracted_macs: int = 0
    note: str = ""


@dataclass(frozen=True)
class Plan:
    """Every layer's plan, the parameters left to ``vmap(jacrev)`` (``fallback``) and why
    (``reasons``: module name -> reason), for ``n`` samples and ``k`` kernel rows each;
    ``act_numel``: values one sample's recorded layers hold (inputs and outputs); ``cloned``:
    the layers whose output is changed in place downstream (the recorder passes on a copy)."""

    n: int
    k: int
    layers: tuple[LayerPlan, ...]
    fallback: tuple[str, ...]
    reasons: dict[str, str] = field(default_factory=dict)
    act_numel: int = 0
    cloned: frozenset[str] = frozenset()

    def macs(self, form: LayerForm) -> int:
        """Multiply-adds of the factored weights built in ``form``."""
        return sum(
            lp.structured_macs if form is LayerForm.STRUCTURED else lp.contracted_macs
            for lp in self.layers
            if lp.form is form
        )


# AUTO builds per layer only when the structured layers save at least this fraction of the
# contraction path's multiply-adds; below it the two paths took the same time within the
# machine's noise on All-CNN x0.4 (docs/benchmarks.md, the per-layer exact kernel)
AUTO_MIN_SAVING = 0.1


def plan_saving(plan: Plan) -> float:
    """The fraction of the contraction path's multiply-adds the plan's structured layers save."""
    total = sum(lp.contracted_macs for lp in plan.layers if lp.form is not None)
    saved = sum(
        lp.contracted_macs - lp.structured_macs
        for lp in plan.layers
        if lp.form is LayerForm.STRUCTURED
    )
    return saved / total if total else 0.0


def candidates(module: nn.Module, names: set[str]) -> dict[str, Candidate]:
    """Modules with a rule that own at least one trainable parameter in ``names``."""
    out = {}
    for mname, m in module.named_modules():
        rule = rule_for(m)
        if rule is None:
            continue
        own = [p for p, _ in m.named_parameters(recurse=False)]
        full = {p: f"{mname}.{p}" if mname else p for p in own}
        trainable = {p: q for p, q in full.items() if q in names}
        if trainable:
            out[mname] = (m, rule, trainable)
    return out


def layer_gradients(
    cand: Candidate, a: Tensor, g: Tensor, scratch: Tensor | None = None
) -> tuple[Factors | None, dict]:
    """The factors of the layer's weight (None when it is frozen or has none; X possibly in
    ``scratch``) and the other trainable parameters' per-sample gradients
    ``{full name: (b, k, numel)}``."""
    m, rule, trainable = cand
    fac = rule.factors(m, a, g, scratch) if rule.factored in trainable else None
    others = rule.grads(m, a, g, set(trainable) - {rule.factored})
    return fac, {trainable[p]: v for p, v in others.items()}


def sample_gradients(f: ModelFn, params: Params, x: Tensor, names: list[str]) -> dict:
    """``{name: (b, 1, numel)}``: the gradient of ``sum_k f_k / sqrt(c)`` for each sample
    evaluated alone, by plain autograd (the probe's reference: b is 2)."""
    rows: dict[str, list[Tensor]] = {q: [] for q in names}
    for i in range(len(x)):
        leaves = {q: params[q].detach().requires_grad_(True) for q in names}
        with torch.enable_grad():
            out = f({**params, **leaves}, x[i : i + 1])
            grads = torch.autograd.grad(
                out.sum() / math.sqrt(out.shape[-1]), list(leaves.values()), allow_unused=True
            )
        for q, g in zip(names, grads, strict=True):
            rows[q].append(torch.zeros_like(params[q]) if g is None else g)
    return {q: torch.stack(v).reshape(len(x), 1, -1) for q, v in rows.items()}


def _close(got: Tensor, want: Tensor, tol: float) -> bool:
    if got.shape != want.shape:
        return False
    return bool((got - want).norm() <= tol * want.norm() + torch.finfo(want.dtype).tiny)


def probe(
    f: ModelFn, params: Params, x: Tensor, cands: Mapping[str, Candidate]
) -> tuple[dict[str, LayerShape | None], dict[str, str], int, frozenset[str]]:
    """Check every candidate on ``x`` (see the module docstring): the shapes of the ones that
    pass (None when their weight is not factored), the reasons of the others, the values per
    sample that the recorded layers hold, and the layers whose output is changed in place
    downstream."""
    logits, seen = recorded_forward(f, params, x, {n: c[:2] for n, c in cands.items()})
    b, c = logits.shape
    reasons = {}
    for name in cands:
        calls = seen.get(name, [])
        if len(calls) != 1:
            reasons[name] = f"called {len(calls)} times in one forward"
        elif calls[0].stale:
            reasons[name] = "its input is changed in place after it runs"
    good = [n for n in cands if n not in reasons]
    cot = torch.full((1, c), c**-0.5, dtype=logits.dtype, device=logits.device)
    grads = output_gradients(logits, [seen[n][0].out for n in good], cot)
    ref = sample_gradients(f, params, x, [q for n in good for q in cands[n][2].values()])
    tol = 1e-3 if logits.dtype in (torch.float32, torch.float16, torch.bfloat16) else 1e-9
    shapes: dict[str, LayerShape | None] = {}
    for name, g in zip(good, grads, strict=True):
        try:
            fac, got = layer_gradients(cands[name], seen[name][0].captured, g)
            if fac is not None:
                got[cands[name][2][cands[name][1].factored]] = contract(fac)
        except (RuntimeError, ValueError, NotImplementedError) as exc:
            reasons[name] = f"its rule failed: {exc}"
            continue
        bad = [q for q in cands[name][2].values() if not _close(got[q], ref[q], tol)]
        if bad:
            reasons[name] = f"per-sample gradients of {bad} differ from autograd's"
            continue
        shapes[name] = fac.shape if fac is not None else None
    acts = sum(s.captured.numel() + s.out.numel() for calls in seen.values() for s in calls)
    cloned = frozenset(n for n, calls in seen.items() if any(s.changed_downstream for s in calls))
    return shapes, reasons, acts // max(b, 1), cloned


def plan_kernel(
    f: ModelFn,
    params: Params,
    module: nn.Module,
    probe_x: Tensor,
    n: int,
    k: int,
    mode: JacobianMode,
    max_cols: int,
    force: LayerForm | None = None,
) -> Plan:
    """The plan for ``n`` samples and ``k`` kernel rows each: per layer the form by ``mode``
    (AUTO: :func:`~forgetbox.ntk.flops.choose_form`; STRUCTURED: structured; ``force``
    overrides both, for tests), demoted to contracted when the structured form's held factors
    would not fit one pass (``max_cols`` budget columns of ``n k`` values)."""
    cands = candidates(module, set(params))
    shapes, reasons, acts, cloned = probe(f, params, probe_x, cands)
    item = probe_x.element_size()
    layers = []
    for name, shape in shapes.items():
        m, rule, trainable = cands[name]
        owned = tuple(q for q in params if q in trainable.values())
        lp = LayerPlan(name, type(m).__name__, owned)
        if shape is not None:
            form = force or (
                LayerForm.STRUCTURED
                if mode is JacobianMode.STRUCTURED
                else choose_form(n, k, shape)
            )
            note = ""
            width = math.ceil(structured_bytes(k, shape, item) / (k * item))
            if form is LayerForm.STRUCTURED and width > max_cols:
                form, note = LayerForm.CONTRACTED, "structured factors exceed one pass's budget"
            lp = replace(
                lp,
                factored=trainable[rule.factored],
                shape=shape,
                form=form,
                structured_macs=structured_macs(n, k, shape),
                contracted_macs=contracted_macs(n, k, shape),
                note=note,
            )
        layers.append(lp)
    covered = {q for lp in layers for q in lp.params}
    fallback = tuple(q for q in params if q not in covered)
    return Plan(n, k, tuple(layers), fallback, reasons, acts, cloned)


@dataclass(frozen=True)
class Entry:
    """A piece of one pass: a layer's factors held whole (``param`` None: the structured form)
    or columns ``[lo, hi)`` of a parameter's per-sample gradients, from the rule of module
    ``layer`` (None: from ``vmap(jacrev)``). ``width``: budget columns (``n k`` values each)."""

    layer: str | None
    param: str | None
    lo: int = 0
    hi: int = 0
    width: int = 0


def entries(plan: Plan, params: Params, item: int) -> list[Entry]:
    """Every piece of work, in the order of the parameters (a layer at its first one)."""
    order = {q: i for i, q in enumerate(params)}
    items: list[tuple[int, Entry]] = []
    for lp in plan.layers:
        if lp.form is LayerForm.STRUCTURED:
            width = math.ceil(structured_bytes(plan.k, lp.shape, item) / (plan.k * item))
            items.append((min(order[q] for q in lp.params), Entry(lp.name, None, width=width)))
        for q in lp.params:
            if q != lp.factored or lp.form is LayerForm.CONTRACTED:
                size = params[q].numel()
                items.append((order[q], Entry(lp.name, q, 0, size, size)))
    for q in plan.fallback:
        items.append((order[q], Entry(None, q, 0, params[q].numel(), params[q].numel())))
    return [e for _, e in sorted(items, key=lambda t: t[0])]


def pack(items: list[Entry], max_cols: int) -> list[list[Entry]]:
    """Consecutive pieces in passes of at most ``max_cols`` budget columns; a parameter wider
    than that is split (its per-sample gradients then formed once per piece)."""
    groups: list[list[Entry]] = []
    current: list[Entry] = []
    size = 0
    for e in items:
        pieces = [e]
        if e.param is not None and e.width > max_cols:
            pieces = [
                replace(e, lo=lo, hi=min(e.hi, lo + max_cols), width=min(e.hi, lo + max_cols) - lo)
                for lo in range(e.lo, e.hi, max_cols)
            ]
        for piece in pieces:
            if current and size + piece.width > max_cols:
                groups.append(current)
                current, size = [], 0
            current.append(piece)
            size += piece.width
    if current:
        groups.append(current)
    return groups
