"""The claims that compare information bounds (6, 7, 9), judged seed by seed: a comparison
holds when it holds on every seed, fails when its opposite does, and is inconclusive otherwise
(the seeds' interval is their range). A bound at or above the cohort's raw content
(``|D_f| * pixels * ln(levels)`` nats, :func:`forgetbox.report.headline.cohort_content_nats`)
is vacuous: it certifies nothing about D_f, so a comparison that involves one decides nothing.
A run of one seed has no spread, so none of the three is decided on it (as every margin of
:mod:`.evidence`)."""

from __future__ import annotations

from collections import defaultdict

from ..report.headline import cohort_content_nats


def _per_seed(results: dict, method: str, key: str) -> dict[int, float]:
    block = results["methods"].get(method) or {}
    rows = block.get("per_seed")
    if not rows:
        v = (block.get("mean") or {}).get(key)
        return {} if v is None else {0: float(v)}
    return {r["seed"]: float(r[key]) for r in rows if r.get(key) is not None}


ONE_SEED = "; one seed: no spread, so nothing is decided"


def one_seed(results: dict) -> bool:
    """Whether the run has a single seed (its ``seeds`` record)."""
    return len(results.get("seeds") or ()) == 1


def content(results: dict) -> float | None:
    """The cohort's raw content in nats, or None where the run does not say enough."""
    return cohort_content_nats(results) if "config" in results else None


def vacuous_note(results: dict, values: dict[str, list[float]]) -> str | None:
    """Which of the compared bounds (``{name: per-seed values}``) are vacuous, in words; None
    when none is (or the content is unknown)."""
    c = content(results)
    if c is None:
        return None
    hit = [name for name, vs in values.items() if any(v >= c for v in vs)]
    if not hit:
        return None
    return (
        f"vacuous: {' and '.join(hit)} at or above the cohort's raw content ({c:.3g} nats) on "
        "some seed, so comparing the bounds says nothing about D_f"
    )


def _per_seed_verdict(passes: list[bool], opposite: list[bool]) -> bool | None:
    if passes and all(passes):
        return True
    if opposite and all(opposite):
        return False
    return None


def c6(r: dict):
    """Claim 6: the black-box bound per D_f query at least 10x below the white-box bound."""
    if "ntk_fisher" not in r["methods"]:
        return None, "not evaluated: ntk_fisher missing from this run"
    w = _per_seed(r, "ntk_fisher", "info_weights_nats")
    b = _per_seed(r, "ntk_fisher", "info_activations_nats_forget")
    seeds = sorted(set(w) & set(b))
    ev = "ntk_fisher per seed, white-box vs black-box per D_f query: " + ", ".join(
        f"{w[s]:.3g} vs {b[s]:.3g}" for s in seeds
    )
    if not seeds:
        return None, ev
    ratios = [w[s] / b[s] if b[s] > 0 else float("inf") for s in seeds]
    ev += "; margin: white / black per seed " + ", ".join(f"{x:.3g}x" for x in ratios)
    ev += " (needs 10x on every seed)"
    note = vacuous_note(
        r,
        {
            "the white-box bound": [w[s] for s in seeds],
            "the black-box bound": [b[s] for s in seeds],
        },
    )
    if note:
        return None, ev + "; " + note
    if one_seed(r):
        return None, ev + ONE_SEED
    holds = _per_seed_verdict([10 * b[s] <= w[s] for s in seeds], [10 * b[s] > w[s] for s in seeds])
    return holds, ev


def c7(r: dict):
    """Claim 7: D_f queries leak more than D_r and test queries."""
    if "ntk_fisher" not in r["methods"]:
        return None, "not evaluated: ntk_fisher missing from this run"
    v = {
        s: _per_seed(r, "ntk_fisher", f"info_activations_nats_{s}")
        for s in ("forget", "retain", "test")
    }
    seeds = sorted(set(v["forget"]) & set(v["retain"]) & set(v["test"]))
    ev = "ntk_fisher nats per query (D_f / D_r / test) per seed: " + "; ".join(
        f"{v['forget'][s]:.4g} / {v['retain'][s]:.4g} / {v['test'][s]:.4g}" for s in seeds
    )
    if not seeds:
        return None, ev
    ratios = [v["forget"][s] / max(v["retain"][s], v["test"][s], 1e-300) for s in seeds]
    ev += "; margin: D_f / the larger of D_r and test per seed " + ", ".join(
        f"{x:.3g}x" for x in ratios
    )
    ev += " (needs above 1x on every seed)"
    note = vacuous_note(r, {f"the bound per {s} query": list(v[s].values()) for s in v})
    if note:
        return None, ev + "; " + note
    if one_seed(r):
        return None, ev + ONE_SEED
    above = [v["forget"][s] > max(v["retain"][s], v["test"][s]) for s in seeds]
    return _per_seed_verdict(above, [not a for a in above]), ev


def common_alpha_information(r: dict) -> dict[float, dict[str, dict[int, float]]]:
    """``{alpha: {method: {seed: white-box nats}}}`` from the trade-off grid (Fig. 3)."""
    out: dict = defaultdict(lambda: defaultdict(dict))
    for row in r.get("tradeoff") or []:
        out[row["alpha"]][row["method"]][row["seed"]] = row["info_weights_nats"]
    return out


def c9(r: dict):
    """Claim 9: NTK + Fisher leaves less white-box information than Fisher at the same noise;
    judged only at the noise scales where neither bound is vacuous on any seed."""
    grid = common_alpha_information(r)
    alphas = [a for a in sorted(grid) if {"fisher", "ntk_fisher"} <= set(grid[a])]
    if not alphas:
        return None, "not evaluated: the trade-off grid of fisher and ntk_fisher missing"
    c = content(r)
    lower, higher, parts, vacuous = [], [], [], []
    for a in alphas:
        f, n = grid[a]["fisher"], grid[a]["ntk_fisher"]
        seeds = sorted(set(f) & set(n))
        ratio = sum(n[s] for s in seeds) / max(sum(f[s] for s in seeds), 1e-300)
        parts.append(f"alpha {a:.0e}: ntk_fisher / fisher = {ratio:.2f}")
        if c is not None and any(max(f[s], n[s]) >= c for s in seeds):
            vacuous.append(a)
            continue
        diffs = [f[s] - n[s] for s in seeds]
        lower.append(bool(diffs) and all(d > 0 for d in diffs))
        higher.append((a, bool(diffs) and all(d < 0 for d in diffs)))
    ev = "white-box nats at common alpha (mean over seeds): " + "; ".join(parts)
    if vacuous:
        ev += (
            f"; vacuous (a bound at or above the cohort's raw content, {c:.3g} nats) at "
            + ", ".join(f"{a:.0e}" for a in vacuous)
            + ", not compared"
        )
    if not lower:
        return None, ev + "; no noise scale where both bounds certify anything"
    if one_seed(r):
        return None, ev + ONE_SEED
    if all(lower):
        return True, ev
    if any(h for _, h in higher) and not any(lower):
        return False, ev + "; NTK + Fisher is higher on every seed at " + ", ".join(
            f"{a:.0e}" for a, h in higher if h
        )
    return None, ev
