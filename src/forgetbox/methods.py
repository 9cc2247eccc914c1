"""Forgetting methods behind one interface: :func:`forget`.

Each method takes the trained model w(D), the pre-trained w0, D_r, D_f and a
:class:`ForgetConfig`, and returns a :class:`ForgetResult` with the scrubbed model and what it
used (direction, noise variance, scale, timings).

- ``original``: w(D) unchanged.
- ``retrain``: fine-tune from w0 on D_r alone, same recipe and seed (the gold reference).
- ``finetune``: continue training w(D) on D_r (section 5.3), 10 epochs of SGD at lr 0.01.
- ``fisher``: w(D) + noise N(0, alpha F^{-1}), F the diagonal Fisher on D_r at w(D) [16].
- ``ntk``: w(D) + trapezium-rescaled NTK direction (eq. 10).
- ``ntk_fisher``: the NTK point plus noise alpha F^{-1}, F computed at it on D_r (eq. 11).
- ``newton``: w - H^{-1} grad L_{D_r}(w) (eq. 12), H the damped Gauss-Newton matrix of the
  regularised D_r loss, solved matrix-free by CG.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum

import torch
from torch import Tensor, nn
from torch.func import jacrev, jvp, vjp, vmap

from . import ntk
from .functional import flatten, load_flat_, model_function, parameters_of, unflatten
from .models import head_name
from .training import FinetuneConfig, finetune


class Method(StrEnum):
    ORIGINAL = "original"
    RETRAIN = "retrain"
    FINETUNE = "finetune"
    FISHER = "fisher"
    NTK = "ntk"
    NTK_FISHER = "ntk_fisher"
    NEWTON = "newton"


METHODS = tuple(m.value for m in Method)
TRAPEZIUM_LEGS = ("retain", "full")  # see ForgetConfig.trapezium_leg
# bumped when a method's computation changes, so cached results are recomputed
VERSION = {"ntk": 2, "ntk_fisher": 2}
NOISY = (Method.FISHER, Method.NTK_FISHER)
DEFAULT_ALPHA = {Method.FISHER: 1e-6, Method.NTK_FISHER: 1e-9}


@dataclass(frozen=True)
class NoiseConfig:
    """Numerical safeguards of the Fisher noise (defaults follow the authors' code).

    variance = alpha * min(1 / (F + floor), cap), with ``head_cap`` for the classifier head;
    for weight tensors with more than one dimension the variance is averaged over each output
    unit's incoming weights (``fan_in_average``); the head and one-dimensional parameters
    (biases, BatchNorm) are multiplied by ``boost``. When a whole class is forgotten its head
    row gets mean 0 and variance ``class_row_variance``.
    """

    floor: float = 1e-8
    cap: float = 1e3
    head_cap: float = 1e2
    fan_in_average: bool = True
    boost: float = 10.0
    class_row_variance: float = 1e-4


@dataclass(frozen=True)
class ForgetConfig:
    """Options shared by the methods. ``alpha=None`` takes the method's default noise scale
    (1e-6 for fisher, 1e-9 for ntk_fisher, the authors' values)."""

    weight_decay: float = 0.1
    alpha: float | None = None
    loss: str = "ce"
    solver: str = "auto"
    dtype: torch.dtype | None = None
    around: str = "trained"  # linearization point: "trained" (w(D)) or "pretrained" (w0)
    anchored: bool = True  # keep the weight-decay anchor in the linearization (see ntk)
    use_trapezium: bool = True
    # which side of the trapezium measures the rescaling (docs/deviations.md, item 1):
    # "retain" from w_lin(D_r) to w(D), as the authors' code; "full" from w_lin(D) to w(D), as
    # Fig. 5 draws it
    trapezium_leg: str = "retain"
    finetune_epochs: int = 10
    finetune_lr: float = 0.01
    newton_damping: float = 0.0
    newton_max_iter: int = 200
    newton_tol: float = 1e-6
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: FinetuneConfig = field(default_factory=FinetuneConfig)
    forgotten_class: int | None = None  # set when a whole class is forgotten
    memory_budget: int | None = None
    chunk: int | None = None
    # "exact" NTK or "pseudo"-NTK (see forgetbox.ntk.Kernel); kept out of repr so that cache
    # keys of runs made before it existed stay valid (experiment keys add it when not exact)
    kernel: str = field(default="exact", repr=False)


@dataclass(frozen=True)
class ForgetResult:
    """A scrubbed model and what produced it.

    ``delta``: flat deterministic shift (scrubbed mean - w(D)) or None; ``noise_variance``: flat
    diagonal covariance of the added noise or None; ``scale``: trapezium scale (NTK methods).
    """

    method: str
    model: nn.Module
    delta: Tensor | None = None
    noise_variance: Tensor | None = None
    scale: float | None = None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)

    @property
    def mean(self) -> Tensor:
        """Flat weights of the scrubbed model before noise (h(w) of eq. 4)."""
        return self.info["mean"]


# ----------------------------------------------------------------------------- Fisher


def fisher_diagonal(
    model: nn.Module,
    x: Tensor,
    *,
    params: Mapping[str, Tensor] | None = None,
    dtype: torch.dtype | None = None,
    chunk: int = 64,
) -> Tensor:
    """Diagonal Fisher information, flat ``(p,)``, averaged over the ``n`` inputs ``x``:

    ``F = (1/n) sum_i sum_k p_k(x_i) (d log p_k(x_i) / dw)^2`` with p the model's own softmax,
    i.e. the expectation over the predictive distribution, not only the true label [16].
    """
    dtype = dtype or next(model.parameters()).dtype
    f = model_function(model, dtype)
    params = dict(params) if params is not None else parameters_of(model, dtype)
    names = list(params)

    def logp(p, x1):
        return torch.log_softmax(f(p, x1.unsqueeze(0)).squeeze(0), -1)

    device = next(iter(params.values())).device
    total = torch.zeros(sum(t.numel() for t in params.values()), dtype=dtype, device=device)
    for i in range(0, len(x), chunk):
        xb = x[i : i + chunk].to(device, dtype)
        with torch.no_grad():
            probs = torch.softmax(f(params, xb), -1)  # (b, c)
        jac = vmap(jacrev(logp), in_dims=(None, 0))(params, xb)
        g = torch.cat([jac[k].reshape(len(xb), probs.shape[1], -1) for k in names], 2)
        total += torch.einsum("bc,bcp->p", probs, g.pow(2)).detach()
    return total / len(x)


def noise_variance(
    fisher: Tensor,
    like: Mapping[str, Tensor],
    *,
    alpha: float,
    head: str,
    config: NoiseConfig = NoiseConfig(),
    forgotten_class: int | None = None,
) -> Tensor:
    """Flat diagonal covariance ``alpha * F^{-1}`` after the safeguards of :class:`NoiseConfig`.

    ``head`` is the classifier module's name (its ``.weight``/``.bias`` get ``head_cap``/boost).
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    out = {}
    for name, F_t in unflatten(fisher, like).items():
        is_head = name.startswith(head + ".")
        cap = config.head_cap if is_head else config.cap
        var = alpha * torch.clamp(1.0 / (F_t + config.floor), max=cap)
        if config.fan_in_average and var.ndim > 1:
            var = var.mean(dim=tuple(range(1, var.ndim)), keepdim=True).expand_as(var)
        if is_head or var.ndim == 1:
            var = var * config.boost
        if is_head and forgotten_class is not None:
            var = var.clone()
            var[forgotten_class] = config.class_row_variance
        out[name] = var
    return flatten(out)


def _noisy(
    model: nn.Module, mean: Tensor, var: Tensor, generator: torch.Generator, config: ForgetConfig
) -> nn.Module:
    """``mean + sqrt(var) * N(0, I)``; a forgotten class's head row gets mean 0."""
    if config.forgotten_class is not None:
        parts = {k: v.clone() for k, v in unflatten(mean, parameters_of(model)).items()}
        head = head_name(model)
        for name in (f"{head}.weight", f"{head}.bias"):
            if name in parts:
                parts[name][config.forgotten_class] = 0.0
        mean = flatten(parts)
    # drawn on the CPU (the generator's device) so that a seed gives the same noise anywhere
    noise = torch.randn(mean.shape, generator=generator, dtype=torch.float64).to(mean)
    return load_flat_(copy.deepcopy(model), mean + var.to(mean).sqrt() * noise)


# ----------------------------------------------------------------------------- Newton


def newton_step(
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    *,
    weight_decay: float,
    loss: str = "ce",
    damping: float = 0.0,
    max_iter: int = 200,
    tol: float = 1e-6,
    dtype: torch.dtype | None = None,
    chunk: int = 256,
) -> tuple[Tensor, dict]:
    """Newton shift of eq. 12: ``-H^{-1} grad L_{D_r}(w)`` (flat), matrix-free.

    ``L_{D_r}(w) = (1/N_r) sum_i l_i + (lambda/2)||w - w0||^2``; H is its Gauss-Newton matrix
    ``(1/N_r) J^T H_out J + (lambda + damping) I`` (H_out = diag(p) - p p^T for CE, I for MSE),
    which for MSE on a linear model is the exact Hessian.
    """
    dtype = dtype or next(model.parameters()).dtype
    f = model_function(model, dtype)
    params = parameters_of(model, dtype)
    device = next(iter(params.values())).device
    anchor = flatten(parameters_of(w0, dtype)).to(device)
    x, y = retain[0].to(device, dtype), retain[1].to(device)
    n = len(x)
    chunks = [(x[i : i + chunk], y[i : i + chunk]) for i in range(0, n, chunk)]
    grad = None
    for xb, yb in chunks:
        logits, pull = vjp(lambda p, xb=xb: f(p, xb), params)
        g = flatten(pull(ntk.residuals(logits.detach(), yb, loss))[0])
        grad = g if grad is None else grad + g
    grad = grad / n + weight_decay * (flatten(params) - anchor)
    cache = []
    for xb, _ in chunks:
        with torch.no_grad():
            cache.append(torch.softmax(f(params, xb), -1) if loss == "ce" else None)

    def hvp(v: Tensor) -> Tensor:
        tangent = unflatten(v, params)
        total = torch.zeros_like(v)
        for (xb, _), probs in zip(chunks, cache, strict=True):
            _, jv = jvp(lambda p, xb=xb: f(p, xb), (params,), (tangent,))
            if probs is not None:
                jv = probs * jv - probs * (probs * jv).sum(-1, keepdim=True)
            _, pull = vjp(lambda p, xb=xb: f(p, xb), params)
            total += flatten(pull(jv)[0])
        return total / n + (weight_decay + damping) * v

    step, iters, rel = ntk.conjugate_gradient(hvp, -grad, tol=tol, max_iter=max_iter)
    return step.detach(), {
        "cg_iterations": iters,
        "relative_residual": rel,
        "gradient_norm": grad.norm().item(),
    }


# ----------------------------------------------------------------------------- interface


def forget(
    method: Method | str,
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget_set: tuple[Tensor, Tensor],
    config: ForgetConfig = ForgetConfig(),
    *,
    seed: int = 0,
    retrain: Callable[..., nn.Module] | None = None,
    direction: ntk.NTKDirection | None = None,
) -> ForgetResult:
    """Apply one forgetting method. ``model`` is w(D) and is never modified.

    ``retain``/``forget_set`` are ``(inputs, labels)`` pairs. Noise draws come from a generator
    seeded with ``seed``. ``retrain`` optionally supplies a cached retrained model for
    ``retrain`` (it must have been trained on D_r alone). ``direction``: an NTK step already
    computed for this cohort (e.g. by a prepared kernel, :mod:`forgetbox.prepared`).
    """
    method = Method(method)
    start = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    w_d = flatten(parameters_of(model))
    alpha = config.alpha if config.alpha is not None else DEFAULT_ALPHA.get(method, 0.0)
    info: dict = {}
    delta = var = scale = None
    if method is Method.ORIGINAL:
        out = copy.deepcopy(model)
    elif method is Method.RETRAIN:
        out = retrain() if retrain is not None else _retrain(w0, retain, config, seed, device)
    elif method is Method.FINETUNE:
        cfg = replace(
            config.train,
            lr=config.finetune_lr,
            momentum=0.0,
            record_every=0,
            lr_schedule="constant",
        )
        out = finetune(
            model,
            *retain,
            cfg,
            seed=seed,
            anchor=w0,
            device=device,
            epochs=config.finetune_epochs,
            desc="finetune baseline",
        ).model
    elif method is Method.FISHER:
        fisher = fisher_diagonal(model, retain[0], chunk=config.chunk or 64)
        var = _variance(model, fisher, alpha, config)
        out = _noisy(model, w_d, var, gen, config)
        info["mean"] = w_d
    elif method in (Method.NTK, Method.NTK_FISHER):
        mean, delta, scale, ntk_info = ntk_point(
            model, w0, retain, forget_set, config, seed, direction=direction
        )
        info.update(ntk_info, mean=mean)
        out = load_flat_(copy.deepcopy(model), mean)
        if method is Method.NTK_FISHER:
            fisher = fisher_diagonal(out, retain[0], chunk=config.chunk or 64)
            var = _variance(model, fisher, alpha, config)
            out = _noisy(model, mean, var, gen, config)
    else:  # NEWTON
        step, newton_info = newton_step(
            model,
            w0,
            retain,
            weight_decay=config.weight_decay,
            loss=config.loss,
            damping=config.newton_damping,
            max_iter=config.newton_max_iter,
            tol=config.newton_tol,
            dtype=config.dtype,
        )
        delta = step.to(dtype)
        info.update(newton=newton_info, mean=w_d + delta)
        out = load_flat_(copy.deepcopy(model), w_d + delta)
    out = out.to(device)  # the scrubbed model lives where w(D) does
    info.setdefault("mean", flatten(parameters_of(out)))
    if var is not None:
        info["alpha"] = alpha
    out.eval()
    return ForgetResult(method.value, out, delta, var, scale, time.perf_counter() - start, info)


def ntk_step(
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget_set: tuple[Tensor, Tensor],
    config: ForgetConfig,
    seed: int = 0,
) -> ntk.NTKDirection:
    """The NTK step (eq. 10, before the trapezium) that ``ntk`` and ``ntk_fisher`` take with
    ``config``; compute it once and pass it as ``direction=`` to share it between them."""
    return ntk.ntk_direction(
        model,
        retain,
        forget_set,
        weight_decay=config.weight_decay,
        loss=config.loss,
        around=w0 if config.around == "pretrained" else None,
        solver=config.solver,
        dtype=config.dtype,
        memory_budget=config.memory_budget,
        chunk=config.chunk,
        seed=seed,
        pretrained=w0 if config.anchored else None,
        kernel=config.kernel,
    )


def ntk_point(
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget_set: tuple[Tensor, Tensor],
    config: ForgetConfig,
    seed: int = 0,
    direction: ntk.NTKDirection | None = None,
) -> tuple[Tensor, Tensor, float, dict]:
    """h_NTK(w) of eq. 10: ``w(D) + scale * delta_w`` with the trapezium ``scale``.

    Returns ``(mean, shift, scale, info)`` with flat tensors in the model's dtype, on its
    device. ``direction`` skips the NTK solve (a precomputed step for this cohort, which may
    live on another device, e.g. a prepared kernel's).
    """
    dtype = next(model.parameters()).dtype
    device = next(model.parameters()).device
    w_d = flatten(parameters_of(model))
    w0_flat = flatten(parameters_of(w0))
    direction = direction or ntk_step(model, w0, retain, forget_set, config, seed)
    w_d = w_d.to(direction.delta.device)
    w0_flat = w0_flat.to(direction.delta.device)
    if config.trapezium_leg not in TRAPEZIUM_LEGS:
        raise ValueError(
            f"trapezium_leg must be one of {TRAPEZIUM_LEGS}, got {config.trapezium_leg!r}"
        )
    # w_lin(D_r): the anchored linearization holds it as around + u_retain; the authors'
    # unanchored one as w0 + u_{D_r}. w_lin(D) = w_lin(D_r) - delta.
    base = direction.around if config.anchored else w0_flat.to(direction.around.dtype)
    leg_from = base + direction.u_retain
    if config.trapezium_leg == "full":
        leg_from = leg_from - direction.delta
    info: dict = {}
    scale = 1.0
    if config.use_trapezium:
        trap = ntk.trapezium(direction.delta, w_full=w_d, w_lin=leg_from)
        scale = trap.scale
        info["trapezium"] = trap.__dict__
    shift = (scale * direction.delta).to(dtype)
    info["ntk"] = {
        "solver": direction.extras.get("solver"),
        "kernel": direction.extras.get("kernel", "exact"),
        "seconds": direction.seconds,
        "reports": [r.__dict__ for r in direction.reports],
        "delta_norm": direction.delta.norm().item(),
        "anchored": config.anchored,
    }
    return (w_d + shift).to(device), shift.to(device), scale, info


def variance_at(
    model: nn.Module, weights: Tensor, x_retain: Tensor, alpha: float, config: ForgetConfig
) -> Tensor:
    """alpha F^{-1} (after the noise safeguards) with F the diagonal Fisher on ``x_retain`` at
    the flat ``weights`` of ``model``'s architecture."""
    probe = load_flat_(copy.deepcopy(model), weights)
    return _variance(
        probe, fisher_diagonal(probe, x_retain, chunk=config.chunk or 64), alpha, config
    )


def _variance(model: nn.Module, fisher: Tensor, alpha: float, config: ForgetConfig) -> Tensor:
    return noise_variance(
        fisher,
        parameters_of(model),
        alpha=alpha,
        head=head_name(model),
        config=config.noise,
        forgotten_class=config.forgotten_class,
    )


def _retrain(
    w0: nn.Module, retain, config: ForgetConfig, seed: int, device: torch.device
) -> nn.Module:
    return finetune(
        w0, *retain, config.train, seed=seed, anchor=w0, device=device, desc="retrain"
    ).model
