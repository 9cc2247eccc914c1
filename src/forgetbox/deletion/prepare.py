"""Preparing deletion (:func:`prepare`): factor the kernel of the whole training set once (the
engine's :func:`forgetbox.ntk.prepare_state`) and bind the state to the weights, the data and
w0 it was made for, by SHA-256; the checks a request makes against that binding; and the
settings a prepared state fixes for its requests."""

from __future__ import annotations

import copy
import time

import torch
from torch import nn

from .. import ntk
from ..checkpoints import CheckpointError
from ..functional import flatten, select_trainable
from ..hashing import data_sha256, state_sha256, tensors_sha256
from ..inputs import as_tensors
from ..methods import CertifiedState, ForgetConfig, Method, prepare_certified, resolve_config


@ntk.full_precision()
def prepare(
    model: nn.Module,
    data,
    *,
    pretrained: nn.Module | None = None,
    config: ForgetConfig | None = None,
    weight_decay: float | None = None,
    loss: ntk.Loss | str | None = None,
    dtype: torch.dtype | None = None,
    options: ntk.NTKOptions | None = None,
    trainable=None,
    certified: bool = False,
) -> ntk.PreparedKernel | CertifiedState:
    """Factor the kernel of the whole training set ``data = (x, y)`` once, for many requests.

    ``config`` (:class:`~forgetbox.methods.ForgetConfig`) or the explicit ``weight_decay``,
    ``loss``, ``dtype`` and ``options`` (:class:`~forgetbox.ntk.NTKOptions`: kernel, solver,
    memory budget) say what is linearized and how; an explicit argument that contradicts
    ``config`` is refused. ``pretrained`` (w0) is needed by the anchored linearization (the
    default). The state linearizes at the trained weights. ``trainable``: the parameters
    fine-tuning trained (as for :func:`forgetbox.scrub`; requests must name the same). In
    parameter space (``solver="param"``, or ``auto`` when the trained parameters are fewer than
    the kernel's rows) a request is a Woodbury downdate of a ``(p, p)`` factor
    (:class:`~forgetbox.ntk.PreparedParams`). Cost and memory: :func:`forgetbox.ntk.prepare_state`.

    ``certified``: the kernel of a :class:`~forgetbox.ntk.LinearizedModel` at its w0 over D, for
    certified requests (:class:`~forgetbox.methods.CertifiedState`; docs/certified.md): it
    depends on neither lambda nor the loss, which each request states (``weight_decay``,
    ``loss`` and ``pretrained`` are not used: w0 is part of the linearized model).
    """
    start = time.perf_counter()
    cfg = resolve_config(config, weight_decay=weight_decay, loss=loss, dtype=dtype, options=options)
    if certified:
        return _prepare_certified(model, data, cfg, trainable)
    if cfg.linearization.around is not ntk.Around.TRAINED:
        raise ValueError("a prepared state linearizes at the trained weights (around='trained')")
    model = copy.deepcopy(model)
    names = select_trainable(model, trainable)
    if pretrained is not None:
        pretrained = copy.deepcopy(pretrained)
        select_trainable(pretrained, names)
    x, y = as_tensors(data, "data")
    if len(x) < 2:
        raise ValueError("data: at least two samples are needed")
    prob = ntk.build_problem(
        model, x, y, len(x), cfg.linearization, pretrained=pretrained, options=cfg.ntk
    )
    hashes = {
        "weights_sha256": state_sha256(model),
        "data_sha256": data_sha256(x, y),
        "pretrained_sha256": state_sha256(pretrained) if pretrained is not None else None,
        "around_sha256": tensors_sha256(flatten(prob.params)),
    }
    return ntk.prepare_state(prob, cfg.ntk, hashes=hashes, started=start)


def _prepare_certified(model: nn.Module, data, cfg: ForgetConfig, trainable) -> CertifiedState:
    """The kernel of the linearized ``model`` over D, bound to its weights and to D."""
    if not isinstance(model, ntk.LinearizedModel):
        raise ValueError(
            "a certified state needs a linearized model (forgetbox.train_linearized or "
            "`forgetbox train --linearized`)"
        )
    if trainable is not None:
        raise ValueError("a linearized model states its own trained parameters; drop trainable")
    x, y = as_tensors(data, "data")
    if len(x) < 2:
        raise ValueError("data: at least two samples are needed")
    hashes = {
        "weights_sha256": state_sha256(model),
        "data_sha256": data_sha256(x, y),
        "pretrained_sha256": None,  # w0 is part of the linearized model's weights
    }
    return prepare_certified(model, (x, y), cfg.ntk, hashes=hashes)


def check_binding(state: ntk.PreparedKernel, model: nn.Module, data) -> tuple:
    """Refuse a model or data other than those ``state`` was prepared for; the data tensors."""
    if state_sha256(model) != state.hashes["weights_sha256"]:
        raise CheckpointError(
            "the prepared kernel belongs to other weights (SHA-256 mismatch); a prepared "
            "state answers requests for the model it was prepared for: pass those original "
            "weights (every request is answered from them) or prepare again"
        )
    x, y = as_tensors(data, "data")
    if data_sha256(x, y) != state.hashes["data_sha256"]:
        raise CheckpointError(
            "the prepared kernel belongs to other data (SHA-256 mismatch of inputs and "
            "labels): pass the same training set, in the same order"
        )
    return x, y


def check_pretrained(state: ntk.PreparedKernel, pretrained: nn.Module | None) -> None:
    """Refuse a w0 other than the one an anchored state was prepared with."""
    want = state.hashes.get("pretrained_sha256")
    if want is not None and (pretrained is None or state_sha256(pretrained) != want):
        raise CheckpointError("the prepared kernel was anchored at other pre-trained weights")


# the settings a prepared state fixes: (name, where in a ForgetConfig)
FIXED = {
    "weight_decay": "linearization",
    "loss": "linearization",
    "around": "linearization",
    "anchored": "linearization",
    "kernel": "ntk",
}


def adopt_prepared(
    cfg: ForgetConfig, state: ntk.PreparedKernel, method: Method, stated: frozenset[str]
) -> ForgetConfig:
    """``cfg`` with the settings ``state`` fixes (its linearization and kernel). A setting the
    caller ``stated`` (by name, see :data:`FIXED`) with another value is refused, naming both;
    one left unstated is taken from the state."""
    if state.space == CertifiedState.space:  # the kernel alone: lambda and loss are the request's
        if Method(method) is not Method.CERTIFIED:
            raise ValueError(
                "a certified state answers certified requests (--certify), not "
                f"{Method(method).value!r}"
            )
        return cfg
    if Method(method) not in (Method.NTK, Method.NTK_FISHER):
        raise ValueError(
            f"a prepared kernel answers the NTK methods, not {Method(method).value!r}"
            + (
                " (prepare with --certify for certified requests)"
                if Method(method) is Method.CERTIFIED
                else ""
            )
        )
    fixed = {**{k: getattr(state.linearization, k) for k in FIXED if k != "kernel"}}
    fixed["kernel"] = ntk.Kernel(state.kernel)
    mismatch = []
    for name, want in fixed.items():
        have = getattr(getattr(cfg, FIXED[name]), name)
        if name in stated and not _same(have, want):
            mismatch.append(f"{name} {want} (asked {have})")
    if mismatch:
        raise ValueError("the prepared kernel was made with " + ", ".join(mismatch))
    lin = {k: v for k, v in fixed.items() if FIXED[k] == "linearization"}
    return cfg.replace(
        linearization=cfg.linearization.replace(**lin),
        ntk=cfg.ntk.replace(kernel=fixed["kernel"]),
    )


def _same(a, b) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= 1e-12 * max(1.0, abs(b))
    return a == b
