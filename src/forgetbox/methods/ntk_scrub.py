"""The NTK methods' deterministic part: the step of eq. 10 and h_NTK(w) with the trapezium."""

from __future__ import annotations

from torch import Tensor, nn

from .. import ntk
from ..functional import flatten, parameters_of
from .config import ForgetConfig, TrapeziumLeg


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
        config.linearization,
        pretrained=w0,
        seed=seed,
        options=config.ntk,
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
    """h_NTK(w) of eq. 10: ``w(D) + scale * delta_w`` with the trapezium ``scale`` (or
    ``config.step_scale`` where set; 1 without the trapezium).

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
    anchored = config.linearization.anchored
    # w_lin(D_r): the anchored linearization holds it as around + u_retain; the authors'
    # unanchored one as w0 + u_{D_r}. w_lin(D) = w_lin(D_r) - delta.
    base = direction.around if anchored else w0_flat.to(direction.around.dtype)
    leg_from = base + direction.u_retain
    if config.trapezium_leg is TrapeziumLeg.FULL:
        leg_from = leg_from - direction.delta
    info: dict = {}
    scale = 1.0
    if config.use_trapezium or config.step_scale is not None:
        trap = ntk.trapezium(direction.delta, w_full=w_d, w_lin=leg_from)
        info["trapezium"] = trap.__dict__  # what the trapezium measures, used or not
        scale = trap.scale if config.step_scale is None else float(config.step_scale)
    shift = (scale * direction.delta).to(dtype)
    info["ntk"] = {
        "solver": direction.extras.get("solver"),
        "kernel": direction.extras.get("kernel", "exact"),
        "jacobian": direction.extras.get("jacobian"),
        "seconds": direction.seconds,
        "reports": [r.__dict__ for r in direction.reports],
        "delta_norm": direction.delta.norm().item(),
        "anchored": anchored,
    }
    return (w_d + shift).to(device), shift.to(device), scale, info
