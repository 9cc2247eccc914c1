"""The certificate against the ensembles (linearized runs): releases of the reference mechanism
(exact retrains with the certified noise), and whether per-example attacks on the certified
releases stay inside the stated (ε, δ).

Two attacks score each of the K releases of a method and the K releases of the reference
mechanism: the mean logit margin over D_f (one number per model) and each forgotten example's
margin; :func:`forgetbox.audit.within_certificate` picks the most suspicious threshold region
on half of the draws and tests ``TPR <= e^ε FPR + δ`` (both ways) on the other half with
Clopper-Pearson bounds, and says when the ensemble is too small to refute even a perfect
attack ("no power"). A pair of mechanisms each (ε, δ)-close for every ensemble index k is so
for their mixture over k, so pooling the K indices is sound.
"""

from __future__ import annotations

import torch

from .. import audit
from ..experiment.tasks import Task
from .ensembles import Member, logits_of, subset
from .releases import released


def certificate_part(
    task: Task, members: list[Member], references: list[Member], epsilon: float, delta: float
) -> dict:
    """The stated (ε, δ) against two attacks on ``members`` (K releases) and ``references``
    (K releases of the reference mechanism): the mean margin over D_f, one score per model; and
    each forgotten example's margin, Bonferroni-corrected over the examples. Each is
    ``inside``, ``outside`` or ``no power`` (:func:`forgetbox.audit.within_certificate`)."""
    if [m.index for m in members] != [m.index for m in references]:
        raise ValueError("the releases and the references must pair the same ensemble indices")
    eps = epsilon
    n_forget = len(task.forget_idx)

    def margins(ms: list[Member]) -> torch.Tensor:
        return torch.stack([audit.margin(*subset(task, m.logits, "forget")) for m in ms])

    mine, theirs = margins(members), margins(references)
    pooled = audit.within_certificate(
        mine.mean(1), theirs.mean(1), epsilon=eps, delta=delta, confidence=0.975
    )
    confidence = 1 - 0.025 / max(n_forget, 1)  # the two attacks and the examples, Bonferroni
    examples = [
        audit.within_certificate(
            mine[:, j], theirs[:, j], epsilon=eps, delta=delta, confidence=confidence
        )
        for j in range(n_forget)
    ]
    refuted = sum(c["refuted"] for c in examples)
    per_example = "outside" if refuted else ("inside" if examples[0]["powered"] else "no power")
    verdicts = {pooled["verdict"], per_example}
    overall = (
        "outside" if "outside" in verdicts else ("inside" if "inside" in verdicts else "no power")
    )
    return {
        "epsilon": eps,
        "delta": delta,
        "models": len(members),
        "verdict": overall,
        "mean_margin_attack": pooled,
        "per_example": {
            "verdict": per_example,
            "examples": n_forget,
            "refuted": refuted,
            "powered": examples[0]["powered"],
            "worst": max(examples, key=lambda c: c["margin"]),
        },
    }


def noisy_original_members(task: Task, members: list[Member], originals: list, sigma: float):
    """The negative control: each original (w(D), nothing forgotten) released with the same
    noise; the check must fail on it where the ensemble has the power to tell."""
    out = []
    for m, model in zip(members, originals, strict=True):
        noisy = released(model, sigma, "original", m.index)
        out.append(Member("original+noise", m.index, m.seed, logits_of(noisy, task)))
    return out
