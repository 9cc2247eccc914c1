"""``forgetbox report --rescore``: an evaluation's scores computed again by this forgetbox from
its ``evaluation-inputs.npz``, without its models (or, for an unscored record written by
``forgetbox evaluate --no-score``, for the first time).

Only what scoring needs of ``evaluation.json`` is checked (its kind, settings and inputs entry),
not its old scores, whose fields may be those of another version: that is when a rescore is
wanted. :func:`load` does every check and reads the inputs; :func:`score` computes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..report.schema import ResultsError
from ..versions import versions
from .config import EvaluateConfig, evaluate_config_from_dict
from .inputs import InputsError, ScoreInputs, read_inputs
from .run import SCORED, UNSCORED, provenance_now, scored


@dataclass
class Loaded:
    """An evaluation folder's record, settings and score inputs, every check passed."""

    folder: Path
    record: dict
    config: EvaluateConfig
    inputs: ScoreInputs


def _record(path: Path) -> dict:
    """``evaluation.json`` with the parts scoring reads checked; :class:`ResultsError`
    naming the cause otherwise."""
    if not path.is_file():
        raise ResultsError(f"{path}: missing (--rescore needs an evaluation folder)")
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ResultsError(f"{path}: not a readable evaluation.json ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("kind") not in (SCORED, UNSCORED):
        raise ResultsError(f"{path}: not a forgetbox evaluation (kind {SCORED} or {UNSCORED})")
    config = doc.get("config")
    if not isinstance(config, dict) or not all(
        isinstance(config.get(k), dict) for k in ("experiment", "evaluate")
    ):
        raise ResultsError(f"{path}: field config lacks its experiment and evaluate tables")
    experiment = config["experiment"]
    if experiment.get("linearized"):
        for key in ("epsilon", "delta"):
            value = experiment.get(key)
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ResultsError(f"{path}: config.experiment.{key} must be a number")
    return doc


def load(folder: str | Path) -> Loaded:
    """Every check of a rescore, before any scoring: the record, its ``[evaluate]`` settings,
    the inputs file (SHA-256, arrays, shapes) and, for a linearized run, its certificate's
    releases."""
    folder = Path(folder)
    path = folder / "evaluation.json"
    record = _record(path)
    config = evaluate_config_from_dict(record["config"]["evaluate"], f"{path}: config.evaluate")
    inputs = read_inputs(folder, record.get("inputs"))
    if record["config"]["experiment"].get("linearized") and (
        inputs.control is None or inputs.sigma is None
    ):
        raise InputsError(f"{folder}: a linearized evaluation's inputs lack the control releases")
    return Loaded(folder, record, config, inputs)


def score(loaded: Loaded) -> dict:
    """The evaluation's results from :func:`load`'s inputs; the run's versions, provenance,
    compute and inputs entry kept, ``rescored`` saying when, where (the scoring machine's CPU)
    and with which source and versions. Nothing is written (the caller renders it)."""
    old = loaded.record
    results = scored(loaded.inputs, old["config"]["experiment"], loaded.config)
    for key in ("provenance", "wall_seconds", "compute", "cache", "inputs"):
        if key in old:
            results[key] = old[key]
    results["versions"] = old.get("versions", results["versions"])  # the run's software
    results["rescored"] = {**provenance_now("cpu"), "versions": versions()}
    return results


def rescore(folder: str | Path) -> dict:
    """:func:`score` of :func:`load`: every score of the evaluation in ``folder`` from its
    inputs; :class:`InputsError` or :class:`ResultsError` (both ``ValueError``) name what is
    wrong."""
    return score(load(folder))
