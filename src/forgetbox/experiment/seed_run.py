"""One seed of the experiment: its models, the NTK step its methods share, its Fisher memo,
and the cache keys of its readout stages (each part of a key named where it is built)."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from torch import nn

from .. import methods, ntk, readouts
from ..hashing import config_hash
from .stages import Stages
from .tasks import Task


@dataclass
class SeedRun:
    """One seed's models and the helpers its readouts share."""

    stages: Stages
    seed: int
    task: Task
    w0: nn.Module
    original: nn.Module
    retrained: nn.Module
    orig_info: dict
    retr_info: dict
    key_base: str
    _step: ntk.NTKDirection | None = field(default=None, repr=False)

    @classmethod
    def build(cls, stages: Stages, seed: int, task: Task) -> SeedRun:
        """Pre-train (once), fine-tune on D and on D_r (cached) and place the models on the
        run's device (the data stays on the CPU, moved per batch)."""
        w0 = stages.initial(task, seed)
        original, orig_info = stages.trained(task, w0, seed, "original")
        retrained, retr_info = stages.trained(task, w0, seed, "retrain")
        key_base = stages.seed_key(task, seed, w0)
        w0, original, retrained = (m.to(stages.device) for m in (w0, original, retrained))
        return cls(stages, seed, task, w0, original, retrained, orig_info, retr_info, key_base)

    @cached_property
    def fcfg(self) -> methods.ForgetConfig:
        """The methods' shared configuration for this seed's cohort."""
        return self.stages.forget_config(self.task)

    @cached_property
    def fishers(self) -> methods.FisherMemo:
        """Fisher diagonals on D_r, each point's computed once (the retrained model's for every
        bound's baseline, a method's mean for its readouts and trade-off sweep)."""
        return methods.FisherMemo(self.retrained, self.task.retain[0], self.fcfg)

    @cached_property
    def original_loss_forget(self) -> float:
        """The original model's loss on D_f: the re-learn time's threshold."""
        return readouts.error_and_loss(self.original, *self.task.forget)[1]

    def known_fisher(self, state: dict) -> None:
        """Record the Fisher a method computed at its mean (``__fisher__`` of its state)."""
        if "__fisher__" in state:
            self.fishers.add(state["__mean__"].to(self.stages.device), state["__fisher__"])

    def direction(self) -> ntk.NTKDirection:
        """The NTK step of this seed, solved at most once, on first use."""
        if self._step is None:
            t = self.task
            self._step = methods.ntk_step(
                self.original, self.w0, t.retain, t.forget, self.fcfg, self.seed
            )
        return self._step

    # -- the cache keys of the readout stages: every setting a stage's output depends on
    def key(self, kind: str, method: str, **parts) -> str:
        """``<kind>-<method>-<hash>`` of the seed's key, the method and the named ``parts``."""
        return f"{kind}-{method}-" + config_hash({"seed": self.key_base, "method": method, **parts})

    def _method(self, method: str) -> dict:
        return {
            "config": self.stages.method_config(self.task, method).key(method),
            "version": methods.VERSION.get(method),
        }

    def readout_key(self, method: str) -> str:
        """Cache key of a method's readout row."""
        cfg = self.stages.cfg
        return self.key(
            "readout",
            method,
            **self._method(method),
            relearn=[cfg.relearn_max_epochs, cfg.relearn_weight_decay, cfg.relearn_check_before],
            queries=cfg.queries_per_subset,
            bound_alpha=cfg.alpha_ntk_fisher,
        )

    def tradeoff_key(self, method: str) -> str:
        """Cache key of a noisy method's trade-off grid (Fig. 3)."""
        cfg = self.stages.cfg
        return self.key(
            "tradeoff",
            method,
            **self._method(method),
            alphas=cfg.tradeoff_alphas,
            draws=cfg.tradeoff_draws,
            queries=cfg.queries_per_subset,
        )

    def path_key(self, method: str) -> str:
        """Cache key of a method's L1 path (Fig. 4)."""
        return self.key("path", method, **self._method(method), alphas=self.stages.cfg.path_alphas)
