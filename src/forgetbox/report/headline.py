"""What a reader of a run asks first, from its ``results.json``: each method's cost against
retraining, the run's total compute, and the bounds with their noise scale and their context
(the cohort's raw information content, above which a bound certifies nothing)."""

from __future__ import annotations

import math

import numpy as np

# the readouts of the headline table: (key, column name, shown as a percentage)
HEADLINE = (
    ("error_forget", "D_f error", True),
    ("error_retain", "D_r error", True),
    ("error_test", "test error", True),
    ("mia_forget_member_rate", "attack: D_f called member", False),
    ("l1_to_retrain_forget", "L1 to retrain on D_f", False),
)

# readable names of every readout (the full table, figures)
READOUT_NAMES = {
    "error_forget": "error on D_f",
    "error_retain": "error on D_r",
    "error_test": "error on test",
    "error_val": "error on validation",
    "loss_forget": "loss on D_f (nats)",
    "loss_retain": "loss on D_r (nats)",
    "loss_test": "loss on test (nats)",
    "loss_val": "loss on validation (nats)",
    "relearn_epochs": "re-learn time (epochs)",
    "mia_forget_member_rate": "attack: D_f called member",
    "mia_auc": "attack AUC (D_f vs held-out test)",
    "l1_to_retrain_forget": "L1 to retrain, D_f",
    "l1_to_retrain_retain": "L1 to retrain, D_r",
    "l1_to_retrain_test": "L1 to retrain, test",
    "info_weights_nats": "white-box bound (nats)",
    "info_alpha": "noise scale alpha of the bounds",
    "info_activations_nats_forget": "black-box bound per D_f query (nats)",
    "info_activations_nats_retain": "black-box bound per D_r query (nats)",
    "info_activations_nats_test": "black-box bound per test query (nats)",
    "info_activations_diag_nats_forget": "black-box, diagonal approx., D_f (nats)",
    "info_activations_diag_nats_retain": "black-box, diagonal approx., D_r (nats)",
    "info_activations_diag_nats_test": "black-box, diagonal approx., test (nats)",
    "seconds": "method time (s)",
    "trapezium_scale": "NTK step scale (the trapezium's, or step_scale where fixed)",
}


def _finite(v) -> bool:
    return v is not None and not (isinstance(v, float) and math.isnan(v))


def retrain_seconds(results: dict) -> dict[int, float]:
    """``{seed: seconds}`` of each seed's retraining on D_r (``results["training"]``)."""
    out = {}
    for entry in results.get("training") or []:
        s = (entry.get("retrain") or {}).get("seconds")
        if _finite(s):
            out[entry["seed"]] = float(s)
    return out


def method_seconds(results: dict, method: str) -> dict[int, float]:
    """``{seed: seconds}`` a method took; retrain's is its fine-tuning on D_r."""
    if method == "retrain":
        return retrain_seconds(results)
    rows = results["methods"][method].get("per_seed") or []
    return {r["seed"]: float(r["seconds"]) for r in rows if _finite(r.get("seconds"))}


def speedups(results: dict, method: str) -> list[float]:
    """Per seed, the seed's retraining time over the method's (1 for retrain itself; none
    for a method that does no work, the original)."""
    if method == "original":
        return []
    own, ref = method_seconds(results, method), retrain_seconds(results)
    return [ref[s] / own[s] for s in sorted(own) if s in ref and own[s] > 0]


def _stat(results: dict, method: str, key: str) -> tuple[float | None, float | None]:
    block = results["methods"][method]
    m, s = block["mean"].get(key), block["std"].get(key)
    return (m if _finite(m) else None), (s if _finite(s) else None)


def headline_rows(results: dict) -> list[dict]:
    """One row per method: the headline readouts (mean, std), seconds and speed-up."""
    rows = []
    for method in results["methods"]:
        row: dict = {"method": method}
        for key, _, _ in HEADLINE:
            row[key] = _stat(results, method, key)
        secs = list(method_seconds(results, method).values())
        row["seconds"] = (float(np.mean(secs)), float(np.std(secs))) if secs else (None, None)
        sp = speedups(results, method)
        row["speedup"] = (float(np.mean(sp)), min(sp), max(sp)) if sp else None
        rows.append(row)
    return rows


def compute_summary(results: dict) -> dict:
    """The run's total compute, cached stages included. Runs that recorded every stage's time
    (``results["compute"]``) give it whole; older ones give what they recorded (fine-tunings
    and methods), marked ``partial``."""
    comp = results.get("compute")
    if comp:
        return {
            "total_seconds": comp["total_seconds"],
            "this_run_seconds": comp.get("this_run_seconds"),
            "partial": bool(comp.get("stages_without_recorded_time")),
            "per_stage_kind_seconds": comp.get("per_stage_kind_seconds", {}),
        }
    train = sum(
        float((e.get(w) or {}).get("seconds") or 0.0)
        for e in results.get("training") or []
        for w in ("original", "retrain")
    )
    methods = sum(
        sum(method_seconds(results, m).values()) for m in results["methods"] if m != "retrain"
    )
    return {
        "total_seconds": train + methods,
        "this_run_seconds": results.get("wall_seconds"),
        "partial": True,
        "per_stage_kind_seconds": {"fine-tunings": train, "methods": methods},
    }


def input_levels(results: dict) -> int:
    """Grey levels per input value: 17 for scikit-learn's digits (0..16), 256 for 8-bit images."""
    return 17 if results["config"].get("dataset") == "digits" else 256


def cohort_content_nats(results: dict) -> float | None:
    """The cohort's raw information content |D_f| * d * ln(levels) in nats: no bound above it
    certifies anything about D_f (it could hold D_f outright)."""
    task = results.get("task") or {}
    shape = task.get("input_shape") or (
        [1, 8, 8] if results["config"].get("dataset") == "digits" else [3, 32, 32]
    )
    n = task.get("n_forget") or results["config"].get("num_to_forget")
    if not isinstance(n, int):
        return None
    return n * math.prod(shape) * math.log(input_levels(results))


def method_alpha(results: dict, method: str) -> float | None:
    """The noise scale behind a method's bounds: its own for fisher / ntk_fisher, ntk_fisher's
    for the others (``info_alpha`` when recorded)."""
    m, _ = _stat(results, method, "info_alpha")
    if m is not None:
        return m
    cfg = results["config"]
    return cfg.get("alpha_fisher") if method == "fisher" else cfg.get("alpha_ntk_fisher")


def bound_rows(results: dict) -> list[dict]:
    """Per method: alpha, the white-box bound and the black-box bound per query from each
    subset (mean over seeds, nats), each flagged when it is vacuous (at or above the cohort's
    raw content)."""
    content = cohort_content_nats(results)
    rows = []
    for method in results["methods"]:
        if method == "retrain":
            continue
        row: dict = {"method": method, "alpha": method_alpha(results, method)}
        for key in (
            "info_weights_nats",
            "info_activations_nats_forget",
            "info_activations_nats_retain",
            "info_activations_nats_test",
        ):
            m, s = _stat(results, method, key)
            row[key] = (m, s, content is not None and m is not None and m >= content)
        rows.append(row)
    return rows
