"""The retrain band of a readout: quantiles over an ensemble of models retrained without the
cohort, which side of it a method's value falls on, what that side means, and whether the
value is outside by more than the readout can resolve (:func:`judge`)."""

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


# a median outside the band by no more than the readout's resolution or the bootstrap spread of
# that distance: no side is read from it
EDGE = "at the edge"
# readouts judged on the L1 distance of softmax outputs (continuous): the tolerance of the rules
# before issue 30, kept as their resolution
L1_RESOLUTION = 0.01
# the set a rate or an error is counted on: one sample of it is the readout's resolution
COUNTED_ON = {
    "error_forget": "forget",
    "mia_forget_member_rate": "forget",
    "error_retain": "retain",
    "error_test": "test",
    "error_val": "val",
}
SET_NAMES = {"forget": "D_f", "retain": "D_r", "test": "test", "val": "validation"}
EDGE_RESAMPLES = 4000
EDGE_CONFIDENCE = 0.95
ROUNDING = 1e-9  # a margin equal to what it needs, up to float rounding, clears it


def resolution_of(key: str, sizes: dict[str, int | None]) -> tuple[float, str]:
    """``(resolution, words)`` of readout ``key``: one sample of the set it counts (``sizes``:
    ``{"forget", "retain", "test", "val"}`` -> count), one epoch of re-learn time, the L1
    tolerance; 0 where the set's size is unknown (losses: continuous)."""
    if key == "relearn_epochs":
        return 1.0, "one epoch"
    if key.startswith("l1_to_retrain"):
        return L1_RESOLUTION, "the L1 tolerance"
    subset = COUNTED_ON.get(key)
    n = sizes.get(subset) if subset else None
    if not n:
        return 0.0, "resolution unknown"
    return 1.0 / n, f"one sample of {n} ({SET_NAMES[subset]})"


def edge_margin(values, retrain_values, quantiles=QUANTILES) -> tuple[float, float]:
    """How far the median of ``values`` lies outside the band of ``retrain_values``
    (``max(low - median, median - high)``: > 0 outside, < 0 inside), and the half-width (the
    larger side) of the 95 % percentile bootstrap interval of that distance, both samples
    resampled with replacement (:data:`EDGE_RESAMPLES` draws from one seeded generator, the
    method's first; non-finite values left out). The same statistic, the same draws, as the
    run report's cross-check of "in the band" (``experiment.cross_check``)."""
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    r = np.asarray([np.nan if x is None else x for x in retrain_values], dtype=float)
    v, r = v[np.isfinite(v)], r[np.isfinite(r)]

    def distance(med, edges) -> np.ndarray:
        return np.maximum(edges[0] - med, med - edges[1])

    margin = float(distance(np.median(v), np.quantile(r, quantiles)))
    rng = np.random.default_rng(0)
    bv = np.median(v[rng.integers(0, len(v), (EDGE_RESAMPLES, len(v)))], axis=1)
    br = np.quantile(r[rng.integers(0, len(r), (EDGE_RESAMPLES, len(r)))], quantiles, axis=1)
    tail = (1 - EDGE_CONFIDENCE) / 2
    lo, hi = np.quantile(distance(bv, br), [tail, 1 - tail])
    return margin, float(max(margin - lo, hi - margin))


def judge(
    key: str, side: str, values, retrain_values, resolution: float, quantiles=QUANTILES
) -> dict:
    """What a method's median on ``side`` (:func:`side_of`) of the retrain band says:
    ``meaning`` (:func:`meaning_of`, or :data:`EDGE` where the median of ``values`` is outside
    the ``quantiles`` band of ``retrain_values`` by less than the larger of ``resolution`` and
    the bootstrap spread of :func:`edge_margin`, to :data:`ROUNDING`) and, outside the band,
    ``margin`` and ``needed`` (what the margin had to clear)."""
    if side not in ("above", "below"):
        return {"meaning": meaning_of(key, side)}
    margin, spread = edge_margin(values, retrain_values, quantiles)
    needed = max(resolution, spread)
    clears = margin > 0 and margin >= needed - ROUNDING
    return {
        "meaning": meaning_of(key, side) if clears else EDGE,
        "margin": margin,
        "needed": needed,
    }
