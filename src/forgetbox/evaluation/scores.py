"""Every score of an evaluation, from the ensembles' logits and the shadow models'
confidences: retrain bands of the readouts, population attacks, the challenge score, KLoM and
U-LiRA per method, and each method's difference from the retrain row with a bootstrap
interval over examples and, for the challenge points and KLoM, a two-level bootstrap over
models and examples (:mod:`.two_level`).

The example bootstrap holds the models fixed; where each model has traits that every example
shares (its seed's offsets), two finite ensembles drawn from one distribution differ on a fixed
set of examples by more than it allows. The two-level bootstrap (hierarchical: resample the
ensemble indices k, then the examples) approximates that variation too; model k of a method and
reference k come from one seed and are drawn together, the retrain row's own seeds apart. A row is
*distinguishable* on a score when its two-level interval excludes 0 (where none was drawn: its
interval over examples)."""

from __future__ import annotations

import math

import numpy as np
import torch

from .. import audit
from ..audit import challenge
from ..audit.klom import DIRECTION as KLOM_DIRECTION
from ..audit.ulira import ulira
from ..experiment.tasks import Task
from .ensembles import Member, is_diverged, subset

BOOTSTRAP = 2000
MIN_EXAMPLES = 5  # fewer examples give no interval
# the challenge score needs 3 models per side; KLoM is not binned from fewer either (a method
# whose models diverged down to fewer: every example not computable, no challenge point)
MIN_SCORED_MODELS = 3
KLOM_SUBSETS = ("forget", "retain", "val")


def _readout_keys(members: dict[str, list[Member]]) -> list[str]:
    return sorted({k for ms in members.values() for m in ms for k in m.readouts})


def scored_members(unlearned: list[Member], references: list[Member]):
    """``(unlearned, references)`` the per-example scores use: the models whose method did not
    diverge and the references of the same indices (model k pairs reference k); both lists
    unchanged where none diverged."""
    keep = [m for m in unlearned if not is_diverged(m)]
    if len(keep) == len(unlearned):
        return unlearned, references
    indices = {m.index for m in keep}
    return keep, [r for r in references if r.index in indices]


def diverged_indices(members: list[Member]) -> list[int]:
    """The ensemble indices k whose model diverged."""
    return [m.index for m in members if is_diverged(m)]


def bands(members: dict[str, list[Member]]) -> dict[str, audit.Band]:
    """The retrain band of every readout, from the ``retrain`` row (models retrained on D_r
    independently of the references)."""
    rows = members["retrain"]
    return {k: audit.band_of([m.readouts[k] for m in rows]) for k in _readout_keys(members)}


def _finite(values) -> np.ndarray:
    v = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    return v[np.isfinite(v)]


def readout_summary(members: dict[str, list[Member]], band: dict[str, audit.Band]) -> dict:
    """Per method and readout: the K values, the median of those that could be computed
    (None if none could), where it falls, how many models fall outside the band and how many
    values could not be computed (NaN: never inside the band)."""
    out = {}
    for method, ms in members.items():
        out[method] = {}
        for key, b in band.items():
            values = [m.readouts[key] for m in ms]
            finite = _finite(values)
            med = float(np.median(finite)) if len(finite) else None
            side = audit.side_of(med, b)
            out[method][key] = {
                "values": values,
                "median": med,
                "side": side,
                "meaning": audit.meaning_of(key, side),
                "models_outside": sum(audit.side_of(v, b) in ("above", "below") for v in finite),
                "not_computable": len(values) - len(finite),
            }
    return out


def _roc_dict(r: audit.Roc, points: int = 200) -> dict:
    keep = np.unique(np.linspace(0, len(r.fpr) - 1, min(points, len(r.fpr))).astype(int))
    return {
        "auc": r.auc,
        "tpr_at_1pct_fpr": r.tpr_at_1pct,
        "tpr_at_01pct_fpr": r.tpr_at_01pct,
        "positives": r.positives,
        "negatives": r.negatives,
        "fpr": r.fpr[keep].tolist(),
        "tpr": r.tpr[keep].tolist(),
    }


def population(task: Task, members: list[Member]) -> dict:
    """Loss and confidence threshold attacks, D_f (positives) against test (negatives), the
    examples of all K models pooled, once against every test example and once against those of
    D_f's classes (``*_same_class``), each AUC with a 95 % interval from resampling examples;
    and the entropy SVC's member rate (median over models)."""
    members = [m for m in members if not is_diverged(m)]
    if not members:  # every model diverged: nothing to attack
        curves = ("loss", "loss_same_class", "confidence", "confidence_same_class")
        return {**dict.fromkeys(curves), "entropy_svc_member_rate": None}
    out = {}
    zf = torch.stack([subset(task, m.logits, "forget")[0] for m in members])
    zt = torch.stack([subset(task, m.logits, "test")[0] for m in members])
    yf, yt = subset(task, members[0].logits, "forget")[1], task.split.y_test
    zs, ys = audit.same_class_negatives(zt, yt, yf)
    for stat in ("loss", "confidence"):
        for name, neg, yn in ((stat, zt, yt), (f"{stat}_same_class", zs, ys)):
            out[name] = _roc_dict(audit.threshold_attack(zf, yf, neg, yn, stat).roc)
            out[name]["auc_ci95"] = list(audit.auc_interval(zf, yf, neg, yn, stat))
    rates = [m.readouts["mia_forget_member_rate"] for m in members]
    out["entropy_svc_member_rate"] = float(np.median(rates))
    return out


def _accuracy(task: Task, members: list[Member], name: str) -> float:
    return float(np.mean([1 - m.readouts[f"error_{name}"] for m in members]))


def _confidences(task: Task, members: list[Member]) -> torch.Tensor:
    """``(K, |D_f|)`` the challenge's confidence of each model on each forget example."""
    yf = subset(task, members[0].logits, "forget")[1]
    return torch.stack(
        [audit.challenge_confidence(subset(task, m.logits, "forget")[0], yf) for m in members]
    )


def _margins(task: Task, members: list[Member], name: str) -> torch.Tensor:
    """``(K, n)`` the margin of each model on each example of subset ``name``."""
    y = subset(task, members[0].logits, name)[1]
    return torch.stack([audit.margin(subset(task, m.logits, name)[0], y) for m in members])


def challenge_part(task: Task, unlearned: list[Member], references: list[Member]) -> dict:
    """The NeurIPS 2023 score of an unlearned ensemble against the references; an epsilon
    that cannot be computed (NaN, JSON null) earns no points and is counted. Models whose
    method diverged are left out with their references (:func:`scored_members`); with fewer
    than 3 left, no point is earned."""
    unlearned, references = scored_members(unlearned, references)
    if len(unlearned) < MIN_SCORED_MODELS:  # the score needs 3 per side: no point is earned
        n = len(task.forget_idx)
        return {
            "epsilons": [None] * n,
            "points": [0.0] * n,
            "not_computable": n,
            "forget_quality": 0.0,
            "retain_accuracy_ratio": None,
            "test_accuracy_ratio": None,
            "score": 0.0,
            "models_per_side": len(unlearned),
        }
    cu, cr = _confidences(task, unlearned), _confidences(task, references)
    ra = (_accuracy(task, unlearned, "retain"), _ref_accuracy(task, references, "retain"))
    ta = (_accuracy(task, unlearned, "test"), _ref_accuracy(task, references, "test"))
    s = audit.challenge_score(cu, cr, retain_accuracy=ra, test_accuracy=ta)
    return {
        "epsilons": s.epsilons,
        "points": challenge.example_points(s.epsilons, s.models),
        "not_computable": int(np.isnan(s.epsilons).sum()),
        "forget_quality": s.forget_quality,
        "retain_accuracy_ratio": s.retain_ratio,
        "test_accuracy_ratio": s.test_ratio,
        "score": s.score,
        "models_per_side": s.models,
    }


def _ref_accuracy(task: Task, references: list[Member], name: str) -> float:
    accs = []
    for m in references:
        z, y = subset(task, m.logits, name)
        accs.append((z.argmax(-1) == y).double().mean().item())
    return float(np.mean(accs))


def _size(task: Task, name: str) -> int:
    """The number of examples of subset ``name`` (forget, retain or val)."""
    if name == "val":
        return len(task.split.y_val)
    n_forget = len(task.forget_idx)
    return n_forget if name == "forget" else len(task.split.y_train) - n_forget


def klom_part(task: Task, unlearned: list[Member], references: list[Member]) -> dict:
    """KLoM per example of D_f, D_r and the validation set, and its summary per subset over
    the examples where it could be computed, with the count of those where it could not (NaN:
    every unlearned margin at the top of the joint range, or fewer than
    :data:`MIN_SCORED_MODELS` models left). Models whose method diverged are left out with their
    references (:func:`scored_members`)."""
    out = {"direction": KLOM_DIRECTION}
    unlearned, references = scored_members(unlearned, references)
    for name in KLOM_SUBSETS:
        if len(unlearned) < MIN_SCORED_MODELS:  # too few models left to bin: not computable
            values = np.full(_size(task, name), np.nan)
        else:
            mu, mr = _margins(task, unlearned, name), _margins(task, references, name)
            values = audit.klom(mu, mr).numpy()
        finite = values[np.isfinite(values)]
        out[name] = {
            "values": values.tolist(),
            "mean": float(finite.mean()) if len(finite) else None,
            "median": float(np.median(finite)) if len(finite) else None,
            "q90": float(np.quantile(finite, 0.9)) if len(finite) else None,
            "not_computable": int(len(values) - len(finite)),
        }
    return out


def ulira_part(
    conf: torch.Tensor, status: torch.Tensor, folds: torch.Tensor, shadows: torch.Tensor
) -> dict:
    """U-LiRA with one unlearned model per shadow model, example and side; the rows of
    unlearned models whose method diverged (NaN) are left out."""
    ok = torch.isfinite(conf).all(1)
    dropped = int((~ok).sum())
    if dropped:
        conf, status, folds, shadows = conf[ok], status[ok], folds[ok], shadows[ok]
    res = ulira(conf, status, folds, shadows)
    return {
        **({"diverged_rows": dropped} if dropped else {}),
        "balanced_accuracy": res.balanced_accuracy,
        "per_example": {str(k): v for k, v in res.per_example.items()},
        "pairs_in": res.pairs_in,
        "pairs_out": res.pairs_out,
        "examples": res.examples,
        **_roc_dict(res.roc),
    }


def _paired(a: list[float], b: list[float]) -> tuple[np.ndarray, np.ndarray, int]:
    """The values of ``a`` and ``b`` (paired by example) where both could be computed (NaN or
    None: not), and how many pairs were dropped."""
    a = np.asarray([np.nan if x is None else x for x in a], float)
    b = np.asarray([np.nan if x is None else x for x in b], float)
    keep = np.isfinite(a) & np.isfinite(b)
    return a[keep], b[keep], int((~keep).sum())


def _mean_difference(a, b) -> float:
    """Mean of ``a`` minus mean of ``b`` over the examples where both could be computed (NaN
    if none could)."""
    a, b, _ = _paired(a, b)
    return float(a.mean() - b.mean()) if len(a) else math.nan


def bootstrap_difference(a: list[float], b: list[float], seed: int = 0) -> dict:
    """Mean of ``a`` minus mean of ``b`` (paired by example) with a 95 % percentile interval
    from :data:`BOOTSTRAP` resamples of the examples where both could be computed (NaN or
    None: not; those are counted in ``not_computable``)."""
    a, b, dropped = _paired(a, b)
    if len(a) < MIN_EXAMPLES:
        diff = float(a.mean() - b.mean()) if len(a) else None
        return {"difference": diff, "ci95": None, "examples": len(a), "not_computable": dropped}
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(a), (BOOTSTRAP, len(a)))
    diffs = a[idx].mean(1) - b[idx].mean(1)
    lo, hi = np.quantile(diffs, (0.025, 0.975))
    return {
        "difference": float(a.mean() - b.mean()),
        "ci95": [float(lo), float(hi)],
        "examples": len(a),
        "not_computable": dropped,
    }


def against_retrain(methods: dict, two_level: dict | None = None, base: str = "retrain") -> dict:
    """Per method, its per-example U-LiRA accuracy, challenge points and D_f KLoM against the
    retrain row's (``base``): the difference with a bootstrap interval over examples and, where
    ``two_level`` (:func:`two_level_bootstrap`) has the score, the interval over models and
    examples. ``distinguishable``: the two-level interval excludes 0 (the one over examples
    where no two-level interval was drawn; None where the interval cannot be computed)."""
    base_name, base = base, methods.get(base)
    two_level = two_level or {}
    out = {}
    for name, block in methods.items():
        if name == base_name or base is None:
            continue
        rows = {}
        if "ulira" in block and "ulira" in base:
            common = sorted(set(block["ulira"]["per_example"]) & set(base["ulira"]["per_example"]))
            rows["ulira_balanced_accuracy"] = bootstrap_difference(
                [block["ulira"]["per_example"][k] for k in common],
                [base["ulira"]["per_example"][k] for k in common],
            )
        rows["challenge_points"] = bootstrap_difference(
            block["challenge"]["points"], base["challenge"]["points"]
        )
        rows["klom_forget"] = bootstrap_difference(
            block["klom"]["forget"]["values"], base["klom"]["forget"]["values"]
        )
        for key, r in rows.items():
            both = two_level.get(name, {}).get(key)
            ci = r["ci95"]
            if both is not None:
                r["models_and_examples"] = both
                ci = both["ci95"] if ci is not None else None
            r["distinguishable"] = None if ci is None else bool(ci[0] > 0 or ci[1] < 0)
        out[name] = rows
    return out
