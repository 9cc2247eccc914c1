"""Preparing deletion: factor the kernel of the whole training set once (see
:mod:`forgetbox.deletion.prepared`)."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import ntk
from ..functional import flatten, select_trainable
from ..hashing import state_sha256, tensors_sha256
from ..inputs import as_tensors
from ..ntk.memory import dense_memory_estimate, itemsize
from ..ntk.options import resolve_options
from ..ntk.param_space import gram_and_rhs
from .prepared import PreparedKernel
from .prepared_params import PreparedParams


@ntk.full_precision()
def prepare(
    model: nn.Module,
    data,
    *,
    weight_decay: float,
    pretrained: nn.Module | None = None,
    loss: str = "ce",
    around=None,
    dtype: torch.dtype | None = None,
    options: ntk.NTKOptions | None = None,
    trainable=None,
    **overrides,
) -> PreparedKernel:
    """Factor the kernel of the whole training set ``data = (x, y)`` once.

    ``pretrained`` (w0) keeps the weight-decay anchor in the linearization, as
    :func:`forgetbox.ntk.ntk_direction` does with ``pretrained=``. ``options``
    (:class:`~forgetbox.ntk.NTKOptions`; keyword ``overrides`` such as ``kernel="pseudo"`` or
    ``memory_budget=``): the kernel and the memory plan. Cost: one kernel build and one Cholesky
    factorization of ``(n rows)^2`` float64 values; memory: the dense path's
    (:func:`forgetbox.ntk.memory.dense_memory_estimate`). ``trainable``: the parameters
    fine-tuning trained (as for :func:`forgetbox.scrub`; requests must name the same).
    In parameter space (``solver="param"``, or ``auto`` when the trained parameters are fewer
    than the kernel's rows): one pass accumulating ``J^T J`` and a ``(p, p)`` factorization,
    returning a :class:`~forgetbox.deletion.prepared_params.PreparedParams`.
    """
    start = time.perf_counter()
    model = copy.deepcopy(model)
    names = select_trainable(model, trainable)
    if pretrained is not None:
        pretrained = copy.deepcopy(pretrained)
        select_trainable(pretrained, names)
    opts = resolve_options(options, overrides)
    x, y = as_tensors(data, "data")
    if len(x) < 2:
        raise ValueError("data: at least two samples are needed")
    prob = ntk.build_problem(
        model,
        x,
        y,
        len(x),
        weight_decay=weight_decay,
        loss=loss,
        around=around,
        dtype=dtype,
        pretrained=pretrained,
        options=opts,
    )
    n, c = prob.r.shape
    hashes = {
        "weights_sha256": state_sha256(model),
        "data_sha256": tensors_sha256(x, y),
        "pretrained_sha256": state_sha256(pretrained) if pretrained is not None else None,
        "around_sha256": tensors_sha256(flatten(prob.params)),
    }
    if _in_parameter_space(prob, opts):
        return _prepare_params(prob, loss, hashes, start)
    need = dense_memory_estimate(n * prob.rows, prob.num_params, itemsize(prob.r.dtype))
    if need > prob.budget:
        raise ntk.MemoryBudgetError(
            f"preparing the {prob.kernel.value} kernel of {n} samples needs about "
            f"{need / 2**30:.2f} GiB (budget {prob.budget / 2**30:.2f} GiB)"
            + ("; the pseudo-NTK needs c^2 times less" if prob.kernel is ntk.Kernel.EXACT else "")
        )
    K, J = prob.kernel_matrix()
    K.diagonal().add_(n * prob.lam)
    L = ntk.cholesky_(K).tril_()  # factored in the kernel's own storage
    del K
    r, _ = ntk.kernel_rows(prob.r, prob.kernel)
    alpha = ntk.solve_factored(L, r)
    coef = alpha.reshape(n, c).to(prob.r.dtype)
    jt_alpha = prob.pullback(coef, J)
    del J
    return PreparedKernel(
        chol=L, alpha=alpha, jt_alpha=jt_alpha.detach(), **_state(prob, loss, hashes, start)
    )


def _state(prob, loss: str, hashes: dict, start: float) -> dict:
    """The fields a prepared state shares in kernel and parameter space."""
    n, c = prob.r.shape
    return {
        "kernel": prob.kernel.value,
        "loss": str(ntk.Loss(loss).value),
        "weight_decay": prob.lam,
        "n": n,
        "c": c,
        "residuals": prob.r.detach(),
        "around": flatten(prob.params).detach(),
        "anchor": prob.anchor,
        "hashes": hashes,
        "seconds": time.perf_counter() - start,
    }


def _in_parameter_space(prob, opts: ntk.NTKOptions) -> bool:
    """Whether to prepare in parameter space: asked for (``solver="param"``), or ``auto`` and
    the trained parameters are fewer than the kernel's rows (as
    :func:`forgetbox.ntk.choose_solver` decides for a scrub)."""
    if opts.solver not in (ntk.Solver.PARAM, ntk.Solver.AUTO):
        return False
    if prob.kernel is ntk.Kernel.PSEUDO and opts.solver is ntk.Solver.AUTO:
        return False
    return ntk.choose_solver(prob, opts.solver, opts.nystrom_rank) is ntk.Solver.PARAM


def _prepare_params(prob, loss: str, hashes: dict, start: float) -> PreparedParams:
    """Accumulate ``J^T J`` and ``J^T r`` over D in one pass and factor ``J^T J + |D| lambda I``
    (:mod:`forgetbox.deletion.prepared_params`)."""
    n, c = prob.r.shape
    G, b = gram_and_rhs(prob.f, prob.params, prob.x, prob.r, 0, n, prob.chunk)
    G.diagonal().add_(n * prob.lam)
    L = ntk.cholesky(G, "the parameter-space system")
    del G
    jt_alpha = ntk.solve_factored(L, b[:, None])[:, 0].to(prob.r.dtype)
    state = _state(prob, loss, hashes, start)
    return PreparedParams(chol=L, alpha=b[:, None], jt_alpha=jt_alpha.detach(), **state)
