"""The sentence each page opens with, generated from its results: what was forgotten, the
headline method's D_f, D_r and test error against the retrain band, its cost against
retraining, and how many claims hold (a run) or readouts sit in the band (an evaluation)."""

from __future__ import annotations

import math

import numpy as np

from . import headline, provenance

ERRORS = (("error_forget", "D_f"), ("error_retain", "D_r"), ("error_test", "test"))


def times(ratio: float) -> str:
    """A speed ratio (retraining's time over the method's) in words: ``6.8× faster``, and below
    1 ``1.4× slower`` (never ``0.7× faster``)."""
    if ratio >= 1:
        return f"{ratio:.1f}× faster"
    return f"{1 / ratio:.1f}× slower"


def times_range(low: float, high: float) -> str:
    """The range of per-seed speed ratios in words (``5.9–7.5× faster``, ``1.1× slower to
    1.2× faster``)."""
    if low >= 1 or high < 1:
        a, b = (low, high) if low >= 1 else (1 / high, 1 / low)
        word = "faster" if low >= 1 else "slower"
        return f"{a:.1f}–{b:.1f}× {word}"
    return f"{times(low)} to {times(high)}"


def where(value: float, low: float, high: float) -> str:
    """``inside``, ``above`` or ``below`` a band."""
    return "inside" if low <= value <= high else ("above" if value > high else "below")


def headline_method(methods) -> str | None:
    """The method a page's sentence is about: ntk, else ntk_fisher, else certified (a
    linearized run's), else none."""
    return next((m for m in ("ntk", "ntk_fisher", "certified") if m in methods), None)


def _pct(x: float | None) -> str:
    return "not computable" if x is None else f"{100 * x:.1f} %"


def _band_text(value: float | None, band: dict | None) -> str:
    if not band or value is None:
        return _pct(value)
    lo, hi = band["low"], band["high"]
    shown_lo, shown_hi = max(lo, 0.0), min(hi, 1.0)
    return (
        f"{_pct(value)} (retrain band {100 * shown_lo:.1f}–{100 * shown_hi:.1f} %: "
        f"{where(value, lo, hi)})"
    )


def _n(k: int, one: str, many: str) -> str:
    return f"{k} {one if k == 1 else many}"


def run_sentence(results: dict) -> str:
    """One sentence a reader of a run can act on."""
    cfg, task = results["config"], results.get("task") or {}
    n = len(results.get("seeds", []))
    what = f"Forgetting {provenance.cohort_words(cfg, task)}, over {n} seed{'s' if n != 1 else ''}"
    method = headline_method(results["methods"])
    bands = results.get("retrain_bands") or {}
    parts = []
    if method:
        mean = results["methods"][method]["mean"]
        errs = [
            f"{name} error {_band_text(mean[k], bands.get(k))}"
            for k, name in ERRORS
            if mean.get(k) is not None
        ]
        parts.append(f"{method} leaves " + ", ".join(errs))
        sp = headline.speedups(results, method)
        if sp:
            parts.append(
                f"it runs {times(float(np.mean(sp)))} than retraining "
                f"({times_range(min(sp), max(sp))} by seed)"
            )
    counts = {v: 0 for v in ("holds", "fails", "inconclusive")}
    for c in results.get("claims", []):
        counts[c["verdict"]] += 1
    total = sum(counts.values())
    if total:
        parts.append(
            f"of the paper's {total} claims {_n(counts['holds'], 'holds', 'hold')}, "
            f"{_n(counts['fails'], 'fails', 'fail')} and "
            f"{_n(counts['inconclusive'], 'is inconclusive', 'are inconclusive')}"
        )
    flagged = [
        c for c in (results.get("cross_check") or {}).get("claims", []) if c["flag"] != "agrees"
    ]
    contra = [c for c in flagged if c["flag"] == "contradicted"]
    decided = [c for c in flagged if c["flag"] == "decided by the ensemble"]
    if contra or decided:
        cc = results["cross_check"]
        words = []
        if contra:
            words.append("contradicts claim " + ", ".join(str(c["id"]) for c in contra))
        if decided:
            words.append(
                "reads claim "
                + ", ".join(f"{c['id']} as {c['ensemble']}" for c in decided)
                + " where this run is inconclusive"
            )
        parts.append(f"the K = {cc['models']} ensemble of this setup " + " and ".join(words))
    return what + (": " + "; ".join(parts) if parts else "") + "."


def _median(values) -> float | None:
    v = [x for x in values if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return float(np.median(v)) if v else None


def evaluation_sentence(results: dict) -> str:
    """One sentence a reader of an evaluation can act on."""
    cfg = results["config"]["experiment"]
    k = results["config"]["evaluate"]["models"]
    what = (
        f"Forgetting {provenance.cohort_words(cfg, results.get('task') or {})}, "
        f"one split, {k} models per method"
    )
    method = headline_method(results["methods"])
    parts = []
    if method:
        reads = results["methods"][method]["readouts"]
        errs = [
            f"{name} error {_band_text(reads[key]['median'], results['bands'].get(key))}"
            for key, name in ERRORS
            if key in reads
        ]
        parts.append(f"{method}'s median model leaves " + ", ".join(errs))
        own = _median(results["methods"][method]["seconds"])
        ref = _median((results["methods"].get("retrain") or {}).get("seconds") or [])
        if own and ref:
            parts.append(f"it runs {times(ref / own)} than retraining (medians)")
        inside = [key for key, r in reads.items() if r["meaning"] == "inside"]
        parts.append(f"{len(inside)} of its {len(reads)} readouts lie inside the retrain band")
    check = ((results.get("certificate") or {}).get("methods") or {}).get(method or "")
    if check:
        parts.append(f"the attacks on its releases read {check['verdict']} the certificate")
    return what + (": " + "; ".join(parts) if parts else "") + "."
