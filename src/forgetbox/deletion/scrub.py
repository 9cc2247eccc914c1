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
from ..data.arrays import DataError
from ..data.cohorts import retain_mask, select_forget
from ..functional import assert_finite, flatten, parameters_of, select_trainable
from ..inputs import Rows, as_rows, check_indexable
from ..methods import ForgetConfig, Method
from ..training import predict
from ..training import recompute_batchnorm as recompute_bn
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
    forget_indices=None,
    prepared: PreparedKernel | None = None,
    method: Method | str = Method.NTK_FISHER,
    config: ForgetConfig | None = None,
    reference: nn.Module | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
    test=None,
    queries_per_subset: int = 25,
    recompute_batchnorm: bool = False,
    trainable=None,
    **settings,
) -> ScrubResult:
    """Scrub the cohort ``forget`` from ``model`` (fine-tuned from ``pretrained`` = w0).

    ``retain``/``forget``/``test``: ``(inputs, labels)`` tensors, datasets or data loaders.
    Or ``data`` (the whole training set D, in a fixed order) with ``forget_indices``: then D_r
    is D without them (indices are checked as the command line checks them).
    ``prepared``: a :class:`~forgetbox.deletion.PreparedKernel` of this model and ``data``; the
    NTK step is then answered from it (fast), for the cohort ``prepared.forgotten`` plus
    ``forget_indices`` (earlier requests stay forgotten; the state is updated in place).
    ``method``: one of :data:`forgetbox.methods.METHODS` (default ``ntk_fisher``, eq. 11).
    ``config``: a :class:`~forgetbox.methods.ForgetConfig`; ``settings`` set single fields
    instead, one source of truth either way (a setting given both ways and differently is an
    error): ``weight_decay`` (the lambda of fine-tuning's (lambda/2)||w - w0||^2, default 0.1),
    ``alpha`` (noise scale, default the method's), ``loss``, ``dtype``, and the NTK options
    ``solver``, ``kernel``, ``memory_budget`` (bytes), ``chunk``, ``nystrom_rank``, ``cg_tol``,
    ``cg_max_iter`` (:class:`~forgetbox.ntk.NTKOptions`); ``preset`` ("forgetbox" or "authors":
    the authors' notebook choices, :meth:`ForgetConfig.authors`) instead of ``config``.
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
    method = Method(method)
    cfg = settings_config(config, settings, prepared)
    model, pretrained, reference, notes = _full_precision_models(model, pretrained, reference)
    model, pretrained, reference, trained = _trainable_copies(
        model, pretrained, reference, trainable
    )
    retain, forget = _sets(data, forget_indices, prepared, retain, forget)
    xr, yr = as_rows(retain, "retain")
    xf, yf = as_rows(forget, "forget")
    if len(xf) == 0:
        raise ValueError("forget: the cohort is empty")
    test_pair = as_rows(test, "test") if test is not None else None
    sets = {"retain": (xr, yr), "forget": (xf, yf)} | ({"test": test_pair} if test_pair else {})
    _check_models(model, pretrained, sets)
    if generator is not None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    direction = None
    if prepared is not None:
        _check_prepared(prepared, cfg, method, pretrained)
        direction = prepared.request(model, data, forget_indices)
    model = copy.deepcopy(model).eval()
    res = _forget(method, model, pretrained, (xr, yr), (xf, yf), cfg, seed, direction)
    if recompute_batchnorm:
        recompute_bn(res.model, xr)
        notes.append("BatchNorm running statistics of the scrubbed model recomputed on D_r")
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
    cert["notes"] = notes
    cert["trainable"] = _trainable_summary(model, trained)
    if recompute_batchnorm:
        cert["batchnorm"]["recomputed_on_retain"] = True
    return ScrubResult(
        res.model, method.value, res.delta, res.noise_variance, res.scale, seconds, cert
    )


CONFIG_SETTINGS = ("weight_decay", "alpha", "loss", "dtype", "step_scale")
PRESET_SETTING = "preset"
NTK_SETTINGS = (
    "solver",
    "kernel",
    "memory_budget",
    "chunk",
    "nystrom_rank",
    "cg_tol",
    "cg_max_iter",
)


def settings_config(
    config: ForgetConfig | None, settings: dict, prepared: PreparedKernel | None = None
) -> ForgetConfig:
    """The methods' configuration from ``config`` and single ``settings`` (one source of
    truth: a setting given both ways with different values is refused)."""
    unknown = set(settings) - set(CONFIG_SETTINGS) - set(NTK_SETTINGS) - {PRESET_SETTING}
    if unknown:
        raise TypeError(f"scrub() got unknown settings {sorted(unknown)}")
    given = {k: v for k, v in settings.items() if v is not None}
    preset = given.pop(PRESET_SETTING, None)
    if preset is not None and config is not None:
        raise ValueError("give `preset` or `config`, not both (ForgetConfig.from_preset)")
    if prepared is not None:
        if given.get("kernel", prepared.kernel) != prepared.kernel:
            raise ValueError(
                f"kernel={given['kernel']!r} conflicts with the prepared state's "
                f"{prepared.kernel!r} kernel"
            )
        given["kernel"] = prepared.kernel
    base = config or ForgetConfig.from_preset(preset or "forgetbox")
    if config is not None:
        for name, value in given.items():
            have = getattr(config.ntk if name in NTK_SETTINGS else config, name)
            if have != value and not (name == "kernel" and prepared is not None):
                raise ValueError(
                    f"{name}={value!r} conflicts with config.{name}={have!r}: give it once"
                )
    top = {k: v for k, v in given.items() if k in CONFIG_SETTINGS}
    ntk_options = base.ntk.replace(**{k: v for k, v in given.items() if k in NTK_SETTINGS})
    cfg = replace(base, **top, ntk=ntk_options)
    # retraining (--verify-retrain, the retrain method) uses the same weight decay
    return replace(cfg, train=replace(cfg.train, weight_decay=cfg.weight_decay))


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
    trained = select_trainable(model, trainable)
    out = [model]
    for m in (pretrained, reference):
        if m is not None:
            m = copy.deepcopy(m)
            select_trainable(m, trained)
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
    """``(retain, forget)`` of D for the cohort (plus a prepared state's earlier cohorts),
    with the same checks as the command line's (:func:`forgetbox.data.select_forget`)."""
    check_indexable(data, "data")
    x, y = as_rows(data, "data")
    indices = _index_list(forget_indices)
    idx = select_forget(y, indices=indices)
    if prepared is not None:
        again = sorted(set(indices) & set(prepared.forgotten.tolist()))
        if again:
            raise DataError(f"forget indices {again[:5]} were already forgotten")
        idx = torch.cat([prepared.forgotten, torch.as_tensor(indices, dtype=torch.long)])
        if len(idx) >= len(y):
            raise DataError("the forget cohorts cover the whole training set")
    keep = retain_mask(len(x), idx)
    if isinstance(x, Rows):  # read from disk a batch at a time: views, nothing read here
        return (x.view(keep.nonzero().squeeze(1)), y[keep]), (x.view(idx), y[idx])
    return (x[keep], y[keep]), (x[idx], y[idx])


def _index_list(forget_indices) -> list[int]:
    idx = torch.as_tensor(forget_indices)
    if idx.is_floating_point() or idx.dtype == torch.bool:
        raise DataError(f"forget_indices must be integers, got {idx.dtype}")
    return [int(i) for i in idx.reshape(-1).tolist()]


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
