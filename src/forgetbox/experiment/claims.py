"""The paper's claims, checked on every run with criteria stated next to each verdict.

Notation: for a readout R and method m, ``mean_m`` and ``std_m`` are over seeds.

- The *retrain band* of R is ``mean_retrain +- max(std_retrain, tol_R, res_R)``.
- ``res_R``, the readout's resolution: one sample of the set it counts (1/|D_f| for D_f error
  and the attack's member rate, 1/|D_r| and 1/|test| for those errors), one epoch of re-learn
  time, 0.01 for L1 distances (:mod:`forgetbox.experiment.evidence`).
- ``tol_R``: 0.02 for errors, 0.05 for the attack's member rate, 1 epoch for re-learn time,
  0.01 for L1 distances.
- Original and retrain are *distinguishable* on R when
  ``|mean_original - mean_retrain| > max(std_original + std_retrain, tol_R, res_R)``; a claim
  that needs the cohort to matter is *inconclusive* (``holds: null``) when they are not.
- Every condition of a claim has a *margin*, its signed distance from its boundary (positive on
  the claim's side). It is decided only when the margin is at least the readout's resolution
  and its uncertainty: the larger of the seeds' standard deviation and the half-width of a
  95 % bootstrap interval of the mean over seeds (of the per-seed difference, for conditions
  that compare methods on the same seeds); one seed has no spread and decides nothing. A claim
  holds when every condition holds, fails when one fails, and is inconclusive otherwise; the
  evidence prints every margin and what it needed.
- Claims that compare two bounds per seed (6, 7, 9) hold when the comparison holds on every
  seed, fail when its opposite holds on every seed, and are inconclusive otherwise; a bound at
  or above the cohort's raw content (|D_f| x pixels x ln 256 nats, ln 17 for digits) is
  vacuous, and a comparison involving one is inconclusive (claim 9: that noise scale is left
  out); on a run of one seed they are inconclusive (no spread).
- Claim 8 is inconclusive while the D_f path's minimum sits at the end of the alpha grid (the
  path may fall further beyond it).

Then two caveats, each stated in the evidence: a readout at its cap (re-learn time at the
epoch limit) cannot separate the methods it caps, so a claim resting on it is inconclusive;
and a fine-tuning that did not converge or diverged makes every claim that compares with that
model inconclusive (the retrained model is every claim's reference but claim 3's; the original
is the start of every method).
"""

from __future__ import annotations

from pathlib import Path

from . import claim_checks as checks
from .cross_check import cross_check, matching_evaluations

CLAIMS = {
    1: "NTK-based scrubbing (ntk, ntk_fisher) leaves the error on D_f inside the retrain band.",
    2: "Fine-tuning on D_r does not forget: its D_f error stays near the original's.",
    3: "Fisher forgetting costs more error on D_r and test than NTK+Fisher, each at its own "
    "noise scale (the paper's setting).",
    4: "The membership attack on NTK-scrubbed models is inside the retrain band, while original "
    "and fine-tune are above it.",
    5: "NTK's re-learn time is closer to retrain's than original's and fine-tune's are.",
    6: "At the same noise, the black-box bound (per query from D_f) is far below (10x) the "
    "white-box bound.",
    7: "Queries from D_f leak more information than queries from D_r or test.",
    8: "Along the scrubbing direction the L1 distance to retrain on D_f falls to near its minimum "
    "at the scrubbed point, while on D_r it stays nearly flat.",
    9: "The NTK shift reduces the noise needed: at the same noise scale NTK + Fisher leaves less "
    "information in the weights (white box) than Fisher.",
}

RULES = {
    1: "holds if the mean D_f error of ntk and of ntk_fisher lies inside the retrain band by at "
    "least one D_f sample and the seed spread; fails if either lies outside by as much; "
    "inconclusive otherwise or if original and retrain are not distinguishable on D_f error",
    2: "margin = |retrain - original| / 2 - |finetune - original| on mean D_f error; holds if it "
    "is at least one D_f sample and the seed spread of the per-seed margin, fails if it is as "
    "far below 0, inconclusive otherwise or if original and retrain are not distinguishable",
    3: "margin = fisher's mean D_r + test error - ntk_fisher's, each at its own alpha; holds if "
    "it is at least 0.02 (and one sample of D_r plus one of test) and the seed spread of the "
    "per-seed difference, fails if it is as far below 0, inconclusive otherwise",
    4: "holds if ntk's and ntk_fisher's mean member rates lie inside the retrain band and "
    "original's and finetune's above it, each by at least one D_f sample and its seed spread; "
    "fails if one is on the wrong side by as much; inconclusive otherwise or if original and "
    "retrain are not distinguishable",
    5: "margins = |original - retrain| - |ntk - retrain| and |finetune - retrain| - |ntk - "
    "retrain| on mean re-learn epochs; holds if both are at least one epoch and their seed "
    "spread, fails if one is as far below 0; inconclusive otherwise, if not distinguishable, or "
    "if ntk or retrain reached the cap",
    6: "ntk_fisher, per seed: 10 x black-box nats per D_f query <= white-box nats; holds if on "
    "every seed, fails if the opposite on every seed; inconclusive if either bound is vacuous "
    "(at or above the cohort's raw content) on some seed, or on a run of one seed",
    7: "ntk_fisher, per seed: nats per query from D_f > from D_r and > from test; holds if on "
    "every seed, fails if D_f is not above both on any seed; inconclusive if a bound is vacuous "
    "or on a run of one seed",
    8: "margins = a quarter of the D_f path's drop - (D_f L1 at alpha = 1 - its minimum), and "
    "half the drop - the D_r range (mean curves); holds if both are at least 0.01 and the seed "
    "spread of the per-seed margins, fails if one is as far below 0; inconclusive otherwise, if "
    "the D_f minimum is at the end of the alpha grid, or if D_f starts no farther from retrain "
    "than D_r",
    9: "per seed and common alpha of the Fig. 3 grid where neither white-box bound is vacuous: "
    "fisher's nats - ntk_fisher's; holds if positive on every seed at every such alpha, fails "
    "if negative on every seed at some alpha and positive at none; inconclusive otherwise or if "
    "the bounds are vacuous at every alpha or on a run of one seed",
}

# the claims that compare with the retrained model (all but 3) and with the original (all)
USES_RETRAIN = {1, 2, 4, 5, 6, 7, 8, 9}


def _claim(cid: int, holds: bool | None, evidence: str) -> dict:
    verdict = "inconclusive" if holds is None else ("holds" if holds else "fails")
    return {
        "id": cid,
        "text": CLAIMS[cid],
        "rule": RULES[cid],
        "holds": holds,
        "verdict": verdict,
        "evidence": evidence,
    }


def evaluate(results: dict) -> list[dict]:
    """Verdicts for the nine claims (see the module docstring), caveats applied."""
    out = []
    for cid, check in enumerate(checks.CHECKS, 1):
        holds, evidence = check(results)
        out.append(_claim(cid, holds, evidence))
    return _caveats(results, out)


def retrain_bands(results: dict) -> dict[str, dict]:
    """``{readout: {"low", "high"}}``: the retrain band of every readout the claims use (the
    report marks the cells inside it)."""
    out = {}
    for key in checks.TOL:
        b = checks.band(results, key) if key in results["methods"].get("retrain", {}).get(
            "mean", {}) else None  # fmt: skip
        if b is not None:
            out[key] = {"low": b[0], "high": b[1]}
    return out


def judge(results: dict, folder: Path | None = None, evaluations=None) -> dict:
    """Set ``results``' claims, warnings and retrain bands, and its cross-check against a
    committed evaluation of the same setup among ``evaluations`` (folders; default: the
    siblings of ``folder``, the run's output folder): the one with the most models per side,
    the first by folder name among equals. Returns ``results``."""
    results["claims"] = evaluate(results)
    results["warnings"] = training_warnings(results)
    results["retrain_bands"] = retrain_bands(results)
    results.pop("cross_check", None)
    if evaluations is None and folder is not None and Path(folder).resolve().parent.is_dir():
        evaluations = [p for p in Path(folder).resolve().parent.iterdir() if p.is_dir()]
    found = matching_evaluations(results, evaluations or [])
    if found:
        largest = max(found, key=lambda f: f[1]["config"]["evaluate"]["models"])
        results["cross_check"] = cross_check(results, *largest)
    return results


def _caveats(results: dict, verdicts: list[dict]) -> list[dict]:
    flagged = {which for which, _, _, serious in flagged_trainings(results) if serious}
    for c in verdicts:
        reasons = []
        if "original" in flagged:
            reasons.append("an original fine-tuning did not converge or diverged")
        if "retrain" in flagged and c["id"] in USES_RETRAIN:
            reasons.append("a retrain fine-tuning (the reference) did not converge or diverged")
        if reasons and c["holds"] is not None:
            c["verdict_before_caveat"] = c["verdict"]
            c["holds"], c["verdict"] = None, "inconclusive"
            c["evidence"] += "; downgraded: " + " and ".join(reasons) + " (see the warnings)"
    return verdicts


# a fine-tuning that ends above this training error is flagged: the paper trains to zero error,
# and readouts measured against an unconverged or diverged model (above all the retrain
# reference) say little
TRAIN_ERROR_WARNING = 0.05


def flagged_trainings(results: dict) -> list[tuple[str, int, str, bool]]:
    """``(which, seed, sentence, serious)`` for every fine-tuning that ended above
    :data:`TRAIN_ERROR_WARNING` training error (serious), or diverged and kept its zero-error
    weights (a note: the model kept is converged)."""
    out = []
    for entry in results.get("training", []):
        for which in ("original", "retrain"):
            t = entry.get(which) or {}
            if t.get("restored_from_epoch") is not None:
                out.append(
                    (
                        which,
                        entry["seed"],
                        f"seed {entry['seed']}: the {which} fine-tuning diverged after reaching "
                        f"zero training error; its weights after epoch {t['restored_from_epoch']}"
                        " (zero error) were kept",
                        False,
                    )
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
                (
                    which,
                    entry["seed"],
                    f"seed {entry['seed']}: the {which} fine-tuning ended at {err:.1%} training "
                    f"error after {t.get('epochs')} epochs, {how}; readouts compared with it are "
                    "unreliable",
                    True,
                )
            )
    return out


def training_warnings(results: dict) -> list[str]:
    """One line per flagged fine-tuning (see :func:`flagged_trainings`)."""
    return [text for _, _, text, _ in flagged_trainings(results)]
