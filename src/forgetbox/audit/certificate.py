"""Whether measured attacks stay inside an (ε, δ) certificate.

An (ε, δ) guarantee between a release A and its reference B says that every test (every
rejection region S) has ``P_A(S) <= e^ε P_B(S) + δ`` and ``P_B(S) <= e^ε P_A(S) + δ``. Given an
attack's scores on draws of A and of B, :func:`within_certificate` checks it on every threshold
region of the score (``s >= t`` and ``s <= t``, both roles): a region violates the certificate
when the lower confidence bound of its rate under one side exceeds ``e^ε`` times the upper
bound of its rate under the other, plus δ (Clopper-Pearson intervals, Bonferroni-corrected over
the regions checked, so that sampling noise alone does not read as a violation).
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta


def _bounds(k: np.ndarray, n: int, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Clopper-Pearson two-sided ``1 - alpha`` intervals for ``k`` successes of ``n``."""
    lo = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
    hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    return lo, hi


def within_certificate(
    release,
    reference,
    *,
    epsilon: float,
    delta: float,
    confidence: float = 0.95,
    thresholds: int = 199,
) -> dict:
    """Check an attack's scores on draws of a release and of its reference against (ε, δ).

    ``release``/``reference``: 1-d scores (any direction). Regions: ``score >= t`` and
    ``score <= t`` at ``thresholds`` quantiles of the pooled scores, each with the release or
    the reference as the side whose rate is bounded below. Returns ``holds`` (no region
    violates), ``worst`` (the region nearest to, or furthest into, violation: its margin
    ``lower - e^ε upper - δ``, negative inside, and its rates) and ``regions`` checked.
    """
    a = np.asarray(release, dtype=float).ravel()
    b = np.asarray(reference, dtype=float).ravel()
    if len(a) < 2 or len(b) < 2:
        raise ValueError("a certificate check needs at least two draws of each side")
    grid = np.unique(np.quantile(np.concatenate([a, b]), np.linspace(0, 1, thresholds + 2)))
    regions = 4 * len(grid)
    alpha = (1 - confidence) / regions  # Bonferroni over every region checked
    worst = {"margin": -math.inf}
    factor = math.exp(epsilon)
    for upper_side in (True, False):
        ka = (a[:, None] >= grid) if upper_side else (a[:, None] <= grid)
        kb = (b[:, None] >= grid) if upper_side else (b[:, None] <= grid)
        a_lo, a_hi = _bounds(ka.sum(0), len(a), alpha)
        b_lo, b_hi = _bounds(kb.sum(0), len(b), alpha)
        for lo, hi, names in (
            (a_lo, b_hi, ("release", "reference")),
            (b_lo, a_hi, ("reference", "release")),
        ):
            margin = lo - factor * hi - delta
            i = int(np.argmax(margin))
            if margin[i] > worst["margin"]:
                worst = {
                    "margin": float(margin[i]),
                    "threshold": float(grid[i]),
                    "region": ">=" if upper_side else "<=",
                    "high_side": names[0],
                    "rate_lower": float(lo[i]),
                    "other_rate_upper": float(hi[i]),
                }
    return {"holds": worst["margin"] <= 0, "worst": worst, "regions": regions}
