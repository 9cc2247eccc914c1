"""``forgetbox evaluate``: judge every method against ensembles of retrained models, with the
per-example attacks and scores of the field (U-LiRA, the NeurIPS 2023 challenge score, KLoM),
population attacks, and retrain bands.

:func:`evaluate` returns the results written to ``evaluation.json`` (schema in
``docs/evaluate.md``) and writes a report beside it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from .. import audit
from ..atomic import atomic_write_json, atomic_write_text, staged_files
from ..experiment.config import ExperimentConfig
from ..experiment.run import prepare_run
from ..methods import BASELINE_METHODS, LINEARIZED_METHODS, PAPER_METHODS
from ..report.evaluation_figures import CAPTIONS
from ..report.evaluation_page import judge_readouts, write_report
from ..versions import hardware, source_commit, versions
from . import certified, releases, scores, two_level
from .config import DEFAULT_METHODS, PAIRED_RETRAIN, EvaluateConfig
from .ensembles import build_ensembles
from .inputs import ScoreInputs, write_inputs
from .shadows import shadow_confidences

SCORED = "forgetbox-evaluation/1"
UNSCORED = "forgetbox-evaluation-unscored/1"
"""``evaluation.json``'s kind when :func:`evaluate` ran with ``score=False``."""

PROTOCOL = (
    "One split and cohort (the experiment's split seed). K originals are trained on D and K "
    "reference models on D_r, each with its own seed (data order and head initialisation) from "
    "the same pre-trained backbone; every method is applied to every original, so a "
    "deterministic method such as ntk gets its spread from the randomness of training (the "
    "paper's Lemma 2), not from repeated runs on one original as in the challenge. The retrain "
    "row is K further models retrained on D_r: a perfect method, up to sampling error. The "
    "challenge score and KLoM compare each method's K models with the K references; the "
    "retrain bands are the 5-95 % quantiles of the retrain row. U-LiRA uses its own shadow "
    "models (random halves of D, several cohorts of the forgotten class unlearned from each)."
)


def evaluated_methods(experiment: ExperimentConfig, config: EvaluateConfig) -> EvaluateConfig:
    """``config`` with its methods checked against the run (standard fine-tuning: the paper's
    and the baselines; linearized: :data:`LINEARIZED_METHODS`), the default filled in (the
    paper's, or a linearized run's) and ``retrain`` added (and, linearized,
    :data:`PAIRED_RETRAIN`)."""
    if config.methods is None:
        chosen = LINEARIZED_METHODS if experiment.linearized else DEFAULT_METHODS
        config = EvaluateConfig(**{**config.__dict__, "methods": chosen})
    allowed = (
        (*LINEARIZED_METHODS, PAIRED_RETRAIN)
        if experiment.linearized
        else PAPER_METHODS + BASELINE_METHODS
    )
    other = [m for m in config.methods if m not in allowed]
    if other:
        setting = "linearized = true" if experiment.linearized else "standard fine-tuning"
        raise ValueError(f"evaluate: methods {other} do not apply with {setting}")
    if experiment.linearized and config.models < audit.MIN_CERTIFICATE_DRAWS:
        raise ValueError(
            f"evaluate: the certificate's check needs models >= {audit.MIN_CERTIFICATE_DRAWS} "
            f"with linearized = true; got {config.models}"
        )
    rows = ("retrain", PAIRED_RETRAIN) if experiment.linearized else ("retrain",)
    missing = tuple(m for m in rows if m not in config.methods)
    if missing:
        config = EvaluateConfig(**{**config.__dict__, "methods": (*config.methods, *missing)})
    return config


def evaluate(
    experiment: ExperimentConfig | None = None,
    config: EvaluateConfig | None = None,
    *,
    log: Callable[[str], None] = print,
    score: bool = True,
) -> dict:
    """Run (or resume from the stage cache) the evaluation; write ``evaluation-inputs.npz``
    (what the scores read, for :func:`~forgetbox.evaluation.rescore.rescore`),
    ``evaluation.html`` and ``evaluation.json`` into ``experiment.out``. ``score=False``
    stops before the scores: ``evaluation.json`` is then an unscored record (kind
    :data:`UNSCORED`: settings, provenance, compute, inputs) that
    :func:`~forgetbox.evaluation.rescore.rescore` scores later, elsewhere (a lent GPU trains,
    a CPU scores)."""
    experiment = experiment or ExperimentConfig(out="runs/evaluate")
    config = evaluated_methods(experiment, config or EvaluateConfig())
    cfg = ExperimentConfig(**{**experiment.__dict__, "seeds": (config.split_seed,)})
    stages, tasks = prepare_run(cfg, log)
    task = tasks[config.split_seed]
    out = Path(stages.cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    members, references, originals = build_ensembles(stages, task, config, log)
    shadows = shadow_confidences(stages, task, config, log) if config.shadow_models else None
    sigma = control = None
    if stages.cfg.linearized:
        sigma = releases.mechanism_sigma(stages, task, next(originals[0].parameters()).dtype)
        control = certified.noisy_original_members(task, members["original"], originals, sigma)
    inputs = ScoreInputs(task, members, references, control, shadows, sigma)
    experiment_dict = stages.cfg.as_dict()
    if score:
        results = scored(inputs, experiment_dict, config)
    else:
        results = {
            "kind": UNSCORED,
            "config": {"experiment": experiment_dict, "evaluate": config.as_dict()},
            "versions": versions(),
        }
    results["provenance"] = provenance_now(stages.cfg.device)
    results["wall_seconds"] = time.perf_counter() - t0
    results["compute"] = stages.cache.compute()
    results["cache"] = {"hits": stages.cache.hits, "misses": stages.cache.misses}
    with staged_files(out, last="evaluation.json") as stage:  # all of it, or nothing
        results["inputs"] = write_inputs(stage, inputs)
        if score:
            atomic_write_text(stage / "evaluation.html", write_report(results, stage))
        atomic_write_json(stage / "evaluation.json", results)
    if not score:  # an earlier scored page here would describe other scores
        figures = [f"{name}.{ext}" for name in CAPTIONS for ext in ("png", "svg")]
        for stale in ("evaluation.html", *figures):
            (out / stale).unlink(missing_ok=True)
    return results


def provenance_now(device: str) -> dict:
    """When, from which source and on what hardware (``device``) a record is made now."""
    return {
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": source_commit(),
        "hardware": hardware(device),
    }


def scored(inputs: ScoreInputs, experiment: dict, config: EvaluateConfig) -> dict:
    """The results of an evaluation (``evaluation.json`` less its provenance and compute)
    from its score inputs; ``experiment`` is the run's settings as plain data."""
    results = _results(inputs, experiment, config)
    judge_readouts(results)  # a side of the band read only where the median clears it
    if experiment.get("linearized"):
        results["certificate"] = _certificate(inputs, experiment)
    return results


def _certificate(inputs: ScoreInputs, experiment: dict) -> dict:
    """Whether each method's per-example attack stays inside the certified (ε, δ) against the
    reference mechanism, and the negative control (the originals released with the noise)."""
    eps, delta = experiment["epsilon"], experiment["delta"]
    out = {"sigma": inputs.sigma, "methods": {}}
    for method in ("certified", "retrain", PAIRED_RETRAIN):
        if method in inputs.members:
            # a diverged release (NaN) is left out with the reference of its index
            ms, refs = scores.scored_members(inputs.members[method], inputs.references)
            out["methods"][method] = certified.certificate_part(inputs.task, ms, refs, eps, delta)
    out["control_original_with_noise"] = certified.certificate_part(
        inputs.task, inputs.control, inputs.references, eps, delta
    )
    return out


def _results(inputs: ScoreInputs, experiment: dict, config: EvaluateConfig) -> dict:
    task, members, references = inputs.task, inputs.members, inputs.references
    shadows = inputs.shadows
    band = scores.bands(members)
    summary = scores.readout_summary(members, band)
    by_method = {}
    for method, ms in members.items():
        block = {
            "readouts": summary[method],
            "population": scores.population(task, ms),
            "challenge": scores.challenge_part(task, ms, references),
            "klom": scores.klom_part(task, ms, references),
            "seconds": [m.seconds for m in ms],
        }
        if scores.diverged_indices(ms):
            block["diverged"] = scores.diverged_indices(ms)
        if shadows is not None and method in shadows.conf:
            block["ulira"] = scores.ulira_part(
                shadows.conf[method], shadows.status, shadows.folds, shadows.shadows
            )
            block["ulira"]["seconds"] = shadows.seconds[method]
        by_method[method] = block
    return {
        "kind": SCORED,
        "protocol": PROTOCOL,
        "config": {"experiment": experiment, "evaluate": config.as_dict()},
        "versions": versions(),
        "task": {
            "n_train": len(task.split.y_train),
            "n_forget": len(task.forget_idx),
            "n_test": len(task.split.y_test),
            "n_val": len(task.split.y_val),
            "forget_indices": task.forget_idx.tolist(),
        },
        "references": {
            "seeds": [m.seed for m in references],
            "seconds": [m.seconds for m in references],
        },
        "bands": {k: b.__dict__ for k, b in band.items()},
        "methods": by_method,
        "against_retrain": scores.against_retrain(
            by_method,
            two_level.two_level_bootstrap(task, members, references, config.model_bootstrap),
        ),
        "against_paired_retrain": None
        if PAIRED_RETRAIN not in members
        else scores.against_retrain(
            {m: b for m, b in by_method.items() if m != "retrain"},
            two_level.two_level_bootstrap(
                task, members, references, config.model_bootstrap, base=PAIRED_RETRAIN
            ),
            base=PAIRED_RETRAIN,
        ),
        "ulira_plan": None
        if shadows is None
        else {
            "shadow_models": config.shadow_models,
            "forget_sets": config.forget_sets,
            "unlearned_models": int(shadows.status.shape[0]),
            "folds": config.folds,
        },
    }
