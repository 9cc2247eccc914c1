"""Privacy accounting of the Gaussian mechanism, as pure functions (as opacus keeps its
accountants): Gaussian differential privacy (Dong, Roth & Su, 2019) and its exact (ε, δ)
conversion (Balle & Wang, 2018).

A release ``w + sigma * xi`` against the reference ``w' + sigma * xi`` (``xi ~ N(0, I)``) with
``||w - w'|| <= s`` is ``mu``-GDP with ``mu = s / sigma``: telling the two apart is no easier
than telling ``N(0, 1)`` from ``N(mu, 1)``. It is then (ε, δ)-indistinguishable, both ways, for
every ε >= 0 with

    delta(eps; mu) = Phi(-eps / mu + mu / 2) - exp(eps) Phi(-eps / mu - mu / 2)

and k releases compose to ``sqrt(mu_1^2 + ... + mu_k^2)``-GDP. Every function is exact up to
floating point (log-space where exp(eps) would overflow) and tested against direct numerical
integration of the two Gaussians' privacy loss.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import log_ndtr, ndtr


def _check(value: float, name: str, *, low: float = 0.0, strict: bool = False) -> float:
    value = float(value)
    if not math.isfinite(value) or value < low or (strict and value == low):
        raise ValueError(f"{name} must be a finite number {'>' if strict else '>='} {low}")
    return value


def gdp_delta(epsilon: float, mu: float) -> float:
    """The smallest δ for which a ``mu``-GDP mechanism is (``epsilon``, δ)-DP."""
    eps, mu = _check(epsilon, "epsilon"), _check(mu, "mu")
    if mu == 0:
        return 0.0
    a, b = -eps / mu + mu / 2, -eps / mu - mu / 2
    tail = math.exp(eps + float(log_ndtr(b)))  # exp(eps) Phi(b) without overflow
    return max(0.0, float(ndtr(a)) - tail)


def gdp_epsilon(mu: float, delta: float) -> float:
    """The smallest ε >= 0 with ``gdp_delta(ε, mu) <= delta`` (bisection to 1e-12)."""
    mu, delta = _check(mu, "mu"), _check(delta, "delta", strict=True)
    if gdp_delta(0.0, mu) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while gdp_delta(hi, mu) > delta:
        lo, hi = hi, 2 * hi
    return _bisect(lambda e: gdp_delta(e, mu) > delta, lo, hi)[1]  # never below the true ε


def gdp_mu(epsilon: float, delta: float) -> float:
    """The largest ``mu`` whose mechanism is (``epsilon``, ``delta``)-DP (``delta(ε; mu)``
    grows with mu); bisection to 1e-12."""
    eps, delta = _check(epsilon, "epsilon"), _check(delta, "delta", strict=True)
    if delta >= 1:
        return math.inf
    lo, hi = 0.0, 1.0
    while gdp_delta(eps, hi) <= delta:
        lo, hi = hi, 2 * hi
    return _bisect(lambda m: gdp_delta(eps, m) <= delta, lo, hi)[0]  # never above the true mu


def _bisect(keep_low, lo: float, hi: float, tol: float = 1e-12) -> tuple[float, float]:
    """``(lo, hi)`` bracketing the boundary where ``keep_low`` turns False, to ``tol``."""
    while hi - lo > tol * max(1.0, hi):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if keep_low(mid) else (lo, mid)
    return lo, hi


def secure_normal(size: int) -> np.ndarray:
    """``size`` standard normal draws from the operating system's cryptographic randomness
    (``os.urandom``, Box-Muller in float64): noise an adversary cannot regenerate from a seed,
    as a Gaussian mechanism's guarantee assumes."""
    import os

    pairs = (size + 1) // 2
    bits = np.frombuffer(os.urandom(16 * pairs), dtype=np.uint64).reshape(2, pairs)
    u1 = (bits[0] >> np.uint64(11)).astype(np.float64) * 2.0**-53 + 2.0**-54  # in (0, 1)
    u2 = (bits[1] >> np.uint64(11)).astype(np.float64) * 2.0**-53
    radius = np.sqrt(-2.0 * np.log(u1))
    normal = np.concatenate([radius * np.cos(2 * np.pi * u2), radius * np.sin(2 * np.pi * u2)])
    return normal[:size]


def compose(mus) -> float:
    """GDP composition of releases: ``sqrt(sum mu_k^2)``."""
    values = np.asarray([_check(m, "mu") for m in mus], dtype=float)
    return float(np.sqrt((values**2).sum()))


def sigma_for(sensitivity: float, epsilon: float, delta: float) -> float:
    """The noise scale that makes a release with ``||w - w'|| <= sensitivity`` (ε, δ)-DP:
    ``sensitivity / gdp_mu(ε, δ)``."""
    s = _check(sensitivity, "sensitivity", strict=True)
    return s / gdp_mu(epsilon, delta)


def tradeoff(fpr: float, mu: float) -> float:
    """The highest true-positive rate any test reaches at false-positive rate ``fpr`` against a
    ``mu``-GDP mechanism: ``Phi(Phi^-1(fpr) + mu)`` (the GDP trade-off curve)."""
    from scipy.stats import norm

    fpr = min(max(float(fpr), 0.0), 1.0)
    return float(norm.cdf(norm.ppf(fpr) + _check(mu, "mu")))
