"""Forgetting methods behind one interface: :func:`forget`, over a table of methods.

Each method takes the trained model w(D), the pre-trained w0, D_r, D_f and a
:class:`~forgetbox.methods.ForgetConfig`, and returns a
:class:`~forgetbox.methods.ForgetResult` with the scrubbed model and what it used (direction,
noise variance, scale, timings).

- ``original``: w(D) unchanged.
- ``retrain``: fine-tune from w0 on D_r alone, same recipe and seed (the gold reference).
- ``finetune``: continue training w(D) on D_r (section 5.3), 10 epochs of SGD at lr 0.01.
- ``fisher``: w(D) + noise N(0, alpha F^{-1}), F the diagonal Fisher on D_r at w(D) [16].
- ``ntk``: w(D) + trapezium-rescaled NTK direction (eq. 10).
- ``ntk_fisher``: the NTK point plus noise alpha F^{-1}, F computed at it on D_r (eq. 11).
- ``newton``: w - H^{-1} grad L_{D_r}(w) (eq. 12), H the damped Gauss-Newton matrix of the
  regularised D_r loss, solved matrix-free by CG.
- the baselines of other papers (issue 33, docs/methods.md): ``neggrad_plus``, ``scrub``,
  ``scrub_r`` (needs ``validation``), ``salun``, ``l1_sparse``; each trains a copy of w(D)
  with the settings of its own dataclass in the config (``config.neggrad`` and so on).
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from .. import ntk
from ..functional import flatten, load_flat_, parameters_of
from ..training import LRSchedule, finetune
from .certified import certified_release
from .certified_state import CertifiedState
from .config import DEFAULT_ALPHA, FinetuneAnchor, ForgetConfig, ForgetResult, Method
from .fisher import fisher_of, method_variance, noisy_weights
from .l1_sparse import l1_sparse
from .neggrad import neggrad_plus
from .newton import newton_step
from .ntk_scrub import ntk_point
from .salun import salun
from .scrub_teacher import scrub_rewind, scrub_student


class MethodDivergedError(ValueError):
    """A method's weights are not finite after forgetting (it diverged)."""


@dataclass(frozen=True)
class MethodCall:
    """What one method is asked to do: scrub ``forget_set`` from ``model`` = w(D)."""

    model: nn.Module
    w0: nn.Module
    retain: tuple[Tensor, Tensor]
    forget_set: tuple[Tensor, Tensor]
    config: ForgetConfig
    seed: int
    alpha: float
    retrain: Callable[[], nn.Module] | None = None
    direction: ntk.NTKDirection | None = None
    validation: tuple[Tensor, Tensor] | None = None
    prepared: tuple[CertifiedState, Tensor] | None = None

    @property
    def device(self) -> torch.device:
        """Where w(D) lives."""
        return next(self.model.parameters()).device

    @property
    def w_d(self) -> Tensor:
        """The flat weights of w(D)."""
        return flatten(parameters_of(self.model))

    def noise(self, model: nn.Module, mean: Tensor, var: Tensor) -> nn.Module:
        """``mean`` plus the method's noise, drawn from a generator seeded with the seed."""
        return noisy_weights(
            model, mean, var, torch.Generator().manual_seed(self.seed), self.config
        )


@dataclass
class MethodOutput:
    """What a method returns: the scrubbed model and what produced it."""

    model: nn.Module
    delta: Tensor | None = None
    var: Tensor | None = None
    scale: float | None = None
    info: dict = field(default_factory=dict)
    fisher: Tensor | None = None


def _original(call: MethodCall) -> MethodOutput:
    return MethodOutput(copy.deepcopy(call.model))


def _retrain(call: MethodCall) -> MethodOutput:
    if call.retrain is not None:
        return MethodOutput(call.retrain())
    cfg = call.config
    res = finetune(
        call.w0,
        *call.retain,
        cfg.train,
        seed=call.seed,
        anchor=call.w0,
        device=call.device,
        desc="retrain",
    )
    return MethodOutput(res.model)


def _finetune(call: MethodCall) -> MethodOutput:
    cfg = call.config
    recipe = replace(
        cfg.train,
        lr=cfg.finetune_lr,
        momentum=0.0,
        record_every=0,
        lr_schedule=LRSchedule.CONSTANT,
    )
    res = finetune(
        call.model,
        *call.retain,
        recipe,
        seed=call.seed,
        anchor=call.w0 if cfg.finetune_anchor is FinetuneAnchor.PRETRAINED else call.model,
        device=call.device,
        epochs=cfg.finetune_epochs,
        desc="finetune baseline",
    )
    return MethodOutput(res.model)


def _fisher(call: MethodCall) -> MethodOutput:
    fisher = fisher_of(call.model, call.retain[0], call.config)
    var = method_variance(call.model, fisher, call.alpha, call.config)
    w_d = call.w_d
    out = call.noise(call.model, w_d, var)
    return MethodOutput(out, var=var, info={"mean": w_d}, fisher=fisher)


def _ntk(call: MethodCall, *, noisy: bool = False) -> MethodOutput:
    mean, delta, scale, info = ntk_point(
        call.model,
        call.w0,
        call.retain,
        call.forget_set,
        call.config,
        call.seed,
        direction=call.direction,
    )
    out = load_flat_(copy.deepcopy(call.model), mean)
    var = fisher = None
    if noisy:  # eq. 11: the Fisher at the scrubbed point h_NTK(w), on D_r
        fisher = fisher_of(out, call.retain[0], call.config)
        var = method_variance(call.model, fisher, call.alpha, call.config)
        out = call.noise(call.model, mean, var)
    return MethodOutput(out, delta, var, scale, {**info, "mean": mean}, fisher)


def _ntk_fisher(call: MethodCall) -> MethodOutput:
    return _ntk(call, noisy=True)


def _newton(call: MethodCall) -> MethodOutput:
    cfg = call.config
    step, newton_info = newton_step(
        call.model,
        call.w0,
        call.retain,
        cfg.linearization,
        damping=cfg.newton_damping,
        max_iter=cfg.newton_max_iter,
        tol=cfg.newton_tol,
    )
    delta = step.to(next(call.model.parameters()).dtype)
    mean = call.w_d + delta
    out = load_flat_(copy.deepcopy(call.model), mean)
    return MethodOutput(out, delta, info={"newton": newton_info, "mean": mean})


def _certified(call: MethodCall) -> MethodOutput:
    if not isinstance(call.model, ntk.LinearizedModel):
        raise ValueError(
            "the certified method needs a linearized model (forgetbox.ntk.LinearizedModel, "
            "trained with forgetbox.train_linearized or `forgetbox train --linearized`)"
        )
    cfg = call.config
    # secret noise unless the configuration asks for reproducible (seeded) noise, for studies
    generator = torch.Generator().manual_seed(call.seed) if cfg.certify.seeded_noise else None
    release = certified_release(
        call.model,
        call.retain,
        cfg.linearization,
        cfg.ntk,
        cfg.certify,
        generator,
        prepared=call.prepared,
    )
    out = ntk.linearized_with_weights(call.model, release.released)
    sigma = release.record["sigma"]
    var = torch.full_like(release.released, sigma**2, dtype=torch.float64)
    delta = release.solved - call.w_d.to(release.solved)
    info = {"certified": release.record, "mean": release.solved}
    return MethodOutput(out, delta, var, info=info)


def _neggrad_plus(call: MethodCall) -> MethodOutput:
    args = (call.model, call.w0, call.retain, call.forget_set, call.config.neggrad, call.seed)
    model, info = neggrad_plus(*args)
    return MethodOutput(model, info={"neggrad_plus": info})


def _scrub(call: MethodCall) -> MethodOutput:
    args = (call.model, call.w0, call.retain, call.forget_set, call.config.scrub, call.seed)
    return MethodOutput(scrub_student(*args))


def _scrub_r(call: MethodCall) -> MethodOutput:
    cfg = call.config.scrub
    args = (call.model, call.w0, call.retain, call.forget_set, call.validation, cfg, call.seed)
    model, info = scrub_rewind(*args)
    return MethodOutput(model, info={"scrub_r": info})


def _salun(call: MethodCall) -> MethodOutput:
    args = (call.model, call.w0, call.retain, call.forget_set, call.config.salun, call.seed)
    model, info = salun(*args)
    return MethodOutput(model, info={"salun": info})


def _l1_sparse(call: MethodCall) -> MethodOutput:
    args = (call.model, call.w0, call.retain, call.forget_set, call.config.l1_sparse, call.seed)
    model, info = l1_sparse(*args)
    return MethodOutput(model, info={"l1_sparse": info})


METHOD_TABLE: dict[Method, Callable[[MethodCall], MethodOutput]] = {
    Method.ORIGINAL: _original,
    Method.RETRAIN: _retrain,
    Method.FINETUNE: _finetune,
    Method.FISHER: _fisher,
    Method.NTK: _ntk,
    Method.NTK_FISHER: _ntk_fisher,
    Method.NEWTON: _newton,
    Method.CERTIFIED: _certified,
    Method.NEGGRAD_PLUS: _neggrad_plus,
    Method.SCRUB: _scrub,
    Method.SCRUB_R: _scrub_r,
    Method.SALUN: _salun,
    Method.L1_SPARSE: _l1_sparse,
}


def forget(
    method: Method | str,
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget_set: tuple[Tensor, Tensor],
    config: ForgetConfig | None = None,
    *,
    seed: int = 0,
    retrain: Callable[..., nn.Module] | None = None,
    direction: ntk.NTKDirection | None = None,
    validation: tuple[Tensor, Tensor] | None = None,
    prepared: tuple[CertifiedState, Tensor] | None = None,
) -> ForgetResult:
    """Apply one forgetting method. ``model`` is w(D) and is never modified.

    ``retain``/``forget_set`` are ``(inputs, labels)`` pairs. Noise draws come from a generator
    seeded with ``seed``. ``retrain`` optionally supplies a cached retrained model for
    ``retrain`` (it must have been trained on D_r alone). ``direction``: an NTK step already
    computed for this cohort (e.g. by a prepared kernel, :mod:`forgetbox.deletion.prepared`).
    ``validation``: held-out ``(inputs, labels)`` (never trained on), which ``scrub_r`` needs
    for its rewind; the other methods ignore it. The baselines draw their batches (and SalUn
    its random labels) from a generator seeded with ``seed``. ``prepared``: ``(state, keep)``,
    the kernel of D prepared once for ``certified`` (:func:`prepare_certified`) and D_r's mask.
    Raises :class:`MethodDivergedError` (a ``ValueError``) when the weights come out non-finite.
    """
    method = Method.parse(method, "method")
    if prepared is not None and method is not Method.CERTIFIED:
        raise ValueError(f"a prepared certified kernel serves the certified method, not {method}")
    config = config or ForgetConfig()
    start = time.perf_counter()
    alpha = config.alpha if config.alpha is not None else DEFAULT_ALPHA.get(method, 0.0)
    call = MethodCall(
        model, w0, retain, forget_set, config, seed, alpha, retrain, direction, validation, prepared
    )
    res = METHOD_TABLE[method](call)
    out = res.model.to(call.device)  # the scrubbed model lives where w(D) does
    info = dict(res.info)
    info.setdefault("mean", flatten(parameters_of(out)))
    if not torch.isfinite(info["mean"]).all():
        raise MethodDivergedError(
            f"{method.value}: the weights are not finite after forgetting (the method diverged; "
            "a smaller learning rate or noise scale may help)"
        )
    if res.var is not None:
        info["alpha"] = alpha
    out.eval()
    seconds = time.perf_counter() - start
    return ForgetResult(method.value, out, res.delta, res.var, res.scale, seconds, info, res.fisher)
