"""The trapezium trick (supplement, Fig. 5): rescale the linearized direction."""

from __future__ import annotations

import math
from dataclasses import dataclass

from torch import Tensor


@dataclass(frozen=True)
class Trapezium:
    """The trapezium trick's choice: ``scale`` multiplies delta_w (Fig. 5)."""

    scale: float
    predicted_norm: float
    delta_norm: float
    leg_norm: float
    angle: float  # radians, between delta_w and the leg m


def trapezium(delta: Tensor, *, w_full: Tensor, w_lin: Tensor) -> Trapezium:
    """Rescale the linearized direction to undo its undershoot (supplement, Fig. 5).

    Inputs: ``delta`` = w_lin(D_r) - w_lin(D), the trained weights ``w_full`` = w(D) and the
    linearized end point ``w_lin`` the trapezium's leg starts from: Fig. 5's caption uses
    w_lin(D) (leg ``m = w(D) - w_lin(D)``); the authors' code uses ``w0 + u_{D_r}``. With theta
    the angle between delta and m, the isosceles trapezium predicts
    ``||w(D_r) - w(D)|| = ||delta|| + 2 sin(a) ||m||`` with ``a = theta - pi/2`` when
    ``cos theta < 0`` and ``2 cos(theta) ||m||`` otherwise (the authors' code); both cases equal
    ``||delta|| + 2 |cos theta| ||m||``. The scrub is ``w(D) + scale * delta``.
    """
    d = delta.double()
    m = w_full.double() - w_lin.double()
    dn, mn = d.norm().item(), m.norm().item()
    if dn == 0.0:
        return Trapezium(1.0, 0.0, 0.0, mn, float("nan"))
    cos = (d @ m).item() / (dn * mn) if mn > 0 else 0.0
    cos = max(-1.0, min(1.0, cos))
    theta = math.acos(cos)
    extra = 2 * math.sin(theta - math.pi / 2) * mn if cos < 0 else 2 * math.cos(theta) * mn
    predicted = dn + extra
    return Trapezium(predicted / dn, predicted, dn, mn, theta)
