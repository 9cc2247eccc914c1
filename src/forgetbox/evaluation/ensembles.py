"""The ensembles of an evaluation for one split and cohort: K originals on D, K reference models
on D_r, every method applied to every original, and K more models retrained on D_r as the
``retrain`` row. Every model comes from the experiment's stage cache (trained or scrubbed once,
resumable after a kill); what the scores need of each is its logits on the split and a few
readouts."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .. import methods, ntk, readouts
from ..experiment.stages import Stages, diverged, extras_of, model_from
from ..experiment.tasks import Task
from ..hashing import config_hash
from ..progress import progress
from ..training import predict
from .config import PAIRED_RETRAIN, EvaluateConfig
from .releases import mechanism_sigma, released

SUBSETS = ("forget", "retain", "test", "val")


@dataclass
class Member:
    """One model of an ensemble: its logits on D (``train``, in the split's order), the
    validation and the test set, its readouts and the seconds its method took."""

    method: str
    index: int
    seed: int
    logits: dict[str, Tensor]
    readouts: dict = field(default_factory=dict)
    seconds: float | None = None


def logits_of(model: nn.Module, task: Task) -> dict[str, Tensor]:
    """Float64 logits of ``model`` on the task's training, validation and test inputs."""
    sp = task.split
    return {
        "train": predict(model, sp.x_train).double(),
        "val": predict(model, sp.x_val).double(),
        "test": predict(model, sp.x_test).double(),
    }


def subset(task: Task, logits: dict[str, Tensor], name: str) -> tuple[Tensor, Tensor]:
    """``(logits, labels)`` of D_f, D_r, test or validation from a member's logits."""
    sp = task.split
    if name == "test":
        return logits["test"], sp.y_test
    if name == "val":
        return logits["val"], sp.y_val
    mask = torch.zeros(len(sp.y_train), dtype=torch.bool)
    mask[task.forget_idx] = True
    keep = mask if name == "forget" else ~mask
    return logits["train"][keep], sp.y_train[keep]


def _l1(a: Tensor, b: Tensor) -> float:
    return (torch.softmax(a, -1) - torch.softmax(b, -1)).abs().sum(-1).mean().item()


def readout_names(relearn: bool) -> list[str]:
    """The readouts of a member, in the order :func:`member_readouts` computes them."""
    names = [f"{what}_{name}" for name in SUBSETS for what in ("error", "loss")]
    names += [f"l1_to_retrain_{name}" for name in ("forget", "retain", "test")]
    return names + ["mia_forget_member_rate"] + (["relearn_epochs"] if relearn else [])


def is_diverged(member: Member) -> bool:
    """Whether ``member`` is a model whose method diverged: recorded with NaN logits (stored
    score inputs carry no other mark). A model with finite weights whose logits are not all
    finite counts too: no readout or score can be computed from it either."""
    return not bool(torch.isfinite(member.logits["train"]).all())


def member_readouts(
    stages: Stages,
    task: Task,
    model: nn.Module,
    logits: dict[str, Tensor],
    reference: dict[str, Tensor],
    seed: int,
    relearn_threshold: float | None,
    key: str,
) -> dict:
    """Errors and losses by subset, the paper's entropy attack, L1 to the paired reference
    model by subset, and (when a threshold is given) re-learn time; cached by ``key``."""

    def compute() -> dict:
        row = {}
        for name in SUBSETS:
            z, y = subset(task, logits, name)
            row[f"error_{name}"] = (z.argmax(-1) != y).double().mean().item()
            row[f"loss_{name}"] = torch.nn.functional.cross_entropy(z, y).item()
        for name in ("forget", "retain", "test"):
            row[f"l1_to_retrain_{name}"] = _l1(
                subset(task, logits, name)[0], subset(task, reference, name)[0]
            )
        mia = readouts.membership_attack(model, task.retain, task.test, task.forget, seed=seed)
        row["mia_forget_member_rate"] = mia.member_rate
        if relearn_threshold is not None:
            rl = readouts.relearn_time(
                model,
                *task.full,
                *task.forget,
                threshold=relearn_threshold,
                max_epochs=stages.cfg.relearn_max_epochs,
                seed=seed,
                weight_decay=stages.cfg.relearn_weight_decay,
                check_before_training=stages.cfg.relearn_check_before,
            )
            row["relearn_epochs"] = rl.epochs
        return row

    return stages.cache.json(key, compute)


@dataclass
class _Index:
    """One ensemble index k: its seed, w0, original and reference, and its shared NTK step."""

    stages: Stages
    task: Task
    seed: int
    w0: nn.Module
    original: nn.Module
    reference: nn.Module
    reference_seconds: float
    key_base: str
    _step: ntk.NTKDirection | None = None

    def direction(self) -> ntk.NTKDirection:
        if self._step is None:
            t = self.task
            fcfg = self.stages.forget_config(t)
            self._step = methods.ntk_step(
                self.original, self.w0, t.retain, t.forget, fcfg, self.seed
            )
        return self._step


def _index(stages: Stages, task: Task, seed: int) -> _Index:
    w0 = stages.initial(task, seed)
    original, _ = stages.trained(task, w0, seed, "original")
    reference, info = stages.trained(task, w0, seed, "retrain")
    return _Index(
        stages,
        task,
        seed,
        w0,
        original,
        reference,
        info["seconds"],
        stages.seed_key(task, seed, w0),
    )


def build_ensembles(
    stages: Stages, task: Task, cfg: EvaluateConfig, log: Callable[[str], None] = print
) -> tuple[dict[str, list[Member]], list[Member], list[nn.Module]]:
    """``(members by method, reference members, originals)``: K of each, every model cached.
    With a linearized run, the references and the retrain row are releases of the reference
    mechanism (exact retrains plus the certified method's noise)."""
    by_method: dict[str, list[Member]] = {m: [] for m in cfg.methods}
    references: list[Member] = []
    originals: list[nn.Module] = []
    for k in progress(range(cfg.models), desc="ensembles (originals, references, methods)"):
        t0 = time.perf_counter()
        idx = _index(stages, task, cfg.seed_base + k)
        originals.append(idx.original)
        ref_logits = logits_of(_release(stages, task, idx.reference, "reference", k), task)
        threshold = None
        if cfg.relearn:
            threshold = readouts.error_and_loss(idx.original, *task.forget)[1]
        key = "ensemble-" + config_hash([idx.key_base, k, cfg.relearn, "reference"])
        references.append(Member("reference", k, idx.seed, ref_logits, {}, idx.reference_seconds))
        for method in cfg.methods:
            try:
                model, seconds, seed = _member_model(stages, task, idx, method, cfg, k)
                if model is None:  # diverged: recorded as such, its readouts not computable
                    log(f"ensemble member {k + 1}: {method} diverged (weights not finite)")
                    nan = {name: torch.full_like(z, torch.nan) for name, z in ref_logits.items()}
                    row = dict.fromkeys(readout_names(threshold is not None))
                    by_method[method].append(Member(method, k, seed, nan, row, seconds))
                    continue
                logits = logits_of(model, task)
                rkey = "ensemble-" + config_hash(
                    [key, method, stages.method_config(task, method).key(method), seed]
                )
                row = member_readouts(
                    stages, task, model, logits, ref_logits, seed, threshold, rkey
                )
            except ValueError as exc:  # say which model: a method may fail on one seed only
                raise ValueError(f"ensemble member {k + 1}, {method}: {exc}") from exc
            by_method[method].append(Member(method, k, seed, logits, row, seconds))
        log(f"ensemble member {k + 1}/{cfg.models} ready in {time.perf_counter() - t0:.0f} s")
    return by_method, references, originals


def _release(stages: Stages, task: Task, model: nn.Module, *parts) -> nn.Module:
    """``model`` as the reference mechanism releases it: with the certified noise in a
    linearized run, unchanged otherwise."""
    if not stages.cfg.linearized:
        return model
    sigma = mechanism_sigma(stages, task, next(model.parameters()).dtype)
    return released(model, sigma, *parts)


def _member_model(stages, task, idx: _Index, method: str, cfg: EvaluateConfig, k: int):
    """``(model, seconds, seed)`` of one method on original k (model None where the method
    diverged); ``retrain`` is an independent
    model retrained on D_r with the next block of seeds, ``retrain_paired`` (linearized runs)
    reference k's exact retrain released with fresh noise."""
    if method == PAIRED_RETRAIN:
        model = _release(stages, task, idx.reference, PAIRED_RETRAIN, k)
        return model, idx.reference_seconds, idx.seed
    if method == "retrain":
        seed = cfg.seed_base + cfg.models + k
        w0 = stages.initial(task, seed)
        model, info = stages.trained(task, w0, seed, "retrain")
        return _release(stages, task, model, "retrain", k), info["seconds"], seed
    state = stages.scrubbed(
        method,
        task,
        idx.original,
        idx.w0,
        idx.reference,
        idx.seed,
        idx.key_base,
        direction=idx.direction,
        allow_divergence=True,
    )
    if diverged(state):
        return None, extras_of(state)["seconds"], idx.seed
    return model_from(idx.original, state).eval(), extras_of(state)["seconds"], idx.seed
