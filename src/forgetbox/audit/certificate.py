"""Whether a measured attack stays inside an (ε, δ) certificate.

An (ε, δ) guarantee between a release A and its reference B says that every test (every
rejection region S) has ``P_A(S) <= e^ε P_B(S) + δ`` and ``P_B(S) <= e^ε P_A(S) + δ``. Given an
attack's scores on draws of A and of B, :func:`within_certificate` tests the most suspicious
threshold region of the score, chosen and tested on disjoint halves of the draws (so that the
test is valid although the region was picked from data): on the first halves every region
``s >= t`` and ``s <= t``, either side high, is scored by its empirical margin
``rate_high - e^ε rate_low - δ``; on the second halves the chosen region's rates get
Clopper-Pearson bounds, and the certificate is refuted when ``lower(rate_high) > e^ε
upper(rate_low) + δ``. The check also says whether it had the power to refute anything: a
perfectly separating attack (every draw of one side in the region, none of the other) must be
refuted at these sample sizes, else the verdict is "no power".
"""

from __future__ import annotations

import math

import numpy as np
from scipy.stats import beta

MIN_CERTIFICATE_DRAWS = 4  # two to choose the region, two to test it, per side


def _lower(k: int, n: int, alpha: float) -> float:
    """Clopper-Pearson one-sided lower ``1 - alpha`` bound of a rate k/n."""
    return float(beta.ppf(alpha, k, n - k + 1)) if k > 0 else 0.0


def _upper(k: int, n: int, alpha: float) -> float:
    """Clopper-Pearson one-sided upper ``1 - alpha`` bound of a rate k/n."""
    return float(beta.ppf(1 - alpha, k + 1, n - k)) if k < n else 1.0


def _regions(a: np.ndarray, b: np.ndarray):
    """Every threshold region of the pooled scores: ``(threshold, side, high)``."""
    for t in np.unique(np.concatenate([a, b])):
        for side in (">=", "<="):
            for high in ("release", "reference"):
                yield float(t), side, high


def _rate(x: np.ndarray, t: float, side: str) -> int:
    return int((x >= t).sum() if side == ">=" else (x <= t).sum())


def within_certificate(
    release, reference, *, epsilon: float, delta: float, confidence: float = 0.95
) -> dict:
    """Test an attack's scores on draws of a release and of its reference against (ε, δ)
    (see the module docstring). Returns ``verdict`` (``inside``: not refuted with power;
    ``outside``: refuted; ``no power``: too few draws to refute even a perfect attack),
    ``refuted``, ``powered``, and the chosen region with its margin on the held-out halves."""
    a = np.asarray(release, dtype=float).ravel()
    b = np.asarray(reference, dtype=float).ravel()
    if len(a) < MIN_CERTIFICATE_DRAWS or len(b) < MIN_CERTIFICATE_DRAWS:
        raise ValueError(
            f"a certificate check needs at least {MIN_CERTIFICATE_DRAWS} draws of each side"
        )
    sel_a, test_a, sel_b, test_b = a[::2], a[1::2], b[::2], b[1::2]
    factor, alpha = math.exp(epsilon), (1 - confidence) / 2  # two one-sided bounds

    def empirical(t, side, high):
        ra, rb = _rate(sel_a, t, side) / len(sel_a), _rate(sel_b, t, side) / len(sel_b)
        hi, lo = (ra, rb) if high == "release" else (rb, ra)
        return hi - factor * lo - delta

    t, side, high = max(_regions(sel_a, sel_b), key=lambda r: empirical(*r))
    ka, kb = _rate(test_a, t, side), _rate(test_b, t, side)
    (k_hi, n_hi), (k_lo, n_lo) = (
        ((ka, len(test_a)), (kb, len(test_b)))
        if high == "release"
        else ((kb, len(test_b)), (ka, len(test_a)))
    )
    lower, upper = _lower(k_hi, n_hi, alpha), _upper(k_lo, n_lo, alpha)
    margin = lower - factor * upper - delta
    perfect = _lower(n_hi, n_hi, alpha) - factor * _upper(0, n_lo, alpha) - delta
    refuted, powered = margin > 0, perfect > 0
    verdict = "outside" if refuted else ("inside" if powered else "no power")
    return {
        "verdict": verdict,
        "refuted": bool(refuted),
        "powered": bool(powered),
        "margin": float(margin),
        "perfect_attack_margin": float(perfect),
        "region": {"threshold": t, "side": side, "high": high},
        "rate_high_lower": lower,
        "rate_low_upper": upper,
        "draws": {"release": len(a), "reference": len(b)},
    }
