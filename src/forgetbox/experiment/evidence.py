"""How far a verdict clears its boundary: each readout's resolution, the uncertainty of a
number from the spread of its seeds (or models), and the margin every claim prints.

A condition of a claim ("ntk's D_f error lies in the retrain band", "fisher costs more than
ntk_fisher") is a :class:`Margin`: the signed distance of the number from its boundary,
positive on the claim's side. It is decided only when it clears the boundary by at least

- the readout's **resolution** (:func:`resolution`): one sample of the set a rate or error is
  counted on (1/|D_f| for D_f errors and the attack's member rate, 1/|D_r| and 1/|test| for
  those errors), one epoch of re-learn time, 0.01 for the L1 distances (a continuous mean; the
  tolerance earlier rules used), and
- its **uncertainty** (:func:`spread`): the larger of the standard deviation over seeds and
  the half-width of a 95 % bootstrap interval of the mean over seeds (exact: every resample of
  up to six seeds); a single seed has no spread, so nothing resting on it is decided.

Otherwise it is inconclusive. A claim holds when every condition holds, fails when one fails,
and is inconclusive otherwise (:func:`combine`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..audit.band import ROUNDING, resolution_of

BOOTSTRAP_CONFIDENCE = 0.95
EXACT_BOOTSTRAP_UP_TO = 6  # seeds; beyond, 4,000 seeded resamples
BOOTSTRAP_RESAMPLES = 4000


def sizes(results: dict) -> dict[str, int | None]:
    """``{"forget", "retain", "test"}``: the sizes of D_f, D_r and the test set, from the run's
    ``task`` record or, for runs that predate it, from its configuration (None if unknown)."""
    task = results.get("task") or {}
    cfg = results.get("config") or {}
    n_forget = task.get("n_forget")
    n_classes = task.get("num_classes") or (5 if cfg else None)
    per_class = cfg.get("train_per_class")
    if n_forget is None and "num_to_forget" in cfg:
        k = cfg["num_to_forget"]
        n_forget = k if isinstance(k, int) else per_class  # None: the whole class
    n_train = task.get("n_train") or (per_class * n_classes if per_class and n_classes else None)
    n_retain = task.get("n_retain") or (n_train - n_forget if n_train and n_forget else None)
    n_test = task.get("n_test")
    if n_test is None and cfg.get("dataset") not in (None, "digits") and cfg.get("test_per_class"):
        n_test = cfg["test_per_class"] * n_classes
    return {"forget": n_forget, "retain": n_retain, "test": n_test}


def resolution(results: dict, key: str) -> tuple[float, str]:
    """``(resolution, words)`` of a readout (:func:`forgetbox.audit.resolution_of`) with the
    run's set sizes (:func:`sizes`); 0 where the set's size is not recorded."""
    return resolution_of(key, sizes(results))


def bootstrap_half_width(values: Sequence[float], stat=np.mean) -> float:
    """Half-width (the larger side) of the 95 % percentile bootstrap interval of ``stat`` of
    ``values`` around ``stat(values)``: every resample for up to
    :data:`EXACT_BOOTSTRAP_UP_TO` values, else :data:`BOOTSTRAP_RESAMPLES` seeded ones."""
    v = np.asarray(values, dtype=float)
    n = len(v)
    if n < 2:
        return 0.0
    if n <= EXACT_BOOTSTRAP_UP_TO:
        idx = np.array(list(itertools.product(range(n), repeat=n)))
    else:
        idx = np.random.default_rng(0).integers(0, n, size=(BOOTSTRAP_RESAMPLES, n))
    stats = stat(v[idx], axis=1)
    tail = (1 - BOOTSTRAP_CONFIDENCE) / 2
    lo, hi = np.quantile(stats, [tail, 1 - tail])
    centre = float(stat(v))
    return float(max(centre - lo, hi - centre))


def spread(values: Sequence[float] | None, recorded_std: float | None = None) -> float:
    """The uncertainty of a mean over seeds: the larger of the seeds' standard deviation and
    the bootstrap half-width (:func:`bootstrap_half_width`); ``inf`` for a single seed (no
    spread is known). Without per-seed values, the recorded standard deviation."""
    if not values:
        return float(recorded_std or 0.0)
    if len(values) == 1:
        return math.inf
    sd = float(np.std(np.asarray(values, dtype=float), ddof=1))
    return max(sd, bootstrap_half_width(values))


@dataclass(frozen=True)
class Margin:
    """One condition of a claim: how far ``value`` is on the claim's side of its boundary."""

    what: str
    margin: float  # > 0: on the claim's side
    resolution: float
    uncertainty: float
    resolution_words: str = ""
    uncertainty_words: str = "seed spread"

    @property
    def needed(self) -> float:
        """What the margin must exceed to decide the condition."""
        return max(self.resolution, self.uncertainty)

    @property
    def holds(self) -> bool | None:
        """True or False when the margin clears :attr:`needed` (at least, to float rounding)
        on either side, else None; a margin of 0 decides nothing."""
        if math.isnan(self.margin) or self.margin == 0:
            return None
        if self.margin >= self.needed - ROUNDING:
            return True
        if self.margin <= -self.needed + ROUNDING:
            return False
        return None

    def text(self) -> str:
        """``what +0.037 (needs 0.069, seed spread)``."""
        if math.isinf(self.uncertainty):
            why = "one seed: no spread"
            need = "a spread"
        else:
            res_wins = self.resolution >= self.uncertainty
            why = self.resolution_words if res_wins else self.uncertainty_words
            need = f"{self.needed:.3g}"
        return f"{self.what} {self.margin:+.3g} (needs {need}, {why})"


def combine(margins: Sequence[Margin]) -> bool | None:
    """A claim of several conditions: False if one clearly fails, True if all clearly hold,
    else None."""
    verdicts = [m.holds for m in margins]
    if any(v is False for v in verdicts):
        return False
    if verdicts and all(v is True for v in verdicts):
        return True
    return None


def margins_text(margins: Sequence[Margin]) -> str:
    """The margins for the evidence column."""
    return "margin: " + "; ".join(m.text() for m in margins)
