"""The forgetting methods' names, their shared configuration and their result."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
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
NOISE_AVERAGES = ("fan_in", "input_channels", "none")  # see NoiseConfig.average
FINETUNE_ANCHORS = ("pretrained", "start")  # see ForgetConfig.finetune_anchor
PRESETS = ("forgetbox", "authors")  # see ForgetConfig.from_preset
# bumped when a method's computation changes, so cached results are recomputed
VERSION = {"ntk": 2, "ntk_fisher": 2}
DEFAULT_ALPHA = {Method.FISHER: 1e-6, Method.NTK_FISHER: 1e-9}


@dataclass(frozen=True)
class NoiseConfig:
    """Numerical safeguards of the Fisher noise (defaults follow the authors' code).

    variance = alpha * min(1 / (F + floor), cap), with ``head_cap`` for the classifier head;
    for weight tensors with more than one dimension the variance is averaged (``average``):
    ``"fan_in"`` over each output unit's incoming weights (forgetbox), ``"input_channels"`` over
    dimension 1 only, per output channel and kernel position (the authors' code; a layer with
    one input channel is not averaged), or ``"none"``. When a whole class is forgotten its head
    row gets mean 0 and variance ``class_row_variance``; then the head and one-dimensional
    parameters (biases, BatchNorm) are multiplied by ``boost`` (the forgotten row too, as in the
    authors' code: effectively 1e-3).
    """

    floor: float = 1e-8
    cap: float = 1e3
    head_cap: float = 1e2
    average: str = "fan_in"
    boost: float = 10.0
    class_row_variance: float = 1e-4

    def __post_init__(self) -> None:
        if self.average not in NOISE_AVERAGES:
            raise ValueError(f"average must be one of {NOISE_AVERAGES}; got {self.average!r}")


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
    # a fixed multiplier of delta_w in place of the trapezium's (None: the trapezium decides).
    # On a converged w(D) the default trapezium is a fixed 3 (docs/deviations.md, item 1)
    step_scale: float | None = None
    finetune_epochs: int = 10
    finetune_lr: float = 0.01
    # the fine-tune baseline's weight decay pulls toward w0 ("pretrained", the paper's
    # regulariser) or toward the weights it starts from, w(D) ("start", the authors' code)
    finetune_anchor: str = "pretrained"
    newton_damping: float = 0.0
    newton_max_iter: int = 200
    newton_tol: float = 1e-6
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    train: FinetuneConfig = field(default_factory=FinetuneConfig)
    forgotten_class: int | None = None  # set when a whole class is forgotten
    ntk: NTKOptions = field(default_factory=NTKOptions)

    def __post_init__(self) -> None:
        _number(self.weight_decay, "weight_decay", low=0.0)
        if self.alpha is not None:
            _number(self.alpha, "alpha", low=0.0)
        if self.loss not in ("ce", "mse"):
            raise ValueError(f"loss must be 'ce' or 'mse'; got {self.loss!r}")
        if self.around not in ("trained", "pretrained"):
            raise ValueError(f"around must be 'trained' or 'pretrained'; got {self.around!r}")
        if self.finetune_anchor not in FINETUNE_ANCHORS:
            raise ValueError(
                f"finetune_anchor must be one of {FINETUNE_ANCHORS}; got {self.finetune_anchor!r}"
            )
        if self.trapezium_leg not in TRAPEZIUM_LEGS:
            raise ValueError(
                f"trapezium_leg must be one of {TRAPEZIUM_LEGS}, got {self.trapezium_leg!r}"
            )
        if self.step_scale is not None:
            _number(self.step_scale, "step_scale", low=0.0, strict=True)
        if self.dtype is not None and not (
            isinstance(self.dtype, torch.dtype) and self.dtype.is_floating_point
        ):
            raise ValueError(f"dtype must be a floating torch.dtype; got {self.dtype!r}")
        _number(self.finetune_lr, "finetune_lr", low=0.0, strict=True)
        _number(self.newton_damping, "newton_damping", low=0.0)
        _number(self.newton_tol, "newton_tol", low=0.0, strict=True)
        for name in ("finetune_epochs", "newton_max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be an integer >= 0; got {value!r}")
        fc = self.forgotten_class
        if fc is not None and (isinstance(fc, bool) or not isinstance(fc, int) or fc < 0):
            raise ValueError(f"forgotten_class must be an integer >= 0; got {fc!r}")

    @classmethod
    def authors(cls, **changes) -> ForgetConfig:
        """The authors' notebook choices (``preset = "authors"``): the unanchored
        linearization at w(D) with the trapezium on the retain side, noise averaged over input
        channels, the fine-tune baseline pulled toward its start (docs/deviations.md)."""
        base = cls(
            anchored=False,
            around="trained",
            trapezium_leg="retain",
            finetune_anchor="start",
            noise=NoiseConfig(average="input_channels"),
        )
        return replace(base, **changes)

    @classmethod
    def from_preset(cls, preset: str, **changes) -> ForgetConfig:
        """``"forgetbox"`` (the defaults) or ``"authors"`` (:meth:`authors`), with ``changes``."""
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {PRESETS}; got {preset!r}")
        return cls.authors(**changes) if preset == "authors" else cls(**changes)

    def key(self) -> dict:
        """Every field as plain data (cache keys, certificates). ``step_scale`` appears only when
        set, so the keys of runs made before it existed still match."""
        out = asdict(self)
        if out["step_scale"] is None:
            del out["step_scale"]
        return out


def _number(value, name: str, *, low: float, strict: bool = False) -> None:
    """Refuse a non-number, NaN, an infinity or a value below ``low`` (or at it, ``strict``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number; got {value!r}")
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"{name} is {value}: give a finite number")
    if value < low or (strict and value == low):
        raise ValueError(f"{name} must be {'>' if strict else '>='} {low}; got {value}")


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
