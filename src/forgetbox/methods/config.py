"""The forgetting methods' names, their shared configuration and their result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum

import torch
from torch import Tensor, nn

from ..ntk import NTKOptions
from ..training import FinetuneConfig


class Method(StrEnum):
    ORIGINAL = "original"
    RETRAIN = "retrain"
    FINETUNE = "finetune"
    FISHER = "fisher"
    NTK = "ntk"
    NTK_FISHER = "ntk_fisher"
    NEWTON = "newton"


METHODS = tuple(m.value for m in Method)
NTK_METHODS = (Method.NTK, Method.NTK_FISHER)
NOISY = (Method.FISHER, Method.NTK_FISHER)
TRAPEZIUM_LEGS = ("retain", "full")  # see ForgetConfig.trapezium_leg
# bumped when a method's computation changes, so cached results are recomputed
VERSION = {"ntk": 2, "ntk_fisher": 2}
DEFAULT_ALPHA = {Method.FISHER: 1e-6, Method.NTK_FISHER: 1e-9}


@dataclass(frozen=True)
class NoiseConfig:
    """Numerical safeguards of the Fisher noise (defaults follow the authors' code).

    variance = alpha * min(1 / (F + floor), cap), with ``head_cap`` for the classifier head;
    for weight tensors with more than one dimension the variance is averaged over each output
    unit's incoming weights (``fan_in_average``); the head and one-dimensional parameters
    (biases, BatchNorm) are multiplied by ``boost``. When a whole class is forgotten its head
    row gets mean 0 and variance ``class_row_variance``.
    """

    floor: float = 1e-8
    cap: float = 1e3
    head_cap: float = 1e2
    fan_in_average: bool = True
    boost: float = 10.0
    class_row_variance: float = 1e-4


@dataclass(frozen=True)
class ForgetConfig:
    """Options shared by the methods. ``alpha=None`` takes the method's default noise scale
    (1e-6 for fisher, 1e-9 for ntk_fisher, the authors' values). ``ntk``: how the NTK step is
    computed (:class:`forgetbox.ntk.NTKOptions`; its ``memory_budget`` and ``chunk`` also bound
    the Fisher passes). ``dtype``: the precision of every method's computation (default: the
    model's)."""

    weight_decay: float = 0.1
    alpha: float | None = None
    loss: str = "ce"
    dtype: torch.dtype | None = None
    around: str = "trained"  # linearization point: "trained" (w(D)) or "pretrained" (w0)
    anchored: bool = True  # keep the weight-decay anchor in the linearization (see ntk)
    use_trapezium: bool = True
    # which side of the trapezium measures the rescaling (docs/deviations.md, item 1):
    # "retain" from w_lin(D_r) to w(D), as the authors' code; "full" from w_lin(D) to w(D), as
    # Fig. 5 draws it
    trapezium_leg: str = "retain"
    finetune_epochs: int = 10
    finetune_lr: float = 0.01
    newton_damping: float = 0.0
    newton_max_iter: int = 200
    newton_tol: float = 1e-6
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: FinetuneConfig = field(default_factory=FinetuneConfig)
    forgotten_class: int | None = None  # set when a whole class is forgotten
    ntk: NTKOptions = field(default_factory=NTKOptions)

    def key(self) -> dict:
        """Every field as plain data (cache keys, certificates)."""
        return asdict(self)


@dataclass(frozen=True)
class ForgetResult:
    """A scrubbed model and what produced it.

    ``delta``: flat deterministic shift (scrubbed mean - w(D)) or None; ``noise_variance``: flat
    diagonal covariance of the added noise or None; ``scale``: trapezium scale (NTK methods);
    ``fisher``: the diagonal Fisher on D_r at the mean the noise was computed from, or None.
    """

    method: str
    model: nn.Module
    delta: Tensor | None = None
    noise_variance: Tensor | None = None
    scale: float | None = None
    seconds: float = 0.0
    info: dict = field(default_factory=dict)
    fisher: Tensor | None = None

    @property
    def mean(self) -> Tensor:
        """Flat weights of the scrubbed model before noise (h(w) of eq. 4)."""
        return self.info["mean"]
