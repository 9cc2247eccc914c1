"""The reference mechanism's releases in a linearized evaluation: an exact retrain (or any
model) plus the certified method's Gaussian noise, each release with its own named seed."""

from __future__ import annotations

import torch

from .. import methods
from ..experiment.stages import Stages
from ..experiment.tasks import Task
from ..hashing import config_hash


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
