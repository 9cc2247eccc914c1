"""The certificate against the ensembles (linearized runs): releases of the reference mechanism
(exact retrains with the certified noise), and whether per-example attacks on the certified
releases stay inside the stated (ε, δ).

For each forgotten example, the attack's scores are its margins under the K releases of a method
and under the K releases of the reference mechanism; :func:`forgetbox.audit.within_certificate`
checks every threshold region of them against ``TPR <= e^ε FPR + δ`` (both ways), with
Clopper-Pearson intervals Bonferroni-corrected over the regions and over the examples. A pair
of mechanisms each (ε, δ)-close for every k is so for their mixture over k, so pooling the K
indices is sound.
"""

from __future__ import annotations

import torch

from .. import audit, methods
from ..experiment.stages import Stages
from ..experiment.tasks import Task
from ..hashing import config_hash
from .ensembles import Member, logits_of, subset


def mechanism_sigma(stages: Stages, task: Task, dtype: torch.dtype) -> float:
    """The certified method's noise scale for this run (data-independent)."""
    fcfg = stages.forget_config(task)
    return fcfg.certify.mechanism(dtype, fcfg.linearization.weight_decay)["sigma"]


def noise_seed(*parts) -> int:
    """A noise seed from named parts (distinct for every release)."""
    return int(config_hash(["release-noise", *parts])[:12], 16)


def released(model, sigma: float, *parts) -> torch.nn.Module:
    """The reference mechanism's release: ``model`` (an exact retrain) plus the noise."""
    return methods.noisy_release(model, sigma, noise_seed(*parts))


def certificate_part(task: Task, members: list[Member], references: list[Member], stages) -> dict:
    """Per forgotten example, ``within_certificate`` of the margins of ``members`` against
    those of ``references`` (both K releases); holds when no example violates."""
    eps, delta = stages.cfg.epsilon, stages.cfg.delta
    n_forget = len(task.forget_idx)
    confidence = 1 - 0.05 / max(n_forget, 1)  # Bonferroni over the examples

    def margins(ms: list[Member]) -> torch.Tensor:
        return torch.stack([audit.margin(*subset(task, m.logits, "forget")) for m in ms])

    mine, theirs = margins(members), margins(references)
    checks = [
        audit.within_certificate(
            mine[:, j], theirs[:, j], epsilon=eps, delta=delta, confidence=confidence
        )
        for j in range(n_forget)
    ]
    worst = max(checks, key=lambda c: c["worst"]["margin"])
    return {
        "epsilon": eps,
        "delta": delta,
        "examples": n_forget,
        "models": len(members),
        "violations": sum(not c["holds"] for c in checks),
        "holds": all(c["holds"] for c in checks),
        "worst": worst["worst"],
        "confidence_per_example": confidence,
    }


def noisy_original_members(task: Task, members: list[Member], originals: list, sigma: float):
    """The negative control: each original (w(D), nothing forgotten) released with the same
    noise; the check must fail on it where the ensemble has the power to tell."""
    out = []
    for m, model in zip(members, originals, strict=True):
        noisy = released(model, sigma, "original", m.index)
        out.append(Member("original+noise", m.index, m.seed, logits_of(noisy, task)))
    return out
