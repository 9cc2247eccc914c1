"""The retrain band of a readout: quantiles over an ensemble of models retrained without the
cohort, and which side of it a method's value falls on."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

QUANTILES = (0.05, 0.95)


@dataclass(frozen=True)
class Band:
    """``[low, high]``: the ``quantiles`` of the retrained models' values (linear
    interpolation; with K models the band is about the range of the middle 90 %), their median
    and count."""

    low: float
    high: float
    median: float
    models: int
    quantiles: tuple[float, float] = QUANTILES


def band_of(values, quantiles: tuple[float, float] = QUANTILES) -> Band:
    """The retrain band of ``values`` (one per model): the given quantiles, the median and the
    number of finite values; refuses an empty set."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if len(v) == 0:
        raise ValueError("a band needs at least one finite value")
    lo, hi = np.quantile(v, quantiles)
    return Band(float(lo), float(hi), float(np.median(v)), len(v), tuple(quantiles))


NOT_COMPUTABLE = "not computable"


def side_of(value: float | None, band: Band) -> str:
    """``"inside"``, ``"above"`` or ``"below"`` the band; :data:`NOT_COMPUTABLE` for a missing
    or NaN value (never "inside")."""
    if value is None or math.isnan(value):
        return NOT_COMPUTABLE
    if value > band.high:
        return "above"
    if value < band.low:
        return "below"
    return "inside"
