"""The linearization data of one NTK step: the model function at w_bar, the data D (retain
rows first), the residuals and the memory plan, validated once."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import parallel
from ..functional import (
    ModelFn,
    Params,
    assert_finite,
    flatten,
    model_function,
    parameters_of,
    unflatten,
)
from ..inputs import Rows, as_rows, concat
from .jacobian import jvp_all, vjp_sum
from .kernel import HeldJacobian
from .memory import default_chunk, default_memory_budget
from .options import Around, JacobianMode, Kernel, Linearization, Loss, NTKOptions
from .structured import build_summary, layer_kernel_and_jacobian


def residuals(logits: Tensor, labels: Tensor, loss: Loss | str = Loss.CE) -> Tensor:
    """Residual ``(n, c)``: softmax(logits) - onehot(y) for CE, logits - onehot(y) for MSE."""
    onehot = F.one_hot(labels, logits.shape[-1]).to(logits.dtype)
    if Loss.parse(loss, "loss") is Loss.CE:
        return torch.softmax(logits, -1) - onehot
    return logits - onehot


@dataclass(frozen=True)
class Problem:
    """D = (retain rows, then forget rows) linearized at w_bar.

    ``f``/``params``: the model function and w_bar; ``x``: inputs of D (a tensor, or
    :class:`~forgetbox.inputs.Rows` read a batch at a time); ``r``: residuals on D
    ``(n, c)`` (anchored when ``anchor`` = flat w0 is set); ``n_retain``: rows of D_r;
    ``linearization``: what was linearized (its weight decay is ``lam``); ``chunk``: samples per
    vjp/jvp chunk; ``budget``: memory budget (bytes); ``kernel``: exact or pseudo;
    ``chunk_option``: the caller's chunk (None lets the kernel build choose per parameter
    group); ``jacobian``: how the kernel is built
    (:class:`~forgetbox.ntk.options.JacobianMode`).
    """

    f: ModelFn
    params: Params
    x: Tensor | Rows
    r: Tensor
    n_retain: int
    linearization: Linearization
    chunk: int
    budget: int
    anchor: Tensor | None = None
    kernel: Kernel = Kernel.EXACT
    chunk_option: int | None = None
    jacobian: JacobianMode = JacobianMode.AUTO

    @property
    def lam(self) -> float:
        """The weight decay lambda."""
        return self.linearization.weight_decay

    @property
    def rows(self) -> int:
        """Kernel rows per sample: c (exact) or 1 (pseudo-NTK)."""
        return 1 if self.kernel is Kernel.PSEUDO else self.r.shape[1]

    @property
    def num_params(self) -> int:
        """Number of trained parameters p."""
        return sum(t.numel() for t in self.params.values())

    def kernel_matrix(self) -> tuple[Tensor, HeldJacobian | None]:
        """See :meth:`kernel_build` (without its summary)."""
        K, J, _ = self.kernel_build()
        return K, J

    def kernel_build(self) -> tuple[Tensor, HeldJacobian | None, dict]:
        """The problem's kernel over all of D (float64, ``(n rows, n rows)``), and the exact
        Jacobian columns left in memory (see :func:`kernel_and_jacobian`; never for the
        pseudo-NTK, whose Jacobian is not the one ``delta_w`` needs), built as ``jacobian``
        says (:func:`~forgetbox.ntk.structured.layer_kernel_and_jacobian`)."""
        K, J, report = layer_kernel_and_jacobian(
            self.f,
            self.params,
            self.x,
            jacobian=self.jacobian,
            memory_budget=self.budget,
            chunk=self.chunk_option,
            kernel=self.kernel,
        )
        return K, (J if self.kernel is Kernel.EXACT else None), build_summary(report)

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


def around_params(model: nn.Module, around, dtype: torch.dtype) -> Params:
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
            raise ValueError(f"the linearization point lacks parameters {sorted(missing)[:5]}")
        given = {k: around[k].detach() for k in base}
    else:
        raise TypeError("a linearization point is a module, a parameter dict or a flat vector")
    return {k: given[k].to(device, dtype) for k in base}


def linearization_point(
    model: nn.Module, linearization: Linearization, pretrained, point, dtype: torch.dtype
) -> Params:
    """w_bar: ``point`` when given (a module, parameter dict or flat vector), else the model's
    own weights or w0 as ``linearization.around`` says."""
    if point is not None:
        return around_params(model, point, dtype)
    if linearization.around is Around.PRETRAINED:
        if pretrained is None:
            raise ValueError("around='pretrained' linearizes at w0: give pretrained= (w0)")
        return around_params(model, pretrained, dtype)
    return parameters_of(model, dtype)


def build_problem(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    n_retain: int,
    linearization: Linearization,
    *,
    pretrained=None,
    point=None,
    options: NTKOptions | None = None,
) -> Problem:
    """Validated linearization data for D = (x, y), whose first ``n_retain`` rows are D_r.

    ``linearization``: the objective and the point (:class:`Linearization`); ``pretrained``: w0
    (a module, parameter dict or flat vector), needed when the linearization is anchored or
    taken at w0; ``point``: an explicit linearization point instead (studies, tests);
    ``options``: chunk and memory budget (:class:`NTKOptions`). Residuals are anchored (one
    jvp pass) when ``linearization.anchored``. Everything lives on the model's device.
    """
    opts = options or NTKOptions()
    if linearization.anchored and pretrained is None:
        raise ValueError(
            "an anchored linearization needs the pre-trained weights: give pretrained= (w0), "
            "or Linearization(anchored=False) for the authors' unanchored step"
        )
    dtype = linearization.dtype or next(model.parameters()).dtype
    params = linearization_point(model, linearization, pretrained, point, dtype)
    assert_finite(params, "model parameters")
    device = next(iter(params.values())).device
    f = model_function(model, dtype)
    x = x.to(device, dtype)
    y = y.to(device)

    def forward(i: int, j: int) -> Tensor:  # only the model's own errors are the inputs' fault
        try:
            return f(params, x[i:j])
        except torch.OutOfMemoryError:
            raise
        except RuntimeError as exc:
            raise ValueError(
                f"the model rejects inputs of shape {tuple(x.shape[1:])}: {exc}"
            ) from exc

    with torch.no_grad():  # in batches of 64: a larger forward only raises the peak memory
        logits = parallel.rows_of(forward, len(x), 64, lambda: forward(0, 1))
    c = logits.shape[-1]
    if y.min() < 0 or y.max() >= c:
        raise ValueError(f"labels must lie in [0, {c}) for a model with {c} outputs")
    budget = opts.memory_budget or default_memory_budget(device)
    p = sum(t.numel() for t in params.values())
    rows = 1 if opts.kernel is Kernel.PSEUDO else c
    chunk = opts.chunk or default_chunk(p, rows, dtype, budget, device)
    r = residuals(logits, y, linearization.loss)
    anchor = None
    if linearization.anchored:
        anchor = flatten(around_params(model, pretrained, dtype)).to(device)
        d = unflatten(flatten(params) - anchor, params)
        r = r - jvp_all(f, params, x, d, chunk).detach()
    return Problem(
        f=f,
        params=params,
        x=x,
        r=r,
        n_retain=n_retain,
        linearization=linearization,
        chunk=chunk,
        budget=budget,
        anchor=anchor,
        kernel=opts.kernel,
        chunk_option=opts.chunk,
        jacobian=opts.jacobian,
    )


def problem_for(
    model: nn.Module,
    retain,
    forget,
    linearization: Linearization,
    *,
    pretrained=None,
    point=None,
    options: NTKOptions | None = None,
) -> Problem:
    """:func:`build_problem` for D = retain then forget (both non-empty)."""
    xr, yr = as_rows(retain, "retain")
    xf, yf = as_rows(forget, "forget")
    if len(xf) == 0:
        raise ValueError("the forget set is empty: nothing to scrub")
    if len(xr) == 0:
        raise ValueError("the retain set is empty")
    x, y = concat(xr, xf), torch.cat([yr, yf])
    return build_problem(
        model, x, y, len(xr), linearization, pretrained=pretrained, point=point, options=options
    )
