"""The nine claims' checks on a run's results: each returns ``(holds, evidence)`` with
``holds`` True, False or None (inconclusive). Criteria: :mod:`forgetbox.experiment.claims`."""

from __future__ import annotations

import math
from collections import defaultdict

TOL = {
    "error_forget": 0.02,
    "error_retain": 0.02,
    "error_test": 0.02,
    "mia_forget_member_rate": 0.05,
    "relearn_epochs": 1.0,
    "l1_to_retrain_forget": 0.01,
}


def get(results: dict, method: str, key: str, stat: str = "mean") -> float | None:
    """A readout's mean (or ``stat``) over seeds for a method, or None."""
    m = results["methods"].get(method)
    if m is None:
        return None
    v = m[stat].get(key)
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def per_seed(results: dict, method: str, key: str) -> dict[int, float]:
    """``{seed: value}`` of a readout (the mean alone, as seed 0, when no rows are kept)."""
    block = results["methods"].get(method) or {}
    rows = block.get("per_seed")
    if not rows:
        v = get(results, method, key)
        return {} if v is None else {0: v}
    return {r["seed"]: float(r[key]) for r in rows if r.get(key) is not None}


def band(results: dict, key: str) -> tuple[float, float] | None:
    """The retrain band of a readout: ``mean +- max(std, tolerance)``, or None."""
    mu, sd = get(results, "retrain", key), get(results, "retrain", key, "std")
    if mu is None:
        return None
    w = max(sd or 0.0, TOL.get(key, 0.0))
    return mu - w, mu + w


def distinguishable(results: dict, key: str) -> bool:
    """Whether original and retrain differ on a readout by more than their spread."""
    o, r = get(results, "original", key), get(results, "retrain", key)
    if o is None or r is None:
        return False
    so, sr = get(results, "original", key, "std") or 0, get(results, "retrain", key, "std") or 0
    return abs(o - r) > max(so + sr, TOL.get(key, 0.0))


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _missing(what: str):
    return None, f"not evaluated: {what} missing from this run"


def _per_seed_verdict(passes: list[bool], opposite: list[bool]) -> bool | None:
    if passes and all(passes):
        return True
    if opposite and all(opposite):
        return False
    return None


def c1(r: dict):
    """Claim 1 (``(holds, evidence)``): the NTK methods' D_f error in the retrain band."""
    key = "error_forget"
    ntks = [m for m in ("ntk", "ntk_fisher") if m in r["methods"]]
    if not ntks:
        return _missing("ntk methods")
    lo, hi = band(r, key)
    vals = {m: get(r, m, key) for m in ntks}
    ev = f"retrain band [{lo:.3f}, {hi:.3f}]; " + ", ".join(f"{m} {v:.3f}" for m, v in vals.items())
    if not distinguishable(r, key):
        return None, ev + "; original and retrain are not distinguishable on D_f error"
    return all(lo <= v <= hi for v in vals.values()), ev


def c2(r: dict):
    """Claim 2: fine-tuning's D_f error stays near the original's."""
    key = "error_forget"
    if "finetune" not in r["methods"]:
        return _missing("finetune")
    o, rt, ft = (get(r, m, key) for m in ("original", "retrain", "finetune"))
    ev = f"D_f error: original {o:.3f}, finetune {ft:.3f}, retrain {rt:.3f}"
    if not distinguishable(r, key):
        return None, ev + "; original and retrain are not distinguishable"
    return abs(ft - o) < abs(rt - o) / 2, ev


def c3(r: dict):
    """Claim 3: Fisher costs more D_r + test error than NTK + Fisher."""
    if not {"fisher", "ntk_fisher"} <= set(r["methods"]):
        return _missing("fisher or ntk_fisher")
    cost, spread = {}, 0.0
    for m in ("fisher", "ntk_fisher"):
        cost[m] = (get(r, m, "error_retain") or 0) + (get(r, m, "error_test") or 0)
        spread += (get(r, m, "error_retain", "std") or 0) + (get(r, m, "error_test", "std") or 0)
    alphas = {m: get(r, m, "info_alpha") for m in ("fisher", "ntk_fisher")}
    ev = (
        f"error on D_r + test: fisher {cost['fisher']:.3f} (alpha {_fmt(alphas['fisher'])}), "
        f"ntk_fisher {cost['ntk_fisher']:.3f} (alpha {_fmt(alphas['ntk_fisher'])}); spread "
        f"{spread:.3f}; D_f error fisher {_fmt(get(r, 'fisher', 'error_forget'))}, ntk_fisher "
        f"{_fmt(get(r, 'ntk_fisher', 'error_forget'))}"
    )
    return cost["fisher"] - cost["ntk_fisher"] > max(spread, 0.02), ev


def c4(r: dict):
    """Claim 4: the attack's member rate in the band for NTK, above it for original and finetune."""
    key = "mia_forget_member_rate"
    ntks = [m for m in ("ntk", "ntk_fisher") if m in r["methods"]]
    if not ntks or "finetune" not in r["methods"]:
        return _missing("ntk methods or finetune")
    lo, hi = band(r, key)
    vals = {m: get(r, m, key) for m in (*ntks, "original", "finetune")}
    ev = f"retrain band [{lo:.3f}, {hi:.3f}]; " + ", ".join(f"{m} {v:.3f}" for m, v in vals.items())
    if not distinguishable(r, key):
        return None, ev + "; original and retrain are not distinguishable by the attack"
    ok = all(lo <= vals[m] <= hi for m in ntks) and vals["original"] > hi and vals["finetune"] > hi
    return ok, ev


def c5(r: dict):
    """Claim 5: NTK's re-learn time is closest to retrain's."""
    key = "relearn_epochs"
    if "ntk" not in r["methods"] or "finetune" not in r["methods"]:
        return _missing("ntk or finetune")
    v = {m: get(r, m, key) for m in ("ntk", "original", "finetune", "retrain")}
    d = {m: abs(v[m] - v["retrain"]) for m in ("ntk", "original", "finetune")}
    ev = ", ".join(f"{m} {x:.2f}" for m, x in v.items()) + " epochs"
    cap = (r.get("config") or {}).get("relearn_max_epochs")
    if cap is not None:
        capped = [
            m for m in ("ntk", "retrain") if any(x >= cap for x in per_seed(r, m, key).values())
        ]
        if capped:
            return None, ev + (
                f"; at the cap of {cap} epochs on some seed: {', '.join(capped)} (the readout "
                "cannot tell them apart)"
            )
    if not distinguishable(r, key):
        return None, ev + "; original and retrain are not distinguishable"
    return d["ntk"] < d["original"] and d["ntk"] < d["finetune"], ev


def c6(r: dict):
    """Claim 6: the black-box bound per D_f query at least 10x below the white-box bound."""
    if "ntk_fisher" not in r["methods"]:
        return _missing("ntk_fisher")
    w = per_seed(r, "ntk_fisher", "info_weights_nats")
    b = per_seed(r, "ntk_fisher", "info_activations_nats_forget")
    seeds = sorted(set(w) & set(b))
    ev = "ntk_fisher per seed, white-box vs black-box per D_f query: " + ", ".join(
        f"{w[s]:.3g} vs {b[s]:.3g}" for s in seeds
    )
    if not seeds:
        return None, ev
    holds = _per_seed_verdict([10 * b[s] <= w[s] for s in seeds], [10 * b[s] > w[s] for s in seeds])
    return holds, ev


def c7(r: dict):
    """Claim 7: D_f queries leak more than D_r and test queries."""
    if "ntk_fisher" not in r["methods"]:
        return _missing("ntk_fisher")
    v = {
        s: per_seed(r, "ntk_fisher", f"info_activations_nats_{s}")
        for s in ("forget", "retain", "test")
    }
    seeds = sorted(set(v["forget"]) & set(v["retain"]) & set(v["test"]))
    ev = "ntk_fisher nats per query (D_f / D_r / test) per seed: " + "; ".join(
        f"{v['forget'][s]:.4g} / {v['retain'][s]:.4g} / {v['test'][s]:.4g}" for s in seeds
    )
    if not seeds:
        return None, ev
    above = [v["forget"][s] > max(v["retain"][s], v["test"][s]) for s in seeds]
    return _per_seed_verdict(above, [not a for a in above]), ev


def c8(r: dict):
    """Claim 8: the L1 path to retrain on D_f reaches near its minimum at the scrubbed point."""
    rows = [p for p in r.get("activation_path", []) if p["method"] == "ntk"]
    if not rows:
        return _missing("ntk activation path")
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
        not distinguishable(r, "l1_to_retrain_forget")
        and f[0] <= rr[0] + TOL["l1_to_retrain_forget"]
    ):
        return None, ev + "; the original is not farther from retrain on D_f than on D_r"
    return near_min and flat, ev


def common_alpha_information(r: dict) -> dict[float, dict[str, dict[int, float]]]:
    """``{alpha: {method: {seed: white-box nats}}}`` from the trade-off grid (Fig. 3)."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for row in r.get("tradeoff") or []:
        out[row["alpha"]][row["method"]][row["seed"]] = row["info_weights_nats"]
    return out


def c9(r: dict):
    """Claim 9: NTK + Fisher leaves less white-box information than Fisher at the same noise."""
    grid = common_alpha_information(r)
    alphas = [a for a in sorted(grid) if {"fisher", "ntk_fisher"} <= set(grid[a])]
    if not alphas:
        return _missing("the trade-off grid of fisher and ntk_fisher")
    lower, higher, parts = [], [], []
    for a in alphas:
        f, n = grid[a]["fisher"], grid[a]["ntk_fisher"]
        seeds = sorted(set(f) & set(n))
        diffs = [f[s] - n[s] for s in seeds]
        lower.append(bool(diffs) and all(d > 0 for d in diffs))
        higher.append(bool(diffs) and all(d < 0 for d in diffs))
        ratio = sum(n[s] for s in seeds) / max(sum(f[s] for s in seeds), 1e-300)
        parts.append(f"alpha {a:.0e}: ntk_fisher / fisher = {ratio:.2f}")
    ev = "white-box nats at common alpha (mean over seeds): " + "; ".join(parts)
    if all(lower):
        return True, ev
    if any(higher) and not any(lower):
        return False, ev + "; NTK + Fisher is higher on every seed at " + ", ".join(
            f"{a:.0e}" for a, h in zip(alphas, higher, strict=True) if h
        )
    return None, ev


CHECKS = (c1, c2, c3, c4, c5, c6, c7, c8, c9)
