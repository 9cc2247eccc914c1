"""Certified deletion from a linearized network: removal solved to a residual, then released
with Gaussian noise whose scale fixes an (ε, δ) guarantee before the solve (docs/certified.md).

For the linearized network (:class:`forgetbox.ntk.LinearizedModel`) training is
lambda-strongly convex, so the exact retrain ``w*(D_r)`` is unique and any weights ``w`` obey
``||w - w*(D_r)|| <= ||grad L_{D_r}(w)|| / lambda``. The removal solves ``min L_{D_r}`` by
Newton's method in kernel space (:class:`~forgetbox.ntk.KernelRegression`) starting from
w(D)'s outputs, until the gradient norm ``r`` — computed in float64 at the weights actually
released — is at most the budget ``r_max``; it refuses ("retraining is due") otherwise. The
release ``w + sigma xi`` is then ``mu``-GDP against the reference mechanism ``w*(D_r) + sigma
xi`` with ``mu <= r_max / (lambda sigma)``; ``sigma = r_max / (lambda mu(ε, δ))`` is fixed
from the target (ε, δ) and ``r_max`` alone, never from the data.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .. import ntk, privacy
from ..functional import flatten, unflatten
from ..inputs import as_tensors
from ..settings import Settings, check_int, check_number
from .certified_state import CertifiedState

# the default residual budget r_max by the dtype of the released weights. The residual is that
# of the float64 solution (about 1e-11 once Newton has converged); the noise is added to it and
# only then rounded to the released dtype (post-processing). r_max sets sigma = r_max /
# (lambda mu): for float32 it keeps sigma (3.7e-3 at lambda = 0.1, eps = 1, delta = 1e-5) far
# above float32's resolution of the weights, so that rounding cannot expose the mean
RESIDUAL_BUDGET = {torch.float64: 1e-8, torch.float32: 1e-4}
ASSUMPTIONS = (
    "the released model is the linearized network f(w0) + J_w0 (w - w0) over the trained "
    "parameters, BatchNorm statistics frozen at w0's",
    "fine-tuning minimises the mean cross-entropy (or squared error) of the linearized "
    "outputs plus (lambda/2)||w - w0||^2: convex in w, lambda-strongly convex",
    "w0 (the pre-trained weights) does not depend on D",
    "the mechanism is public: its code, lambda, r_max and sigma are known to the adversary; "
    "the noise draw is secret (the operating system's cryptographic randomness) and used once",
    "the reference is exact retraining of the linearized network on D_r with the same noise",
)
NOT_COVERED = (
    "a model released before this request (from D, or from an earlier cohort's request)",
    "the training data itself and copies of it (logs, caches, earlier checkpoints)",
    "side channels: timing, the number of Newton iterations, whether the request was refused",
    "floating-point rounding of the noisy weights (as for every floating-point Gaussian mechanism)",
    "a prepared state (forgetbox prepare --certify) keeps the kernel rows and outputs of every "
    "sample of D, the deleted ones included: it is a copy of D, to protect as D and to destroy "
    "(or prepare again without the deleted samples) to purge them",
)


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class CertifyConfig(Settings):
    """The guarantee a certified deletion states: (``epsilon``, ``delta``) against exact
    retraining, the residual budget ``residual_budget`` (r_max; default by the released dtype,
    :data:`RESIDUAL_BUDGET`) and the Newton iteration cap before refusing."""

    epsilon: float = field(default=1.0, metadata=_help("epsilon of the certified guarantee"))
    delta: float = field(default=1e-5, metadata=_help("delta of the certified guarantee"))
    residual_budget: float | None = field(
        default=None,
        metadata=_help(
            "r_max: largest gradient norm released (default 1e-4 float32, 1e-8 float64)"
        ),
    )
    max_iter: int = field(
        default=30,
        metadata={"help": "Newton iterations before refusing", "flag": "certify-max-iter"},
    )
    # reproducible noise from the method's seed: for studies of the mechanism only (the
    # guarantee assumes noise an adversary cannot regenerate); not a command-line flag
    seeded_noise: bool = False

    def __post_init__(self) -> None:
        check_number(self.epsilon, "epsilon", low=0.0, strict=True)
        check_number(self.delta, "delta", low=0.0, strict=True)
        if not self.delta < 1:
            raise ValueError(f"delta must be < 1; got {self.delta}")
        if self.residual_budget is not None:
            check_number(self.residual_budget, "residual_budget", low=0.0, strict=True)
        check_int(self.max_iter, "max_iter")
        if not isinstance(self.seeded_noise, bool):
            raise ValueError(f"seeded_noise must be True or False; got {self.seeded_noise!r}")

    def budget(self, dtype: torch.dtype) -> float:
        """r_max for weights released in ``dtype``."""
        if self.residual_budget is not None:
            return float(self.residual_budget)
        return RESIDUAL_BUDGET.get(dtype, RESIDUAL_BUDGET[torch.float32])

    def mechanism(self, dtype: torch.dtype, weight_decay: float) -> dict:
        """The data-independent part: r_max, mu and sigma (``sigma = r_max / (lambda mu)``)."""
        if weight_decay <= 0:
            raise ValueError("a certified deletion needs weight_decay > 0 (strong convexity)")
        r_max = self.budget(dtype)
        mu = privacy.gdp_mu(self.epsilon, self.delta)
        return {"residual_budget": r_max, "mu": mu, "sigma": r_max / (weight_decay * mu)}


class RetrainDueError(ValueError):
    """The removal did not reach its residual budget: retraining (the reference mechanism) is
    due; nothing was released."""


@dataclass(frozen=True)
class CertifiedRelease:
    """The released weights (noise included, in the model's dtype), the float64 solution
    before noise (the mechanism's mean), and the record."""

    released: Tensor
    solved: Tensor
    record: dict


def minimise(
    f,
    w0: dict,
    data: tuple[Tensor, Tensor],
    lin: ntk.Linearization,
    options: ntk.NTKOptions,
    *,
    start: Tensor | None = None,
    tol: float,
    max_iter: int,
    kernel: tuple[Tensor, Tensor] | None = None,
) -> tuple[Tensor, dict]:
    """``argmin_w L_S(w)`` of the network ``f`` linearized at ``w0`` on ``S = data``, flat in
    float64: Newton in kernel space (:class:`~forgetbox.ntk.KernelRegression`) from the
    outputs ``start`` ``(n, c)`` (default: w0's), then ``w = w0 + J^T a`` (one vjp pass); and
    what the solve did (iterations, the gradient norm after each). ``kernel``: S's ``(K,
    f0)`` when known (a prepared state's rows), else built here."""
    x, y = data[0].to(torch.float64), data[1]
    chunk = options.chunk or 64
    build = None
    if kernel is None:
        K, build = ntk.exact_kernel(f, w0, x, options)
        f0 = ntk.linearized_outputs(f, w0, w0, x, chunk)
    else:
        K, f0 = kernel
    a0 = None
    if start is not None:  # coefficients with the same outputs on S
        a0 = torch.linalg.lstsq(K, (start - f0).reshape(-1, 1), driver="gelsd").solution[:, 0]
    problem = ntk.KernelRegression(K, f0, y, lin)
    a = problem.solve(a0, tol=tol, max_iter=max_iter)
    solved = flatten(w0) + ntk.vjp_sum(f, w0, x, a.reshape(f0.shape), chunk)
    info = {"kernel_grad_norms": problem.history, "iterations": len(problem.history) - 1}
    return solved, info | ({"kernel_build": build} if build is not None else {})


def solve_removal(
    model: ntk.LinearizedModel,
    retain: tuple[Tensor, Tensor],
    lin: ntk.Linearization,
    options: ntk.NTKOptions,
    *,
    tol: float,
    max_iter: int,
    prepared: tuple[CertifiedState, Tensor] | None = None,
) -> tuple[Tensor, dict]:
    """``w`` minimising ``L_{D_r}`` of the linearized network by Newton from w(D) (its outputs
    on D_r; the part of w(D) - w0 outside D_r's row space goes in the first step), float64.
    ``prepared``: ``(state, keep)``, the prepared kernel and D_r's mask in D."""
    f, w0, w_d = ntk.linearized_parts(model, torch.float64)
    x = retain[0].to(torch.float64)
    kernel = None
    if prepared is not None:
        state, keep = prepared
        rows = state.rows(keep)
        kernel = (state.K[rows[:, None], rows], state.f0[keep])
        start = state.outputs[keep]
    else:
        start = ntk.linearized_outputs(f, w0, w_d, x, options.chunk or 64)
    return minimise(
        f, w0, retain, lin, options, start=start, tol=tol, max_iter=max_iter, kernel=kernel
    )


def train_linearized(
    base: nn.Module,
    data,
    lin: ntk.Linearization,
    options: ntk.NTKOptions | None = None,
    *,
    trainable=None,
    tol: float = 1e-8,
    max_iter: int = 50,
) -> tuple[ntk.LinearizedModel, dict]:
    """Fine-tune ``base`` (at its pre-trained weights w0) linearized, exactly: the minimiser
    of ``L_D`` to a gradient norm <= ``tol`` (recorded, with the iterations), in the model's
    dtype; ``trainable`` as :class:`~forgetbox.ntk.LinearizedModel`'s."""
    x, y = as_tensors(data, "data")
    model = ntk.LinearizedModel(base, trainable)
    f, w0, _ = ntk.linearized_parts(model, torch.float64)
    opts = options or ntk.NTKOptions()
    solved, info = minimise(f, w0, (x, y), lin, opts, tol=tol, max_iter=max_iter)
    dtype = next(model.parameters()).dtype
    out = ntk.linearized_with_weights(model, solved.to(dtype))
    _, _, w = ntk.linearized_parts(out, torch.float64)
    grad = ntk.linearized_gradient(f, w0, w, x.double(), y, lin, opts.chunk or 64)
    info["grad_norm"] = float(grad.norm())  # at the weights as stored, in float64
    return out, info


def certified_release(
    model: ntk.LinearizedModel,
    retain: tuple[Tensor, Tensor],
    lin: ntk.Linearization,
    options: ntk.NTKOptions,
    certify: CertifyConfig,
    generator: torch.Generator | None = None,
    *,
    prepared: tuple[CertifiedState, Tensor] | None = None,
) -> CertifiedRelease:
    """Remove D_f from ``model`` = w(D) and release ``w + sigma xi`` (see the module
    docstring); :class:`RetrainDueError` when the residual at the released weights exceeds the
    budget after ``certify.max_iter`` Newton steps. ``prepared``: ``(state, keep)`` with the
    kernel of D prepared once (:func:`prepare_certified`) and D_r's mask in D. ``generator``:
    seeded noise for reproducible studies only; by default the noise comes from the operating
    system's cryptographic randomness (:func:`forgetbox.privacy.secure_normal`), which the
    guarantee needs."""
    start = time.perf_counter()
    dtype = next(model.parameters()).dtype
    mech = certify.mechanism(dtype, lin.weight_decay)  # fixed before any data is seen
    r_max, sigma = mech["residual_budget"], mech["sigma"]
    # solved well below the budget, so that what is left at release is the rounding's
    tol = min(1e-2 * r_max, 1e-10)
    solved, info = solve_removal(
        model, retain, lin, options, tol=tol, max_iter=certify.max_iter, prepared=prepared
    )
    # the mechanism's mean is the float64 solution: its residual is measured there, the noise
    # is added to it, and the noisy weights are rounded to the released dtype (post-processing)
    f, w0, _ = ntk.linearized_parts(model, torch.float64)
    x, y = retain[0].double(), retain[1]
    grad = ntk.linearized_gradient(f, w0, unflatten(solved, w0), x, y, lin, options.chunk or 64)
    r = float(grad.norm())
    if not r <= (1 - 1e-6) * r_max:  # a margin for the float64 evaluation of r
        raise RetrainDueError(
            f"the removal reached a gradient norm of {r:.3g} after {info['iterations']} Newton "
            f"steps, above the budget {r_max:.3g}: retraining is due (nothing was released)"
        )
    noise = _noise(solved.shape[0], generator)
    released = (solved + sigma * noise).to(dtype)
    mu_realized = r / (lin.weight_decay * sigma)
    record = {
        "epsilon": certify.epsilon,
        "delta": certify.delta,
        "mu": mech["mu"],
        "sigma": sigma,
        "residual_budget": r_max,
        "strong_convexity": lin.weight_decay,
        "distance_bound": r_max / lin.weight_decay,
        "white_box_nats": mech["mu"] ** 2 / 2,
        "released_dtype": str(dtype).removeprefix("torch."),
        "kernel_build": info.get("kernel_build")
        or (prepared[0].kernel_build if prepared else None),
        "prepared": prepared is not None,  # D_r's rows of a kernel of D prepared once
        "noise": "os-entropy" if generator is None else "seeded (a study, not a deployment)",
        "assumptions": list(ASSUMPTIONS),
        "not_covered": list(NOT_COVERED),
        "operator_record": {  # depends on D_f: kept by the operator, not released
            "residual_grad_norm": r,
            "mu_realized": mu_realized,
            "epsilon_realized": privacy.gdp_epsilon(mu_realized, certify.delta),
            "iterations": info["iterations"],
            "kernel_grad_norms": info["kernel_grad_norms"],
            "seconds": time.perf_counter() - start,
        },
    }
    return CertifiedRelease(released, solved, record)


def _noise(size: int, generator: torch.Generator | None) -> Tensor:
    """``size`` N(0, 1) draws: secret (OS entropy) unless a seeded generator is given."""
    if generator is None:
        return torch.from_numpy(privacy.secure_normal(size))
    return torch.randn(size, generator=generator, dtype=torch.float64)


def noisy_release(model: ntk.LinearizedModel, sigma: float, seed: int) -> ntk.LinearizedModel:
    """``model``'s weights plus ``sigma xi`` (``xi ~ N(0, I)`` from ``seed``): the release of
    the same mechanism at other weights (the reference mechanism at exact retrains)."""
    w = flatten(model.w()).detach()
    gen = torch.Generator().manual_seed(seed)
    noise = torch.randn(w.shape, generator=gen, dtype=torch.float64)
    return ntk.linearized_with_weights(model, (w.double() + sigma * noise).to(w.dtype))
