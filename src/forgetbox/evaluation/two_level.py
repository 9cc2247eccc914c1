"""The two-level bootstrap of the per-example scores against the retrain row: the ensemble
indices resampled, then the examples (:func:`two_level_bootstrap`)."""

from __future__ import annotations

import zlib

import numpy as np
import torch

from .. import audit
from ..audit import challenge
from ..experiment.tasks import Task
from ..progress import progress
from .ensembles import Member
from .scores import MIN_SCORED_MODELS, _confidences, _margins, _mean_difference, scored_members

TWO_LEVEL = ("challenge_points", "klom_forget")


def example_scores(
    conf: torch.Tensor, marg: torch.Tensor, ref_conf: torch.Tensor, ref_marg: torch.Tensor
) -> dict[str, np.ndarray]:
    """Per forget example, the challenge points and KLoM of one ensemble (confidences and
    margins ``(K, |D_f|)``) against the references' (``(K_ref, |D_f|)``), as
    :func:`challenge_part` and :func:`klom_part` compute them."""
    eps = challenge.example_epsilons(conf, ref_conf).tolist()
    return {
        "challenge_points": np.array(challenge.example_points(eps, conf.shape[0])),
        "klom_forget": audit.klom(marg, ref_marg).numpy(),
    }


Stack = tuple[torch.Tensor, torch.Tensor]  # an ensemble's (confidences, margins) on D_f


def _taken(stack: Stack, idx: np.ndarray) -> Stack:
    """The ensemble's models at ``idx`` (with repeats)."""
    return stack[0][idx], stack[1][idx]


def _draw_difference(
    method: Stack, base: Stack, ref: Stack, rng: np.random.Generator, base_paired: bool
) -> dict[str, float]:
    """One draw of the two-level bootstrap: the ensemble indices k resampled with replacement,
    then the examples; per score, the mean paired difference over the resampled examples where
    both could be computed. Index k is the unit: model k of the method and reference k come from
    one seed, so they are drawn together (as is the base where ``base_paired``, the paired retrain
    row); the retrain row's own seeds are drawn independently, as many as the method has models
    (fewer than K where some diverged)."""
    k = len(ref[0])
    idx = rng.integers(0, k, k)
    other = idx if base_paired else rng.integers(0, len(base[0]), k)
    method, base, ref = _taken(method, idx), _taken(base, other), _taken(ref, idx)
    a, b = example_scores(*method, *ref), example_scores(*base, *ref)
    n = len(a["klom_forget"])
    examples = rng.integers(0, n, n)
    return {key: _mean_difference(a[key][examples], b[key][examples]) for key in TWO_LEVEL}


def _interval(observed: float, draws: np.ndarray) -> dict:
    """The 95 % interval of the finite draws around their median, centred on the ``observed``
    difference, and how many draws there were. Centred because resampling models with
    replacement biases these scores (a duplicated model narrows an ensemble's spread, which
    moves KLoM and the challenge's epsilons), so the draws' location is not the observed
    difference's. This assumes the bias is a shift; with 200 draws each end rests on about 5
    of them, so a verdict near 0 can move with the seed."""
    finite = draws[np.isfinite(draws)]
    if len(finite) < 2 or not np.isfinite(observed):
        return {"ci95": None, "draws": len(finite)}
    lo, mid, hi = np.quantile(finite, (0.025, 0.5, 0.975))
    return {
        "ci95": [float(observed + lo - mid), float(observed + hi - mid)],
        "draws": len(finite),
        "draws_median": float(mid),
    }


def two_level_bootstrap(
    task: Task,
    members: dict[str, list[Member]],
    references: list[Member],
    draws: int,
    seed: int = 0,
    base: str = "retrain",
) -> dict[str, dict]:
    """Per method other than ``base`` (the retrain row) and ``retrain``, per score of
    :data:`TWO_LEVEL`: a 95 % interval of its mean difference from the retrain row on D_f from
    the spread of that difference when the ensemble indices and then the examples are resampled
    (``draws`` times; :func:`_draw_difference`, :func:`_interval`), to approximate what two
    finite ensembles of the same distribution differ by as well as what the examples do.
    Every ensemble but ``retrain`` must pair the references index by index (model k from seed
    k); ``retrain``, drawn from its own seeds, is resampled independently where it is the base.
    Empty with no draws or no retrain row. Seeded per method by its name, so one method's
    interval does not depend on which others were evaluated."""
    if draws <= 0 or base not in members:
        return {}
    order = [r.index for r in references]
    paired = [m for m in members if m != "retrain"]
    for m in paired:
        if [x.index for x in members[m]] != order:
            raise ValueError(f"two-level bootstrap: {m}'s models must pair the references' indices")

    def stacks(ms: list[Member]) -> Stack:
        return _confidences(task, ms), _margins(task, ms, "forget")

    all_refs, base_stack = stacks(references), stacks(members[base])
    base_scores = example_scores(*base_stack, *all_refs)
    out = {}
    for method in paired:
        if method == base:
            continue
        # models whose method diverged are left out, with their references (and the paired
        # base's models of those indices)
        ms, _ = scored_members(members[method], references)
        kept = {m.index for m in ms}
        keep = np.array([i for i, r in enumerate(references) if r.index in kept])
        if len(ms) < MIN_SCORED_MODELS:  # its scores were not computed (scores.klom_part)
            continue
        own_stack = stacks(ms)
        ref, base_k, base_own = all_refs, base_stack, base_scores
        if len(ms) < len(members[method]):
            ref = _taken(all_refs, keep)
            if base != "retrain":  # the paired base at the same indices
                base_k = _taken(base_stack, keep)
                base_own = example_scores(*base_k, *ref)
        own = example_scores(*own_stack, *ref)
        rng = np.random.default_rng([seed, zlib.crc32(method.encode())])
        got = [
            _draw_difference(own_stack, base_k, ref, rng, base != "retrain")
            for _ in progress(range(draws), desc=f"two-level bootstrap: {method} vs {base}")
        ]
        out[method] = {
            key: _interval(
                _mean_difference(own[key], base_own[key]), np.array([g[key] for g in got])
            )
            for key in TWO_LEVEL
        }
    return out
