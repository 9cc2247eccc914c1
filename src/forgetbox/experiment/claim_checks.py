"""The nine claims' checks on a run's results: each returns ``(holds, evidence)`` with
``holds`` True, False or None (inconclusive), the evidence ending with the margins the verdict
rests on. Criteria: :mod:`forgetbox.experiment.claims`; margins, resolutions and spreads:
:mod:`forgetbox.experiment.evidence`; the bound claims (6, 7, 9): :mod:`.claim_bounds`."""

from __future__ import annotations

import math
from collections.abc import Callable

from . import claim_bounds
from .evidence import Margin, combine, margins_text, resolution, spread

TOL = {
    "error_forget": 0.02,
    "error_retain": 0.02,
    "error_test": 0.02,
    "mia_forget_member_rate": 0.05,
    "relearn_epochs": 1.0,
    "l1_to_retrain_forget": 0.01,
}
MATERIAL_COST = 0.02  # claim 3: "costs more" means at least two points of D_r + test error


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


def seed_values(results: dict, method: str, key: str) -> dict[int, float] | None:
    """``{seed: value}`` where the run kept per-seed rows, else None."""
    if not (results["methods"].get(method) or {}).get("per_seed"):
        return None
    return per_seed(results, method, key)


def method_spread(results: dict, method: str, key: str) -> float:
    """The uncertainty of a method's mean readout (:func:`evidence.spread`)."""
    v = seed_values(results, method, key)
    return spread(None if v is None else list(v.values()), get(results, method, key, "std"))


def paired_spread(results: dict, parts: list[tuple[str, str]], fn: Callable[..., float]) -> float:
    """The uncertainty of ``fn(*values)`` of several readouts compared on the same seeds: the
    spread of its per-seed values; without per-seed rows, the summed standard deviations."""
    per = [seed_values(results, m, k) for m, k in parts]
    if any(p is None for p in per):
        return sum(get(results, m, k, "std") or 0.0 for m, k in parts)
    seeds = sorted(set.intersection(*(set(p) for p in per)))
    return spread([fn(*(p[s] for p in per)) for s in seeds])


def half_width(results: dict, key: str) -> float:
    """The retrain band's half-width: the largest of retrain's standard deviation, the
    readout's tolerance and one sample of its set (a band narrower than that cannot be read)."""
    sd = get(results, "retrain", key, "std") or 0.0
    return max(sd, TOL.get(key, 0.0), resolution(results, key)[0])


def band(results: dict, key: str) -> tuple[float, float] | None:
    """The retrain band of a readout: ``mean +- half_width``, or None."""
    mu = get(results, "retrain", key)
    if mu is None:
        return None
    w = half_width(results, key)
    return mu - w, mu + w


def distinguishable(results: dict, key: str) -> bool:
    """Whether original and retrain differ on a readout by more than their spread, the
    readout's tolerance and its resolution."""
    o, r = get(results, "original", key), get(results, "retrain", key)
    if o is None or r is None:
        return False
    so, sr = get(results, "original", key, "std") or 0, get(results, "retrain", key, "std") or 0
    return abs(o - r) > max(so + sr, TOL.get(key, 0.0), resolution(results, key)[0])


def margin(
    results: dict, what: str, value: float, key: str, uncertainty: float, res: float | None = None
) -> Margin:
    """A :class:`Margin` of ``value`` with the readout's resolution (or ``res``)."""
    r, words = resolution(results, key)
    if res is not None:
        r, words = res, words if res == r else f"resolution {res:.3g}"
    return Margin(what, value, r, uncertainty, words)


def in_band(results: dict, method: str, key: str, lo: float, hi: float) -> Margin:
    """How far a method's mean lies inside the band (negative: outside)."""
    v = get(results, method, key)
    return margin(results, f"{method} in band", min(v - lo, hi - v), key,
                  method_spread(results, method, key))  # fmt: skip


def above(results: dict, method: str, key: str, hi: float) -> Margin:
    """How far a method's mean lies above the band's top."""
    v = get(results, method, key)
    return margin(results, f"{method} above band", v - hi, key,
                  method_spread(results, method, key))  # fmt: skip


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4g}"


def _missing(what: str):
    return None, f"not evaluated: {what} missing from this run"


def _judged(ev: str, margins: list[Margin]):
    return combine(margins), ev + "; " + margins_text(margins)


def c1(r: dict):
    """Claim 1 (``(holds, evidence)``): the NTK methods' D_f error in the retrain band."""
    key = "error_forget"
    ntks = [m for m in ("ntk", "ntk_fisher") if m in r["methods"]]
    if not ntks:
        return _missing("ntk methods")
    vals = {m: get(r, m, key) for m in ("original", "retrain", *ntks)}
    if None in vals.values():
        return _missing("D_f error")
    lo, hi = band(r, key)
    vals = {m: vals[m] for m in ntks}
    ev = f"retrain band [{lo:.3f}, {hi:.3f}]; " + ", ".join(f"{m} {v:.3f}" for m, v in vals.items())
    if not distinguishable(r, key):
        return None, ev + "; original and retrain are not distinguishable on D_f error"
    return _judged(ev, [in_band(r, m, key, lo, hi) for m in ntks])


def c2(r: dict):
    """Claim 2: fine-tuning's D_f error stays near the original's."""
    key = "error_forget"
    if "finetune" not in r["methods"]:
        return _missing("finetune")
    o, rt, ft = (get(r, m, key) for m in ("original", "retrain", "finetune"))
    if None in (o, rt, ft):
        return _missing("D_f error")
    ev = f"D_f error: original {o:.3f}, finetune {ft:.3f}, retrain {rt:.3f}"
    if not distinguishable(r, key):
        return None, ev + "; original and retrain are not distinguishable"

    def gap(o_, rt_, ft_):
        return abs(rt_ - o_) / 2 - abs(ft_ - o_)

    parts = [("original", key), ("retrain", key), ("finetune", key)]
    m = margin(r, "half the retrain gap minus finetune's", gap(o, rt, ft), key,
               paired_spread(r, parts, gap))  # fmt: skip
    return _judged(ev, [m])


def c3(r: dict):
    """Claim 3: Fisher costs more D_r + test error than NTK + Fisher."""
    if not {"fisher", "ntk_fisher"} <= set(r["methods"]):
        return _missing("fisher or ntk_fisher")
    cost = {
        m: (get(r, m, "error_retain") or 0) + (get(r, m, "error_test") or 0)
        for m in ("fisher", "ntk_fisher")
    }
    alphas = {m: get(r, m, "info_alpha") for m in ("fisher", "ntk_fisher")}
    ev = (
        f"error on D_r + test: fisher {cost['fisher']:.3f} (alpha {_fmt(alphas['fisher'])}), "
        f"ntk_fisher {cost['ntk_fisher']:.3f} (alpha {_fmt(alphas['ntk_fisher'])}); D_f error "
        f"fisher {_fmt(get(r, 'fisher', 'error_forget'))}, ntk_fisher "
        f"{_fmt(get(r, 'ntk_fisher', 'error_forget'))}"
    )
    keys = [(m, k) for m in ("fisher", "ntk_fisher") for k in ("error_retain", "error_test")]
    u = paired_spread(r, keys, lambda fr, ft, nr, nt: (fr + ft) - (nr + nt))
    res = resolution(r, "error_retain")[0] + resolution(r, "error_test")[0]
    m = Margin(
        "fisher's cost minus ntk_fisher's",
        cost["fisher"] - cost["ntk_fisher"],
        max(res, MATERIAL_COST),
        u,
        "two points of error" if res <= MATERIAL_COST else "one sample each",
    )
    return _judged(ev, [m])


def c4(r: dict):
    """Claim 4: the attack's member rate in the band for NTK, above it for original and finetune."""
    key = "mia_forget_member_rate"
    ntks = [m for m in ("ntk", "ntk_fisher") if m in r["methods"]]
    if not ntks or "finetune" not in r["methods"]:
        return _missing("ntk methods or finetune")
    vals = {m: get(r, m, key) for m in (*ntks, "original", "finetune", "retrain")}
    if None in vals.values():
        return _missing("the attack's member rate")
    lo, hi = band(r, key)
    del vals["retrain"]
    ev = f"retrain band [{lo:.3f}, {hi:.3f}]; " + ", ".join(f"{m} {v:.3f}" for m, v in vals.items())
    if not distinguishable(r, key):
        return None, ev + "; original and retrain are not distinguishable by the attack"
    ms = [in_band(r, m, key, lo, hi) for m in ntks]
    ms += [above(r, m, key, hi) for m in ("original", "finetune")]
    return _judged(ev, ms)


def c5(r: dict):
    """Claim 5: NTK's re-learn time is closest to retrain's."""
    key = "relearn_epochs"
    if "ntk" not in r["methods"] or "finetune" not in r["methods"]:
        return _missing("ntk or finetune")
    v = {m: get(r, m, key) for m in ("ntk", "original", "finetune", "retrain")}
    if None in v.values():
        return _missing("re-learn time")
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

    def closer(other):
        def fn(ntk, oth, ret):
            return abs(oth - ret) - abs(ntk - ret)

        parts = [("ntk", key), (other, key), ("retrain", key)]
        value = fn(v["ntk"], v[other], v["retrain"])
        return margin(r, f"ntk closer than {other} by", value, key, paired_spread(r, parts, fn))

    return _judged(ev, [closer("original"), closer("finetune")])


def _path_curve(rows: list[dict], alphas: list[float], subset: str) -> list[float]:
    return [
        sum(p[subset] for p in rows if p["alpha"] == a) / sum(1 for p in rows if p["alpha"] == a)
        for a in alphas
    ]


def _path_margins(f: list[float], rr: list[float], alphas: list[float]) -> tuple[float, float]:
    """Claim 8's two conditions on one curve: ``(quarter of the drop - distance of alpha = 1
    from the minimum, half the drop - D_r range)``."""
    at1 = f[min(range(len(alphas)), key=lambda i: abs(alphas[i] - 1.0))]
    drop = f[0] - min(f)
    return 0.25 * drop - (at1 - min(f)), 0.5 * drop - (max(rr) - min(rr))


def c8(r: dict):
    """Claim 8: the L1 path to retrain on D_f reaches near its minimum at the scrubbed point."""
    rows = [p for p in r.get("activation_path", []) if p["method"] == "ntk"]
    if not rows:
        return _missing("ntk activation path")
    alphas = sorted({p["alpha"] for p in rows})
    f, rr = _path_curve(rows, alphas, "forget"), _path_curve(rows, alphas, "retain")
    at1 = f[min(range(len(alphas)), key=lambda i: abs(alphas[i] - 1.0))]
    ev = (
        f"D_f L1: {f[0]:.3f} at 0, {at1:.3f} at 1, min {min(f):.3f} at {alphas[f.index(min(f))]:g}"
        f"; D_r L1 range {max(rr) - min(rr):.3f}"
    )
    if (
        not distinguishable(r, "l1_to_retrain_forget")
        and f[0] <= rr[0] + TOL["l1_to_retrain_forget"]
    ):
        return None, ev + "; the original is not farther from retrain on D_f than on D_r"
    near, flat = _path_margins(f, rr, alphas)
    per = []
    for seed in sorted({p["seed"] for p in rows}):
        sub = [p for p in rows if p["seed"] == seed]
        if sorted({p["alpha"] for p in sub}) == alphas:
            per.append(_path_margins(*(_path_curve(sub, alphas, s) for s in ("forget", "retain")),
                                     alphas))  # fmt: skip
    key = "l1_to_retrain_forget"
    ms = [
        margin(r, "alpha = 1 within a quarter of the drop", near, key,
               spread([p[0] for p in per]) if per else 0.0),
        margin(r, "D_r flat within half the drop", flat, key,
               spread([p[1] for p in per]) if per else 0.0),
    ]  # fmt: skip
    holds, ev = _judged(ev, ms)
    edge = [
        str(seed)
        for seed in sorted({p["seed"] for p in rows})
        if min((p for p in rows if p["seed"] == seed), key=lambda p: p["forget"])["alpha"]
        == alphas[-1]
    ]
    if edge and f.index(min(f)) != len(alphas) - 1:
        ev += (
            f"; seed {', '.join(edge)} alone still falls at the end of the grid (the mean does not)"
        )
    if f.index(min(f)) == len(alphas) - 1:
        return None, ev + (
            f"; the D_f minimum is at the end of the alpha grid ({alphas[-1]:g}): the path may "
            "fall further, so the claim waits for a longer grid"
        )
    return holds, ev


CHECKS = (c1, c2, c3, c4, c5, claim_bounds.c6, claim_bounds.c7, c8, claim_bounds.c9)
