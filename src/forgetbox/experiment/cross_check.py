"""A run's verdicts checked against a committed ensemble evaluation of the same setup
(``forgetbox evaluate``: K originals, K references and a retrain row of K models).

The same setup: data set, pre-training set, model, width, profile, preset and cohort (class,
size, training images per class). The ensemble reads the claims it can (1-5: D_f error, the
attack's member rate, D_r and test error, re-learn time) from each method's median over its K
models against the evaluation's own retrain band (5-95 % quantiles of the retrain row),
decided when the median clears its boundary by at least one sample of the set (1/|D_f| for D_f
readouts, one epoch for re-learn time) and by its spread over the models: the half-width of a
95 % bootstrap of the margin, each method's K models and the retrain row's resampled
(:func:`ensemble_spread`; none where the evaluation does not hold the retrain row's values).
The evidence counts the models outside. A run verdict
the ensemble reads the opposite way is *contradicted*; an inconclusive run verdict the ensemble
decides is noted. The retrain row's L1 distance to the references (two retrained models) is the
noise floor of Fig. 4.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np

from .evidence import (
    BOOTSTRAP_CONFIDENCE,
    BOOTSTRAP_RESAMPLES,
    Margin,
    combine,
    margins_text,
    resolution,
)

SETUP = (
    "dataset",
    "pretrain_dataset",
    "model",
    "width",
    "profile",
    "preset",
    "forget_class",
    "num_to_forget",
    "train_per_class",
    "linearized",
    "trainable",
    "alpha_fisher",  # the noise of fisher and ntk_fisher, which claims 3, 6, 7 and 9 compare
    "alpha_ntk_fisher",
)
DEFAULTS = {"preset": "forgetbox", "linearized": False, "trainable": None}
FLAGGED = ("contradicted", "decided by the ensemble")


def setup(config: dict) -> tuple:
    """The settings that make two runs the same setup (:data:`SETUP`)."""
    return tuple(config.get(k, DEFAULTS.get(k)) for k in SETUP)


def matching_evaluations(results: dict, folders) -> list[tuple[Path, dict]]:
    """``(folder, evaluation)`` of every ``evaluation.json`` under ``folders`` of the run's
    setup."""
    want = setup(results["config"])
    found = []
    for folder in sorted(Path(f) for f in folders):
        path = folder / "evaluation.json"
        if not path.is_file():
            continue
        try:
            ev = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError, UnicodeDecodeError):
            continue
        kind = isinstance(ev, dict) and ev.get("kind") == "forgetbox-evaluation/1"
        if kind and setup(ev["config"]["experiment"]) == want:
            found.append((folder, ev))
    return found


def _median(ev: dict, method: str, key: str) -> float | None:
    r = (ev["methods"].get(method) or {}).get("readouts", {}).get(key)
    return None if r is None or r.get("median") is None else float(r["median"])


def _outside(ev: dict, method: str, key: str) -> str:
    r = ev["methods"][method]["readouts"][key]
    return f"{r['models_outside']} of {len(r['values'])} outside"


def _res(run: dict, key: str) -> tuple[float, str]:
    return resolution(run, key)


SPREAD_WORDS = "bootstrap over the K models"
Stat = Callable[[dict[str, np.ndarray]], np.ndarray]


def _values(ev: dict, method: str, key: str) -> np.ndarray | None:
    r = (ev["methods"].get(method) or {}).get("readouts", {}).get(key) or {}
    v = np.asarray([np.nan if x is None else x for x in r.get("values") or []], dtype=float)
    return v if len(v) and np.isfinite(v).all() else None


def _med(a: np.ndarray) -> np.ndarray:
    return np.median(a, axis=-1)


def _low(ev: dict, key: str) -> Callable[[np.ndarray], np.ndarray]:
    q = (ev["bands"][key].get("quantiles") or [0.05, 0.95])[0]
    return lambda a: np.quantile(a, q, axis=-1)


def _high(ev: dict, key: str) -> Callable[[np.ndarray], np.ndarray]:
    q = (ev["bands"][key].get("quantiles") or [0.05, 0.95])[1]
    return lambda a: np.quantile(a, q, axis=-1)


def ensemble_spread(ev: dict, stat: Stat, uses: dict[str, tuple[str, str]]) -> float:
    """Half-width (the larger side) of the 95 % percentile bootstrap interval of ``stat``
    around its value on the evaluation's models. ``uses``: name -> (method, readout key) of
    the per-model values ``stat`` reads (arrays ``(..., K)``; the retrain row is the method
    "retrain", whose values make the band); each method's K models are resampled with
    replacement (one draw for all of a method's readouts), :data:`BOOTSTRAP_RESAMPLES` seeded
    draws. 0 where a method's values are not in the evaluation."""
    found = {name: _values(ev, m, key) for name, (m, key) in uses.items()}
    if any(v is None for v in found.values()):
        return 0.0
    rng = np.random.default_rng(0)
    draws: dict[str, np.ndarray] = {}
    for name, (m, _) in uses.items():
        k = len(found[name])
        if m not in draws or draws[m].shape[1] != k:
            draws[m] = rng.integers(0, k, size=(BOOTSTRAP_RESAMPLES, k))
    observed = float(stat({name: v[None] for name, v in found.items()})[0])
    boot = stat({name: v[draws[uses[name][0]]] for name, v in found.items()})
    tail = (1 - BOOTSTRAP_CONFIDENCE) / 2
    lo, hi = np.quantile(boot, [tail, 1 - tail])
    return float(max(observed - lo, hi - observed))


def _margin(run, ev, what, value, key, stat, uses, res=None) -> Margin:
    r, words = _res(run, key)
    if res is not None:
        r, words = res, "two points of error"
    return Margin(what, value, r, ensemble_spread(ev, stat, uses), words, SPREAD_WORDS)


def _half_gap_minus_finetune(a: dict[str, np.ndarray]) -> np.ndarray:
    o = _med(a["o"])
    return abs(_med(a["r"]) - o) / 2 - abs(_med(a["f"]) - o)


def _band_margins(run: dict, ev: dict, key: str, inside: tuple, above: tuple = ()):
    b = ev["bands"][key]
    lo, hi = b["low"], b["high"]
    low, high = _low(ev, key), _high(ev, key)
    ms, parts = [], [f"retrain band [{lo:.3g}, {hi:.3g}]"]
    for m in inside:
        v = _median(ev, m, key)
        ms.append(
            _margin(
                run,
                ev,
                f"{m} in band",
                min(v - lo, hi - v),
                key,
                lambda a: np.minimum(_med(a["m"]) - low(a["r"]), high(a["r"]) - _med(a["m"])),
                {"m": (m, key), "r": ("retrain", key)},
            )
        )
        parts.append(f"{m} {v:.3g} ({_outside(ev, m, key)})")
    for m in above:
        v = _median(ev, m, key)
        ms.append(
            _margin(
                run,
                ev,
                f"{m} above band",
                v - hi,
                key,
                lambda a: _med(a["m"]) - high(a["r"]),
                {"m": (m, key), "r": ("retrain", key)},
            )
        )
        parts.append(f"{m} {v:.3g} ({_outside(ev, m, key)})")
    return ms, ", ".join(parts)


def _distinguishable(run: dict, ev: dict, key: str) -> bool:
    """The original's median outside the retrain band by at least one sample and its
    spread."""
    b, o = ev["bands"][key], _median(ev, "original", key)
    if o is None:
        return False
    low, high = _low(ev, key), _high(ev, key)
    m = _margin(run, ev, "", max(b["low"] - o, o - b["high"]), key,
                lambda a: np.maximum(low(a["r"]) - _med(a["o"]), _med(a["o"]) - high(a["r"])),
                {"o": ("original", key), "r": ("retrain", key)})  # fmt: skip
    return m.holds is True


def ensemble_readings(run: dict, ev: dict) -> dict[int, tuple[bool | None, str]]:
    """``{claim: (reading, evidence)}`` of the claims the ensemble can read (medians against
    its retrain band; one sample of resolution)."""
    have = set(ev["methods"])
    bands = ev["bands"]
    out: dict[int, tuple[bool | None, str]] = {}
    ntks = tuple(m for m in ("ntk", "ntk_fisher") if m in have)
    same = "; original and retrain row are not distinguishable"
    apart = "error_forget" in bands and _distinguishable(run, ev, "error_forget")
    if ntks and "error_forget" in bands:
        ms, text = _band_margins(run, ev, "error_forget", ntks)
        out[1] = (
            (combine(ms), f"D_f error: {text}; {margins_text(ms)}")
            if apart
            else (None, f"D_f error: {text}{same}")
        )
    if {"original", "finetune"} <= have and "error_forget" in bands:
        o, ft = _median(ev, "original", "error_forget"), _median(ev, "finetune", "error_forget")
        rt = bands["error_forget"]["median"]
        m = _margin(run, ev, "half the retrain gap minus finetune's",
                    abs(rt - o) / 2 - abs(ft - o), "error_forget", _half_gap_minus_finetune,
                    {k: (m, "error_forget") for k, m in
                     (("o", "original"), ("f", "finetune"), ("r", "retrain"))})  # fmt: skip
        text = f"D_f error: original {o:.3g}, finetune {ft:.3g}, retrain row {rt:.3g}"
        out[2] = (combine([m]), f"{text}; {margins_text([m])}") if apart else (None, text + same)
    if {"fisher", "ntk_fisher"} <= have and {"error_retain", "error_test"} <= set(bands):
        cost = {
            m: _median(ev, m, "error_retain") + _median(ev, m, "error_test")
            for m in ("fisher", "ntk_fisher")
        }
        m = _margin(run, ev, "fisher's cost minus ntk_fisher's",
                    cost["fisher"] - cost["ntk_fisher"], "error_test",
                    lambda a: _med(a["fr"]) + _med(a["ft"]) - _med(a["nr"]) - _med(a["nt"]),
                    {"fr": ("fisher", "error_retain"), "ft": ("fisher", "error_test"),
                     "nr": ("ntk_fisher", "error_retain"), "nt": ("ntk_fisher", "error_test")},
                    res=0.02)  # fmt: skip
        text = f"D_r + test error: fisher {cost['fisher']:.3g}, ntk_fisher {cost['ntk_fisher']:.3g}"
        out[3] = (combine([m]), f"{text}; {margins_text([m])}")
    key = "mia_forget_member_rate"
    if ntks and {"original", "finetune"} <= have and key in bands:
        ms, text = _band_margins(run, ev, key, ntks, ("original", "finetune"))
        out[4] = (combine(ms), f"member rate: {text}; {margins_text(ms)}")
        if not _distinguishable(run, ev, key):
            out[4] = (None, f"member rate: {text}{same}")
    key = "relearn_epochs"
    if "ntk" in have and {"original", "finetune"} <= have and key in bands:
        out[5] = _relearn(run, ev)
    return out


def _relearn(run: dict, ev: dict) -> tuple[bool | None, str]:
    key = "relearn_epochs"
    v = {m: _median(ev, m, key) for m in ("ntk", "original", "finetune")}
    rt = ev["bands"][key]["median"]
    text = ", ".join(f"{m} {x:.3g}" for m, x in v.items()) + f", retrain row {rt:.3g} epochs"
    cap = ev["config"]["experiment"].get("relearn_max_epochs")
    if cap is not None and max(rt, v["ntk"]) >= cap:
        return None, text + f"; at the cap of {cap} epochs (the readout cannot tell them apart)"
    ms = [
        _margin(
            run,
            ev,
            f"ntk closer than {m} by",
            abs(v[m] - rt) - abs(v["ntk"] - rt),
            key,
            lambda a: abs(_med(a["m"]) - _med(a["r"])) - abs(_med(a["n"]) - _med(a["r"])),
            {"m": (m, key), "n": ("ntk", key), "r": ("retrain", key)},
        )  # fmt: skip
        for m in ("original", "finetune")
    ]
    return combine(ms), f"{text}; {margins_text(ms)}"


def _word(holds: bool | None) -> str:
    return "inconclusive" if holds is None else ("holds" if holds else "fails")


def cross_check(results: dict, folder: Path, ev: dict) -> dict:
    """The cross-check of a run's claims against one evaluation: per claim the run's verdict,
    the ensemble's reading and whether it contradicts; the L1 noise floor."""
    readings = ensemble_readings(results, ev)
    rows = []
    verdicts = {c["id"]: c for c in results.get("claims", [])}
    for cid, (holds, evidence) in sorted(readings.items()):
        run = verdicts.get(cid, {}).get("holds")
        if run is not None and holds is not None and run != holds:
            flag = "contradicted"
        elif run is None and holds is not None:
            flag = "decided by the ensemble"
        else:
            flag = "agrees" if run == holds else "ensemble inconclusive"
        rows.append(
            {
                "id": cid,
                "run": _word(run),
                "ensemble": _word(holds),
                "flag": flag,
                "evidence": evidence,
            }
        )
    floor = {
        s: {k: ev["bands"][f"l1_to_retrain_{s}"][k] for k in ("low", "median", "high")}
        for s in ("forget", "retain", "test")
        if f"l1_to_retrain_{s}" in ev["bands"]
    }
    models = ev["config"]["evaluate"]["models"]
    return {"evaluation": folder.name, "models": models, "claims": rows, "l1_floor": floor}


def flags(results: dict) -> list[dict]:
    """The cross-checked claims whose run verdict the ensemble contradicts or decides."""
    cc = results.get("cross_check") or {}
    return [c for c in cc.get("claims", []) if c["flag"] in FLAGGED]
