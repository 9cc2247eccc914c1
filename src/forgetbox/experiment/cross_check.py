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

from ..audit.band import QUANTILES
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
# a statistic a margin reads: (method, readout key, "median" | "low" | "high"), the method's
# median over its models or an edge of the retrain band (the method "retrain")
Use = tuple[str, str, str]
# a margin from its statistics: floats (the recorded ones) or arrays (one per bootstrap draw)
Formula = Callable[[dict], object]


def _values(ev: dict, method: str, key: str) -> np.ndarray | None:
    r = (ev["methods"].get(method) or {}).get("readouts", {}).get(key) or {}
    v = np.asarray([np.nan if x is None else x for x in r.get("values") or []], dtype=float)
    return v if len(v) and np.isfinite(v).all() else None


def _recorded(ev: dict, method: str, key: str, what: str) -> float:
    """A statistic as the evaluation recorded it (the band's edges and median for the retrain
    row)."""
    if what != "median" or method == "retrain":
        return float(ev["bands"][key][what])
    return _median(ev, method, key)


def _of_values(ev: dict, key: str, what: str, values: np.ndarray) -> np.ndarray:
    """The statistic ``what`` of per-model ``values`` ``(..., K)`` (the band's quantiles)."""
    if what == "median":
        return np.median(values, axis=-1)
    q = ev["bands"][key].get("quantiles") or QUANTILES
    return np.quantile(values, q[0 if what == "low" else 1], axis=-1)


def ensemble_spread(ev: dict, formula: Formula, uses: dict[str, Use]) -> float:
    """Half-width (the larger side) of the 95 % percentile bootstrap interval of ``formula``
    around its value on the evaluation's models. ``uses``: the statistics ``formula`` reads,
    by name; each method's K models are resampled with replacement (one draw for all of a
    method's statistics), :data:`BOOTSTRAP_RESAMPLES` seeded draws. 0 where a method's
    per-model values are not in the evaluation."""
    found = {name: _values(ev, m, key) for name, (m, key, _) in uses.items()}
    if any(v is None for v in found.values()):
        return 0.0
    rng = np.random.default_rng(0)
    draws: dict[str, np.ndarray] = {}
    for name, (m, _, _) in uses.items():
        k = len(found[name])
        if m not in draws or draws[m].shape[1] != k:
            draws[m] = rng.integers(0, k, size=(BOOTSTRAP_RESAMPLES, k))

    def stats(pick) -> dict:
        return {n: _of_values(ev, key, what, pick(n)) for n, (_, key, what) in uses.items()}

    observed = float(formula(stats(lambda n: found[n])))
    boot = formula(stats(lambda n: found[n][draws[uses[n][0]]]))
    tail = (1 - BOOTSTRAP_CONFIDENCE) / 2
    lo, hi = np.quantile(boot, [tail, 1 - tail])
    return float(max(observed - lo, hi - observed))


def _margin(run, ev, what, key, formula: Formula, uses: dict[str, Use], res=None) -> Margin:
    """The margin ``formula`` gives on the recorded statistics, with the resolution of ``key``
    (or ``res``: two points of error) and the bootstrap spread (:func:`ensemble_spread`)."""
    r, words = _res(run, key)
    if res is not None:
        r, words = res, "two points of error"
    value = float(formula({n: _recorded(ev, *use) for n, use in uses.items()}))
    return Margin(what, value, r, ensemble_spread(ev, formula, uses), words, SPREAD_WORDS)


def _band(key: str) -> dict[str, Use]:
    return {"lo": ("retrain", key, "low"), "hi": ("retrain", key, "high")}


def _band_margins(run: dict, ev: dict, key: str, inside: tuple, above: tuple = ()):
    b = ev["bands"][key]
    ms, parts = [], [f"retrain band [{b['low']:.3g}, {b['high']:.3g}]"]
    for m in inside:
        uses = {"m": (m, key, "median"), **_band(key)}
        formula = lambda s: np.minimum(s["m"] - s["lo"], s["hi"] - s["m"])  # noqa: E731
        ms.append(_margin(run, ev, f"{m} in band", key, formula, uses))
        parts.append(f"{m} {_median(ev, m, key):.3g} ({_outside(ev, m, key)})")
    for m in above:
        uses = {"m": (m, key, "median"), **_band(key)}
        ms.append(_margin(run, ev, f"{m} above band", key, lambda s: s["m"] - s["hi"], uses))
        parts.append(f"{m} {_median(ev, m, key):.3g} ({_outside(ev, m, key)})")
    return ms, ", ".join(parts)


def _distinguishable(run: dict, ev: dict, key: str) -> bool:
    """The original's median outside the retrain band by at least one sample and its
    spread."""
    if _median(ev, "original", key) is None:
        return False
    uses = {"o": ("original", key, "median"), **_band(key)}
    formula = lambda s: np.maximum(s["lo"] - s["o"], s["o"] - s["hi"])  # noqa: E731
    return _margin(run, ev, "", key, formula, uses).holds is True


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
        uses = {k: (m, "error_forget", "median") for k, m in
                (("o", "original"), ("f", "finetune"), ("r", "retrain"))}  # fmt: skip
        formula = lambda s: abs(s["r"] - s["o"]) / 2 - abs(s["f"] - s["o"])  # noqa: E731
        m = _margin(run, ev, "half the retrain gap minus finetune's", "error_forget", formula, uses)
        text = f"D_f error: original {o:.3g}, finetune {ft:.3g}, retrain row {rt:.3g}"
        out[2] = (combine([m]), f"{text}; {margins_text([m])}") if apart else (None, text + same)
    if {"fisher", "ntk_fisher"} <= have and {"error_retain", "error_test"} <= set(bands):
        cost = {
            m: _median(ev, m, "error_retain") + _median(ev, m, "error_test")
            for m in ("fisher", "ntk_fisher")
        }
        uses = {n + t: (m, k, "median") for n, m in (("f", "fisher"), ("n", "ntk_fisher"))
                for t, k in (("r", "error_retain"), ("t", "error_test"))}  # fmt: skip
        formula = lambda s: (s["fr"] + s["ft"]) - (s["nr"] + s["nt"])  # noqa: E731
        m = _margin(run, ev, "fisher's cost minus ntk_fisher's", "error_test", formula, uses,
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
    formula = lambda s: abs(s["m"] - s["r"]) - abs(s["n"] - s["r"])  # noqa: E731
    ms = [
        _margin(
            run,
            ev,
            f"ntk closer than {m} by",
            key,
            formula,
            {"m": (m, key, "median"), "n": ("ntk", key, "median"), "r": ("retrain", key, "median")},
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
