"""The retrain band of a readout: quantiles over an ensemble of models retrained without the
cohort, which side of it a method's value falls on, and what that side means."""

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


# which side of the retrain band says the model still holds D_f ("leaks"); the other side is
# the Streisand effect (forgetting more than retraining would, itself a trace of the deletion)
LEAK_SIDE = {
    "error_forget": "below",
    "loss_forget": "below",
    "mia_forget_member_rate": "above",
    "relearn_epochs": "below",
    "l1_to_retrain_forget": "above",
}
# distances from model k to reference k (retrained on D_r from model k's own seed): the band
# holds the retrain row's models, seeded apart from their references, so a model closer than
# them is what retraining from its own seed would give (distance 0), not a trace of the
# deletion -- "closer", never "Streisand"
PAIRED_DISTANCE_PREFIX = "l1_to_retrain_"
CLOSER = "closer"


def meaning_of(key: str, side: str) -> str:
    """What ``side`` (:func:`side_of`) of the band of readout ``key`` says: ``"inside"``, not
    computable, ``"leaks"`` (the side where the model still holds D_f), ``"Streisand"`` (the
    other side), ``"closer"`` (below the band of a distance to the paired reference), or the
    side itself for a readout without a leak side."""
    if side in ("inside", NOT_COMPUTABLE):
        return side
    if side == "below" and key.startswith(PAIRED_DISTANCE_PREFIX):
        return CLOSER
    leak = LEAK_SIDE.get(key)
    if leak is None:
        return side
    return "leaks" if side == leak else "Streisand"
