"""The paper's claims, checked on every run with precise criteria over the seeds.

Notation: for a readout R and method m, ``mean_m`` and ``std_m`` are over seeds.
- The *retrain band* of R is ``mean_retrain +- max(std_retrain, tol_R)``.
- Original and retrain are *distinguishable* on R when
  ``|mean_original - mean_retrain| > max(std_original + std_retrain, tol_R)``; a claim that needs
  the cohort to matter is *inconclusive* (``holds: null``) when they are not.
- ``tol_R``: 0.02 for errors, 0.05 for the attack's member rate, 1 epoch for re-learn time,
  0.01 for L1 distances.
"""

from __future__ import annotations

import math

TOL = {
    "error_forget": 0.02,
    "error_retain": 0.02,
    "error_test": 0.02,
    "mia_forget_member_rate": 0.05,
    "relearn_epochs": 1.0,
    "l1_to_retrain_forget": 0.01,
}

CLAIMS = {
    1: "NTK-based scrubbing (ntk, ntk_fisher) leaves the error on D_f inside the retrain band.",
    2: "Fine-tuning on D_r does not forget: its D_f error stays near the original's.",
    3: "Fisher forgetting costs more error on D_r and test than NTK+Fisher.",
    4: "The membership attack on NTK-scrubbed models is inside the retrain band, while original "
    "and fine-tune are above it.",
    5: "NTK's re-learn time is closer to retrain's than original's and fine-tune's are.",
    6: "At the same noise, the black-box bound (per query from D_f) is far below (10x) the "
    "white-box bound.",
    7: "Queries from D_f leak more information than queries from D_r or test.",
    8: "Along the scrubbing direction the L1 distance to retrain on D_f falls to near its minimum "
    "at the scrubbed point, while on D_r it stays nearly flat.",
}


def _get(results: dict, method: str, key: str, stat: str = "mean") -> float | None:
    m = results["methods"].get(method)
    if m is None:
        return None
    v = m[stat].get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _band(results: dict, key: str) -> tuple[float, float] | None:
    mu, sd = _get(results, "retrain", key), _get(results, "retrain", key, "std")
    if mu is None:
        return None
    w = max(sd or 0.0, TOL.get(key, 0.0))
    return mu - w, mu + w


def _distinguishable(results: dict, key: str) -> bool:
    o, r = _get(results, "original", key), _get(results, "retrain", key)
    if o is None or r is None:
        return False
    so, sr = _get(results, "original", key, "std") or 0, _get(results, "retrain", key, "std") or 0
    return abs(o - r) > max(so + sr, TOL.get(key, 0.0))


def _claim(cid: int, holds: bool | None, evidence: str) -> dict:
    verdict = "inconclusive" if holds is None else ("holds" if holds else "fails")
    return {
        "id": cid,
        "text": CLAIMS[cid],
        "holds": holds,
        "verdict": verdict,
        "evidence": evidence,
    }


def _missing(cid: int, what: str) -> dict:
    return _claim(cid, None, f"not evaluated: {what} missing from this run")


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def evaluate(results: dict) -> list[dict]:
    """Verdicts for the eight claims (see the module docstring for the criteria)."""
    return [f(results) for f in (_c1, _c2, _c3, _c4, _c5, _c6, _c7, _c8)]


def _c1(r: dict) -> dict:
    key = "error_forget"
    ntks = [m for m in ("ntk", "ntk_fisher") if m in r["methods"]]
    if not ntks:
        return _missing(1, "ntk methods")
    lo, hi = _band(r, key)
    vals = {m: _get(r, m, key) for m in ntks}
    inside = all(lo <= v <= hi for v in vals.values())
    ev = f"retrain band [{lo:.3f}, {hi:.3f}]; " + ", ".join(f"{m} {v:.3f}" for m, v in vals.items())
    if not _distinguishable(r, key):
        return _claim(1, None, ev + "; original and retrain are not distinguishable on D_f error")
    return _claim(1, inside, ev)


def _c2(r: dict) -> dict:
    key = "error_forget"
    if "finetune" not in r["methods"]:
        return _missing(2, "finetune")
    o, rt, ft = (_get(r, m, key) for m in ("original", "retrain", "finetune"))
    ev = f"D_f error: original {o:.3f}, finetune {ft:.3f}, retrain {rt:.3f}"
    if not _distinguishable(r, key):
        return _claim(2, None, ev + "; original and retrain are not distinguishable")
    return _claim(2, abs(ft - o) < abs(rt - o) / 2, ev + "; holds if |ft-orig| < |retrain-orig|/2")


def _c3(r: dict) -> dict:
    if not {"fisher", "ntk_fisher"} <= set(r["methods"]):
        return _missing(3, "fisher or ntk_fisher")
    cost = {}
    spread = 0.0
    for m in ("fisher", "ntk_fisher"):
        cost[m] = (_get(r, m, "error_retain") or 0) + (_get(r, m, "error_test") or 0)
        spread += (_get(r, m, "error_retain", "std") or 0) + (_get(r, m, "error_test", "std") or 0)
    ev = (
        f"error on D_r + test: fisher {cost['fisher']:.3f}, ntk_fisher {cost['ntk_fisher']:.3f}"
        f" (spread {spread:.3f}); D_f error fisher {_fmt(_get(r, 'fisher', 'error_forget'))},"
        f" ntk_fisher {_fmt(_get(r, 'ntk_fisher', 'error_forget'))}"
    )
    return _claim(3, cost["fisher"] - cost["ntk_fisher"] > max(spread, 0.02), ev)


def _c4(r: dict) -> dict:
    key = "mia_forget_member_rate"
    ntks = [m for m in ("ntk", "ntk_fisher") if m in r["methods"]]
    if not ntks or "finetune" not in r["methods"]:
        return _missing(4, "ntk methods or finetune")
    lo, hi = _band(r, key)
    vals = {m: _get(r, m, key) for m in (*ntks, "original", "finetune")}
    ev = f"retrain band [{lo:.3f}, {hi:.3f}]; " + ", ".join(f"{m} {v:.3f}" for m, v in vals.items())
    if not _distinguishable(r, key):
        return _claim(4, None, ev + "; original and retrain are not distinguishable by the attack")
    ok = all(lo <= vals[m] <= hi for m in ntks) and vals["original"] > hi and vals["finetune"] > hi
    return _claim(4, ok, ev)


def _c5(r: dict) -> dict:
    key = "relearn_epochs"
    if "ntk" not in r["methods"] or "finetune" not in r["methods"]:
        return _missing(5, "ntk or finetune")
    v = {m: _get(r, m, key) for m in ("ntk", "original", "finetune", "retrain")}
    d = {m: abs(v[m] - v["retrain"]) for m in ("ntk", "original", "finetune")}
    ev = ", ".join(f"{m} {x:.2f}" for m, x in v.items()) + " epochs"
    if not _distinguishable(r, key):
        return _claim(5, None, ev + "; original and retrain are not distinguishable")
    return _claim(5, d["ntk"] < d["original"] and d["ntk"] < d["finetune"], ev)


def _c6(r: dict) -> dict:
    if "ntk_fisher" not in r["methods"]:
        return _missing(6, "ntk_fisher")
    w = _get(r, "ntk_fisher", "info_weights_nats")
    b = _get(r, "ntk_fisher", "info_activations_nats_forget")
    ev = f"ntk_fisher: white-box {_fmt(w)} nats, black-box {_fmt(b)} nats per D_f query"
    if w is None or b is None:
        return _claim(6, None, ev)
    return _claim(6, b * 10 <= w, ev)


def _c7(r: dict) -> dict:
    if "ntk_fisher" not in r["methods"]:
        return _missing(7, "ntk_fisher")
    v = {
        s: _get(r, "ntk_fisher", f"info_activations_nats_{s}") for s in ("forget", "retain", "test")
    }
    ev = "ntk_fisher nats per query: " + ", ".join(f"{s} {_fmt(x)}" for s, x in v.items())
    if None in v.values():
        return _claim(7, None, ev)
    return _claim(7, v["forget"] > v["retain"] and v["forget"] > v["test"], ev)


def _c8(r: dict) -> dict:
    rows = [p for p in r.get("activation_path", []) if p["method"] == "ntk"]
    if not rows:
        return _missing(8, "ntk activation path")
    alphas = sorted({p["alpha"] for p in rows})

    def curve(subset):
        return [
            sum(p[subset] for p in rows if p["alpha"] == a)
            / sum(1 for p in rows if p["alpha"] == a)
            for a in alphas
        ]

    f, rr = curve("forget"), curve("retain")
    at1 = f[min(range(len(alphas)), key=lambda i: abs(alphas[i] - 1.0))]
    drop = f[0] - min(f)
    near_min = drop > 0 and (at1 - min(f)) <= 0.25 * drop
    flat = (max(rr) - min(rr)) <= 0.5 * max(drop, 1e-12)
    ev = (
        f"D_f L1: {f[0]:.3f} at 0, {at1:.3f} at 1, min {min(f):.3f}; "
        f"D_r L1 range {max(rr) - min(rr):.3f}"
    )
    if (
        not _distinguishable(r, "l1_to_retrain_forget")
        and f[0] <= rr[0] + TOL["l1_to_retrain_forget"]
    ):
        return _claim(8, None, ev + "; the original is not farther from retrain on D_f than on D_r")
    return _claim(8, near_min and flat, ev)


# a fine-tuning that ends above this training error is flagged: the paper trains to zero error,
# and readouts measured against an unconverged or diverged model (above all the retrain
# reference) say little
TRAIN_ERROR_WARNING = 0.05


def training_warnings(results: dict) -> list[str]:
    """One line per fine-tuning (original or retrain, per seed) that ended with training error
    above :data:`TRAIN_ERROR_WARNING`, saying whether it had reached zero error before, or that
    diverged after zero error and kept its zero-error weights."""
    out = []
    for entry in results.get("training", []):
        for which in ("original", "retrain"):
            t = entry.get(which) or {}
            if t.get("restored_from_epoch") is not None:
                out.append(
                    f"seed {entry['seed']}: the {which} fine-tuning diverged after reaching zero "
                    f"training error; its weights after epoch {t['restored_from_epoch']} (zero "
                    "error) were kept"
                )
            err = t.get("train_error")
            if err is None or err <= TRAIN_ERROR_WARNING:
                continue
            how = (
                "after reaching zero error earlier (diverged)"
                if t.get("reached_zero_error")
                else "without reaching zero error"
            )
            out.append(
                f"seed {entry['seed']}: the {which} fine-tuning ended at {err:.1%} training error "
                f"after {t.get('epochs')} epochs, {how}; readouts compared with it are unreliable"
            )
    return out
