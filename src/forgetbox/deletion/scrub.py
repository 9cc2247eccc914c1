"""Scrub your own model: :func:`scrub`.

>>> result = forgetbox.scrub(model, pretrained=w0, retain=(x_r, y_r), forget=(x_f, y_f))
>>> result.model            # the scrubbed nn.Module
>>> result.certificate      # bounds (nats), errors before/after, hashes, timings

Nothing is written by :func:`scrub`.
"""

from __future__ import annotations

import copy
import resource
import time
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from .. import methods
from ..checkpoints import CheckpointError
from ..data.cohorts import retain_mask
from ..functional import assert_finite, flatten, parameters_of
from ..inputs import as_tensors
from ..methods import ForgetConfig, Method
from ..training import FinetuneConfig, predict
from .certificate import certificate
from .prepared import PreparedKernel


@dataclass(frozen=True)
class ScrubResult:
    """The scrubbed model and everything that produced it (see ``docs/certificate.md``)."""

    model: nn.Module
    method: str
    delta: Tensor | None
    noise_variance: Tensor | None
    scale: float | None
    seconds: dict[str, float]
    certificate: dict = field(default_factory=dict)


def scrub(
    model: nn.Module,
    *,
    pretrained: nn.Module,
    retain=None,
    forget=None,
    data=None,
    prepared: PreparedKernel | None = None,
    kernel: str = "exact",
    method: Method | str = Method.NTK_FISHER,
    alpha: float | None = None,
    weight_decay: float = 0.1,
    loss: str = "ce",
    solver: str = "auto",
    reference: nn.Module | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
    test=None,
    memory_budget: int | None = None,
    forget_indices=None,
    queries_per_subset: int = 25,
    config: ForgetConfig | None = None,
) -> ScrubResult:
    """Scrub the cohort ``forget`` from ``model`` (fine-tuned from ``pretrained`` = w0).

    ``retain``/``forget``/``test``: ``(inputs, labels)`` tensors, datasets or data loaders.
    Or ``data`` (the whole training set D) with ``forget_indices``: then D_r is D without them.
    ``prepared``: a :class:`~forgetbox.deletion.PreparedKernel` of this model and ``data``; the
    NTK step is then answered from it (fast), for the cohort ``prepared.forgotten`` plus
    ``forget_indices`` (earlier requests stay forgotten; the state is updated in place).
    ``kernel``: ``"exact"`` NTK or ``"pseudo"``-NTK (see :class:`forgetbox.ntk.Kernel`).
    ``method``: one of :data:`forgetbox.methods.METHODS` (default ``ntk_fisher``, eq. 11).
    ``alpha``: noise scale (default: the method's, see :data:`methods.DEFAULT_ALPHA`).
    ``weight_decay``: the lambda of fine-tuning's (lambda/2)||w - w0||^2.
    ``reference``: a model trained on D_r alone; without it the bounds are measured against the
    NTK's linearized prediction of w(D_r) and labelled as an estimate.
    ``generator``/``seed``: the noise draw (a generator, when given, supplies the seed).
    The input model is not modified. BatchNorm is used in eval mode throughout.
    """
    t_start = time.perf_counter()
    method = Method(method)
    retain, forget = _sets(data, forget_indices, prepared, retain, forget)
    xr, yr = as_tensors(retain, "retain")
    xf, yf = as_tensors(forget, "forget")
    if len(xf) == 0:
        raise ValueError("forget: the cohort is empty")
    test_pair = as_tensors(test, "test") if test is not None else None
    _check_models(model, pretrained, {"retain": (xr, yr), "forget": (xf, yf)})
    if generator is not None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    cfg = _config(config, weight_decay, alpha, loss, solver, memory_budget, kernel, prepared)
    direction = None
    if prepared is not None:
        _check_prepared(prepared, cfg, method, pretrained)
        direction = prepared.request(model, data, forget_indices)
    model = copy.deepcopy(model).eval()
    res = _forget(method, model, pretrained, (xr, yr), (xf, yf), cfg, seed, direction)
    t_method = time.perf_counter() - t_start
    t_cert = time.perf_counter()
    cert = certificate(
        model,
        res.model,
        res,
        pretrained=pretrained,
        retain=(xr, yr),
        forget=(xf, yf),
        test=test_pair,
        reference=reference,
        config=cfg,
        seed=seed,
        forget_indices=forget_indices,
        queries_per_subset=queries_per_subset,
    )
    now = time.perf_counter()
    seconds = {"method": t_method, "certificate": now - t_cert, "total": now - t_start}
    cert["timings_seconds"] = seconds
    cert["peak_memory_bytes"] = _peak_rss_bytes()
    return ScrubResult(
        res.model, method.value, res.delta, res.noise_variance, res.scale, seconds, cert
    )


def _forget(method, model, pretrained, retain, forget, cfg, seed, direction):
    res = methods.forget(
        method, model, pretrained, retain, forget, cfg, seed=seed, direction=direction
    )
    if not torch.isfinite(flatten(parameters_of(res.model))).all():
        raise ValueError(
            "scrubbing produced non-finite weights (ill-conditioned problem); "
            "increase weight_decay or use dtype float64"
        )
    return res


def _sets(data, forget_indices, prepared, retain, forget):
    """``(retain, forget)`` from what the caller gave: the two sets, or D with indices."""
    if data is not None:
        if forget_indices is None:
            raise ValueError("with `data`, give `forget_indices` (indices into data)")
        if retain is not None or forget is not None:
            raise ValueError("give either `data` with `forget_indices`, or `retain` and `forget`")
        return split_cohort(data, forget_indices, prepared)
    if prepared is not None:
        raise ValueError("a prepared kernel needs `data` (the training set it was prepared on)")
    if retain is None or forget is None:
        raise ValueError("give `retain` and `forget` (or `data` with `forget_indices`)")
    return retain, forget


def _config(base, weight_decay, alpha, loss, solver, memory_budget, kernel, prepared):
    """The methods' configuration: ``base`` with the explicit settings of :func:`scrub`."""
    base = base or ForgetConfig()
    ntk_options = base.ntk.replace(
        solver=solver,
        memory_budget=memory_budget,
        kernel=kernel if prepared is None else prepared.kernel,
    )
    return replace(
        base,
        weight_decay=weight_decay,
        alpha=alpha,
        loss=loss,
        ntk=ntk_options,
        train=FinetuneConfig(**{**base.train.__dict__, "weight_decay": weight_decay}),
    )


def _check_models(model: nn.Module, pretrained: nn.Module, sets: dict) -> None:
    assert_finite(parameters_of(model), "model weights")
    assert_finite(parameters_of(pretrained), "pre-trained weights")
    same_architecture(model, pretrained)
    for name, (x, y) in sets.items():
        check_model_accepts(model, x, y, name)


def check_model_accepts(model: nn.Module, x: Tensor, y: Tensor, name: str) -> int:
    """The model's number of outputs; refuses inputs it cannot take and labels beyond them."""
    try:
        with torch.no_grad():
            out = predict(model, x[:2])
    except RuntimeError as exc:
        raise ValueError(
            f"{name}: the model rejects inputs of shape {tuple(x.shape[1:])}: {exc}"
        ) from exc
    c = out.shape[-1]
    if len(y) and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"{name}: labels must lie in [0, {c}) for a model with {c} outputs")
    return c


def split_cohort(data, forget_indices, prepared: PreparedKernel | None):
    """``(retain, forget)`` of D for the cohort (plus a prepared state's earlier cohorts)."""
    x, y = as_tensors(data, "data")
    idx = torch.as_tensor(forget_indices, dtype=torch.long).reshape(-1)
    if len(idx) == 0:
        raise ValueError("forget: the cohort is empty")
    if idx.min() < 0 or idx.max() >= len(x):
        raise ValueError(f"forget_indices must lie in [0, {len(x)})")
    if prepared is not None:
        idx = torch.cat([prepared.forgotten, idx])
    keep = retain_mask(len(x), idx)
    if not keep.any():
        raise ValueError("the cohorts cover the whole training set")
    return (x[keep], y[keep]), (x[idx], y[idx])


def _check_prepared(prep: PreparedKernel, cfg: ForgetConfig, method: Method, pretrained) -> None:
    if method not in (Method.NTK, Method.NTK_FISHER):
        raise ValueError(f"a prepared kernel answers the NTK methods, not {method.value!r}")
    mismatch = []
    if abs(prep.weight_decay - cfg.weight_decay) > 1e-12 * max(1.0, cfg.weight_decay):
        mismatch.append(f"weight_decay {prep.weight_decay} (asked {cfg.weight_decay})")
    if prep.loss != cfg.loss:
        mismatch.append(f"loss {prep.loss} (asked {cfg.loss})")
    if prep.anchored != cfg.anchored:
        mismatch.append(f"anchored={prep.anchored} (asked {cfg.anchored})")
    if cfg.around != "trained":
        mismatch.append("linearization at w(D) (asked w0)")
    if mismatch:
        raise ValueError("the prepared kernel was made with " + ", ".join(mismatch))
    prep.check_pretrained(pretrained)


def same_architecture(model: nn.Module, pretrained: nn.Module) -> None:
    """Refuse a w0 whose tensors differ in name or shape from the model's."""
    a = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in pretrained.state_dict().items()}
    if a != b:
        diff = sorted(set(a) ^ set(b))[:3] or [k for k in a if a[k] != b.get(k)][:3]
        raise CheckpointError(
            f"pre-trained weights do not match the model's architecture (differs at {diff})"
        )


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024
