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
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .. import methods, ntk
from ..checkpoints import CheckpointError
from ..cohort import Cohort
from ..functional import assert_finite, flatten, parameters_of, select_trainable
from ..hashing import data_sha256, state_sha256
from ..inputs import Rows, as_rows, check_indexable
from ..methods import ForgetConfig, Method, resolve_config
from ..methods.certified import CertifyConfig
from ..training import predict
from ..training import recompute_batchnorm as recompute_bn
from .certificate import certificate
from .prepare import FIXED, adopt_prepared, check_binding, check_pretrained


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
    pretrained: nn.Module | None = None,
    retain=None,
    forget=None,
    data=None,
    forget_indices=None,
    prepared: ntk.PreparedKernel | None = None,
    method: Method | str | None = None,
    config: ForgetConfig | None = None,
    weight_decay: float | None = None,
    loss: ntk.Loss | str | None = None,
    dtype: torch.dtype | None = None,
    alpha: float | None = None,
    step_scale: float | None = None,
    options: ntk.NTKOptions | None = None,
    certify: CertifyConfig | None = None,
    reference: nn.Module | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
    test=None,
    queries_per_subset: int = 25,
    recompute_batchnorm: bool = False,
    trainable=None,
) -> ScrubResult:
    """Scrub the cohort ``forget`` from ``model`` (fine-tuned from ``pretrained`` = w0; a
    :class:`~forgetbox.ntk.LinearizedModel` carries its own w0, and ``pretrained`` may be left
    out).

    ``retain``/``forget``/``test``: ``(inputs, labels)`` tensors, datasets or data loaders.
    Or ``data`` (the whole training set D, in a fixed order) with ``forget_indices`` (or a
    checked :class:`~forgetbox.cohort.Cohort`): then D_r is D without them.
    ``prepared``: a :class:`~forgetbox.ntk.PreparedKernel` of this model and ``data``
    (:func:`forgetbox.prepare`); the NTK step is then answered from it (fast), for the cohort
    ``prepared.forgotten`` plus ``forget_indices`` (earlier requests stay forgotten; the state
    is updated in place). Its linearization and kernel apply (a setting stated otherwise is
    refused). For ``certified``, a :class:`~forgetbox.methods.CertifiedState`
    (``forgetbox.prepare(..., certified=True)``): the removal takes D_r's rows of its kernel.
    ``method``: one of :data:`forgetbox.methods.METHODS` (default ``ntk_fisher``, eq. 11; with
    ``certify``, ``certified``). ``certify``
    (:class:`~forgetbox.methods.certified.CertifyConfig`): the (epsilon, delta) a certified
    deletion states, for a :class:`~forgetbox.ntk.LinearizedModel` (docs/certified.md).
    ``config``: a :class:`~forgetbox.methods.ForgetConfig` (``ForgetConfig.authors()`` for the
    authors' notebook choices); or, instead, the explicit settings ``weight_decay`` (the lambda
    of fine-tuning's (lambda/2)||w - w0||^2, default 0.1), ``loss``, ``dtype``, ``alpha`` (noise
    scale, default the method's), ``step_scale`` and ``options``
    (:class:`~forgetbox.ntk.NTKOptions`: solver, kernel, memory budget, CG knobs). A setting
    given both ways with different values is refused.
    ``reference``: a model trained on D_r alone; without it the bounds are labelled with what
    they were measured against (an estimate, or for the NTK methods their own prediction).
    ``generator``/``seed``: the noise draw (a generator, when given, supplies the seed).
    ``recompute_batchnorm``: replace the scrubbed model's BatchNorm running statistics by their
    average over D_r. ``trainable``: which parameters fine-tuning trained (names or patterns,
    e.g. ``"layer4.*,fc.*"``; default: those with ``requires_grad``); the scrub, noise, bounds and
    certificate then work in that subspace and every other weight is returned bit-identical.
    The input model is not modified. BatchNorm is used in eval mode.
    """
    t_start = time.perf_counter()
    method = _method(method, certify)
    explicit = dict(
        weight_decay=weight_decay, loss=loss, dtype=dtype, alpha=alpha, step_scale=step_scale
    )
    cfg = resolve_config(config, options=options, certify=certify, **explicit)
    if prepared is not None:
        cfg = adopt_prepared(cfg, prepared, method, _stated(config, options, explicit))
    pretrained = _pretrained_of(model, pretrained)
    model, pretrained, reference, notes = _full_precision_models(model, pretrained, reference)
    model, pretrained, reference, trained = _trainable_copies(
        model, pretrained, reference, trainable
    )
    cohort, data_hash = None, None
    if data is not None:
        retain, forget, cohort, data_hash = _cohort_sets(
            data, forget_indices, prepared, retain, forget
        )
    elif prepared is not None:
        raise ValueError("a prepared kernel needs `data` (the training set it was prepared on)")
    elif retain is None or forget is None:
        raise ValueError("give `retain` and `forget` (or `data` with `forget_indices`)")
    xr, yr = as_rows(retain, "retain")
    xf, yf = as_rows(forget, "forget")
    if len(xf) == 0:
        raise ValueError("forget: the cohort is empty")
    test_pair = as_rows(test, "test") if test is not None else None
    sets = {"retain": (xr, yr), "forget": (xf, yf)} | ({"test": test_pair} if test_pair else {})
    _check_models(model, pretrained, sets)
    if generator is not None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    direction = certified_kernel = None
    if prepared is not None:
        x, _ = check_binding(prepared, model, data)
        check_pretrained(prepared, pretrained)
        if method is Method.CERTIFIED:  # D_r's rows of the kernel of D
            certified_kernel = (prepared, prepared.retained(x, cohort))
        else:
            direction = prepared.request(model, x, cohort)
    model = copy.deepcopy(model).eval()
    res = _forget(
        method, model, pretrained, (xr, yr), (xf, yf), cfg, seed, direction, certified_kernel
    )
    if recompute_batchnorm:
        recompute_bn(res.model, xr)
        notes.append("BatchNorm running statistics of the scrubbed model recomputed on D_r")
    t_method = time.perf_counter() - t_start
    t_cert = time.perf_counter()
    labels = cohort.new if cohort is not None else forget_indices
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
        forget_indices=None if labels is None else _index_list(labels),
        queries_per_subset=queries_per_subset,
    )
    now = time.perf_counter()
    seconds = {"method": t_method, "certificate": now - t_cert, "total": now - t_start}
    cert["timings_seconds"] = seconds
    cert["peak_memory_bytes"] = _peak_rss_bytes()
    cert["notes"] = notes
    cert["trainable"] = _trainable_summary(model, trained)
    if certified_kernel is not None:
        prepared.answered(cohort)  # released and certified: the state now holds this cohort
    if data_hash is not None:
        cert["hashes"]["data_sha256"] = data_hash
    if recompute_batchnorm:
        cert["batchnorm"]["recomputed_on_retain"] = True
    return ScrubResult(
        res.model, method.value, res.delta, res.noise_variance, res.scale, seconds, cert
    )


def _method(method, certify) -> Method:
    """The method asked for: ``certified`` with ``certify``, else ``ntk_fisher`` by default."""
    if method is None:
        return Method.CERTIFIED if certify is not None else Method.NTK_FISHER
    chosen = Method.parse(method, "method")
    if certify is not None and chosen is not Method.CERTIFIED:
        raise ValueError(f"certify= states a certified deletion, but method={chosen.value!r}")
    return chosen


def _stated(config: ForgetConfig | None, options, explicit: dict) -> frozenset[str]:
    """The settings a prepared state fixes that the caller stated: all of them with a
    ``config``, else the explicit arguments given (``options`` states the kernel)."""
    if config is not None:
        return frozenset(FIXED)
    named = {k for k, v in explicit.items() if v is not None} & set(FIXED)
    return frozenset(named | ({"kernel"} if options is not None else set()))


def _full_precision_models(model, pretrained, reference):
    """Refuse integer weights; work on float32 copies of float16 / bfloat16 models (noted)."""
    notes = []
    out = []
    for name, m in (("model", model), ("pretrained", pretrained), ("reference", reference)):
        if m is None:
            out.append(None)
            continue
        dtypes = {p.dtype for p in m.parameters()}
        if any(not d.is_floating_point for d in dtypes):
            raise ValueError(f"{name}: integer weights cannot be scrubbed (dtypes {dtypes})")
        low = dtypes & {torch.float16, torch.bfloat16}
        if low:
            m = copy.deepcopy(m).float()
            notes.append(f"{name}: {sorted(str(d) for d in low)} weights cast to float32")
        out.append(m)
    return (*out, notes)


def _trainable_copies(model, pretrained, reference, trainable):
    """Copies of the models with the same parameters marked trainable (``trainable``, or the
    model's own ``requires_grad``); the names of those parameters."""
    model = copy.deepcopy(model)
    if isinstance(model, ntk.LinearizedModel):  # its trained subset is its own
        if trainable is not None:
            raise ValueError("a linearized model fixes its trained parameters: drop trainable=")
        trained, names = select_trainable(model, None), list(model.trained)
    else:
        trained = names = select_trainable(model, trainable)
    out = [model]
    for m, marked in ((pretrained, names), (reference, trained)):
        if m is not None:
            m = copy.deepcopy(m)
            select_trainable(m, marked)
        out.append(m)
    return (*out, trained)


def _trainable_summary(model: nn.Module, trained: list[str]) -> dict:
    sizes = {n: p.numel() for n, p in model.named_parameters()}
    return {
        "parameters": sum(sizes[n] for n in trained),
        "of": sum(sizes.values()),
        "tensors": len(trained),
        "names": trained if len(trained) <= 64 else trained[:64] + ["..."],
    }


def _forget(method, model, pretrained, retain, forget, cfg, seed, direction, certified_kernel):
    res = methods.forget(
        method,
        model,
        pretrained,
        retain,
        forget,
        cfg,
        seed=seed,
        direction=direction,
        prepared=certified_kernel,
    )
    if not torch.isfinite(flatten(parameters_of(res.model))).all():
        raise ValueError(
            "scrubbing produced non-finite weights (ill-conditioned problem); "
            "increase weight_decay or use dtype float64"
        )
    return res


def _cohort_sets(data, forget_indices, prepared, retain, forget):
    """``(retain, forget, cohort, data hash)`` of D for ``forget_indices``: the cohort checked once
    (against a prepared state's earlier requests), D_r without every cohort so far, D_f in index
    order (with a prepared state, every cohort so far in request order: it answers from the
    original weights)."""
    if forget_indices is None:
        raise ValueError("with `data`, give `forget_indices` (indices into data)")
    if retain is not None or forget is not None:
        raise ValueError("give either `data` with `forget_indices`, or `retain` and `forget`")
    check_indexable(data, "data")
    x, y = as_rows(data, "data")
    earlier = prepared.forgotten if prepared is not None else None
    cohort = Cohort.check(forget_indices, len(y), earlier)
    keep = cohort.retained()
    idx = cohort.all if prepared is not None else cohort.new.sort().values
    digest = data_sha256(x, y)  # streamed rows hash as the same data in memory does
    if isinstance(x, Rows):  # read from disk a batch at a time: views, nothing read here
        return (x.view(keep.nonzero().squeeze(1)), y[keep]), (x.view(idx), y[idx]), cohort, digest
    return (x[keep], y[keep]), (x[idx], y[idx]), cohort, digest


def _pretrained_of(model: nn.Module, pretrained: nn.Module | None) -> nn.Module:
    """w0: given, or a linearized model's own (a given one must be that)."""
    if not isinstance(model, ntk.LinearizedModel):
        if pretrained is None:
            raise ValueError("give pretrained= (the weights the model was fine-tuned from)")
        return pretrained
    if pretrained is not None and state_sha256(pretrained) != state_sha256(model.base):
        raise CheckpointError("pretrained= is not the w0 the linearized model was built at")
    return model.base


def _check_models(model: nn.Module, pretrained: nn.Module, sets: dict) -> None:
    assert_finite(parameters_of(model), "model weights")
    assert_finite(parameters_of(pretrained), "pre-trained weights")
    same_architecture(model.base if isinstance(model, ntk.LinearizedModel) else model, pretrained)
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


def _index_list(indices) -> list[int]:
    """Indices as plain integers (for the certificate's hash)."""
    return [int(i) for i in torch.as_tensor(indices).reshape(-1).tolist()]


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
