"""The forgetting methods' names, their shared configuration and their result."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace

from torch import Tensor, nn

from ..ntk import Linearization, NTKOptions
from ..settings import Choice, Settings, check_bool, check_int, check_number
from ..training import FinetuneConfig
from .baseline_config import L1SparseConfig, NegGradConfig, SalUnConfig, ScrubConfig
from .certified import CertifyConfig


class Method(Choice):
    """The forgetting methods behind :func:`~forgetbox.methods.forget`."""

    ORIGINAL = "original", "w(D) unchanged: the reference for 'nothing was forgotten'"
    RETRAIN = "retrain", "fine-tune w0 on D_r alone: the gold standard, at full cost"
    FINETUNE = "finetune", "continue training w(D) on D_r (the paper's weak baseline)"
    FISHER = "fisher", "w(D) plus Fisher-shaped noise [16]: no deterministic step"
    NTK = "ntk", "the NTK scrubbing step of eq. 10 (with the trapezium): no noise"
    NTK_FISHER = "ntk_fisher", "the NTK step plus Fisher noise at the scrubbed point (eq. 11)"
    NEWTON = "newton", "one Newton step on the D_r loss (eq. 12), matrix-free"
    CERTIFIED = (
        "certified",
        "a linearized model: removal solved to a residual, released with noise for a stated "
        "(epsilon, delta) against exact retraining (docs/certified.md)",
    )
    NEGGRAD_PLUS = (
        "neggrad_plus",
        "fine-tune on D_r while ascending the loss on D_f (Kurmanji et al. 2023): a baseline",
    )
    SCRUB = (
        "scrub",
        "teacher-student: leave w(D) on D_f, follow it on D_r (Kurmanji et al. 2023): a baseline",
    )
    SCRUB_R = (
        "scrub_r",
        "SCRUB rewound to the epoch whose D_f error matches a validation set's (for privacy; "
        "needs a validation set)",
    )
    SALUN = (
        "salun",
        "random labels on D_f, fine-tuning the salient half of the weights (Fan et al. 2024): "
        "a baseline",
    )
    L1_SPARSE = (
        "l1_sparse",
        "fine-tune on D_r with a decaying l1 penalty (Jia et al. 2023): a baseline",
    )


class TrapeziumLeg(Choice):
    """Which side of the trapezium measures the NTK step's rescaling (docs/deviations.md 1)."""

    RETAIN = "retain", "from w_lin(D_r) to w(D), as the authors' code"
    FULL = "full", "from w_lin(D) to w(D), as the paper's Fig. 5 draws it"


class FinetuneAnchor(Choice):
    """What the fine-tune baseline's weight decay pulls toward."""

    PRETRAINED = "pretrained", "w0, the paper's regulariser"
    START = "start", "the weights it starts from, w(D) (the authors' code)"


class NoiseAverage(Choice):
    """How the Fisher noise variance of a weight tensor is averaged."""

    FAN_IN = "fan_in", "over each output unit's incoming weights (forgetbox)"
    INPUT_CHANNELS = (
        "input_channels",
        "over dimension 1 only, per output channel and kernel position (the authors' code)",
    )
    NONE = "none", "no averaging: one variance per weight"


class Preset(Choice):
    """Whose choices fill the settings left unset."""

    FORGETBOX = "forgetbox", "forgetbox's: the anchored linearization, noise averaged by fan-in"
    AUTHORS = "authors", "the authors' notebook's (docs/deviations.md): unanchored, and so on"


METHODS = Method.values()
# the paper's methods (standard fine-tuning) and those of a linearized network
PAPER_METHODS = ("original", "retrain", "finetune", "fisher", "ntk", "ntk_fisher", "newton")
LINEARIZED_METHODS = ("original", "retrain", "certified")
# the fine-tuning baselines of other papers (issue 33), run with standard fine-tuning
BASELINE_METHODS = ("neggrad_plus", "scrub", "scrub_r", "salun", "l1_sparse")
# where each baseline's settings live in a ForgetConfig
BASELINE_SETTINGS = {
    "neggrad": NegGradConfig,
    "scrub": ScrubConfig,
    "salun": SalUnConfig,
    "l1_sparse": L1SparseConfig,
}
# the settings only some methods read -> those methods: in no other method's cache key
OWN_SETTINGS = {
    "neggrad": ("neggrad_plus",),
    "scrub": ("scrub", "scrub_r"),
    "salun": ("salun",),
    "l1_sparse": ("l1_sparse",),
}
NTK_METHODS = (Method.NTK, Method.NTK_FISHER)
NOISY = (Method.FISHER, Method.NTK_FISHER)
PRESETS = Preset.values()
# bumped when a method's computation changes, so cached results are recomputed
VERSION = {"ntk": 2, "ntk_fisher": 2}
DEFAULT_ALPHA = {Method.FISHER: 1e-6, Method.NTK_FISHER: 1e-9}


def _help(text: str) -> dict:
    return {"help": text}


@dataclass(frozen=True)
class NoiseConfig(Settings):
    """Numerical safeguards of the Fisher noise (defaults follow the authors' code).

    variance = alpha * min(1 / (F + floor), cap), with ``head_cap`` for the classifier head;
    for weight tensors with more than one dimension the variance is averaged (``average``,
    :class:`NoiseAverage`). When a whole class is forgotten its head row gets mean 0 and
    variance ``class_row_variance``; then the head and one-dimensional parameters (biases,
    BatchNorm) are multiplied by ``boost`` (the forgotten row too, as in the authors' code:
    effectively 1e-3).
    """

    floor: float = 1e-8
    cap: float = 1e3
    head_cap: float = 1e2
    average: NoiseAverage = NoiseAverage.FAN_IN
    boost: float = 10.0
    class_row_variance: float = 1e-4

    def __post_init__(self) -> None:
        object.__setattr__(self, "average", NoiseAverage.parse(self.average, "average"))


@dataclass(frozen=True)
class ForgetConfig(Settings):
    """Everything the methods are configured by, held whole from the public API and the command
    line to the solver.

    ``linearization`` (:class:`~forgetbox.ntk.Linearization`): the objective and where it is
    linearized (weight decay lambda, loss, point, anchor, precision); the retraining recipe
    ``train`` trains with its lambda (derived: a recipe that states another is refused).
    ``ntk`` (:class:`~forgetbox.ntk.NTKOptions`): how the NTK step is solved; its
    ``memory_budget`` and ``chunk`` also bound the Fisher passes. ``alpha=None`` takes the
    method's default noise scale (1e-6 for fisher, 1e-9 for ntk_fisher, the authors' values).
    ``certify`` (:class:`~forgetbox.methods.certified.CertifyConfig`): the guarantee of the
    ``certified`` method. ``neggrad``, ``scrub``, ``salun``, ``l1_sparse``: the settings of the
    baselines (:mod:`forgetbox.methods.baseline_config`).
    """

    linearization: Linearization = field(default_factory=Linearization)
    ntk: NTKOptions = field(default_factory=NTKOptions)
    alpha: float | None = field(default=None, metadata=_help("noise scale (default: the method's)"))
    use_trapezium: bool = field(
        default=True, metadata=_help("rescale the NTK step with the trapezium of Fig. 5")
    )
    trapezium_leg: TrapeziumLeg = field(
        default=TrapeziumLeg.RETAIN, metadata=_help("side of the trapezium")
    )
    # on a converged w(D) the default trapezium is a fixed 3 (docs/deviations.md, item 1)
    step_scale: float | None = field(
        default=None,
        metadata=_help("a fixed multiplier of the NTK step instead of the trapezium's"),
    )
    finetune_epochs: int = field(default=10, metadata=_help("epochs of the fine-tune baseline"))
    finetune_lr: float = field(default=0.01, metadata=_help("rate of the fine-tune baseline"))
    finetune_anchor: FinetuneAnchor = field(
        default=FinetuneAnchor.PRETRAINED, metadata=_help("the fine-tune baseline's pull")
    )
    newton_damping: float = field(default=0.0, metadata=_help("damping of Newton's H"))
    newton_max_iter: int = field(default=200, metadata=_help("Newton CG iteration cap"))
    newton_tol: float = field(default=1e-6, metadata=_help("Newton CG relative residual"))
    noise: NoiseConfig = field(default_factory=NoiseConfig)
    certify: CertifyConfig = field(default_factory=CertifyConfig)
    train: FinetuneConfig = field(default_factory=FinetuneConfig)
    neggrad: NegGradConfig = field(default_factory=NegGradConfig)
    scrub: ScrubConfig = field(default_factory=ScrubConfig)
    salun: SalUnConfig = field(default_factory=SalUnConfig)
    l1_sparse: L1SparseConfig = field(default_factory=L1SparseConfig)
    forgotten_class: int | None = None  # set when a whole class is forgotten

    def __post_init__(self) -> None:
        if not isinstance(self.linearization, Linearization):
            raise TypeError("linearization must be a forgetbox.ntk.Linearization")
        if not isinstance(self.ntk, NTKOptions):
            raise TypeError("ntk must be a forgetbox.ntk.NTKOptions")
        for name, kind in BASELINE_SETTINGS.items():
            if not isinstance(getattr(self, name), kind):
                raise TypeError(f"{name} must be a forgetbox.methods.{kind.__name__}")
        if self.alpha is not None:
            check_number(self.alpha, "alpha", low=0.0)
        check_bool(self.use_trapezium, "use_trapezium")
        object.__setattr__(
            self, "trapezium_leg", TrapeziumLeg.parse(self.trapezium_leg, "trapezium_leg")
        )
        object.__setattr__(
            self, "finetune_anchor", FinetuneAnchor.parse(self.finetune_anchor, "finetune_anchor")
        )
        if self.step_scale is not None:
            check_number(self.step_scale, "step_scale", low=0.0, strict=True)
        check_number(self.finetune_lr, "finetune_lr", low=0.0, strict=True)
        check_number(self.newton_damping, "newton_damping", low=0.0)
        check_number(self.newton_tol, "newton_tol", low=0.0, strict=True)
        check_int(self.finetune_epochs, "finetune_epochs", low=0)
        check_int(self.newton_max_iter, "newton_max_iter", low=0)
        check_int(self.forgotten_class, "forgotten_class", low=0, allow_none=True)
        object.__setattr__(self, "train", self._derived_recipe())

    def _derived_recipe(self) -> FinetuneConfig:
        """``train`` with the linearization's lambda; a recipe stating another is refused."""
        lam = self.linearization.weight_decay
        given = self.train.weight_decay
        if given is not None and given != lam:
            raise ValueError(
                f"train.weight_decay={given} conflicts with linearization.weight_decay={lam}: "
                "retraining uses the linearization's lambda (leave train.weight_decay unset)"
            )
        return replace(self.train, weight_decay=lam)

    def replace(self, **changes) -> ForgetConfig:
        """A copy with ``changes``; a new ``linearization`` carries its lambda into ``train``
        unless ``train`` is given too."""
        if "linearization" in changes and "train" not in changes:
            changes["train"] = replace(self.train, weight_decay=None)
        return super().replace(**changes)

    @classmethod
    def authors(cls, **changes) -> ForgetConfig:
        """The authors' notebook choices (``preset = "authors"``): the unanchored
        linearization at w(D) with the trapezium on the retain side, noise averaged over input
        channels, the fine-tune baseline pulled toward its start (docs/deviations.md)."""
        base = cls(
            linearization=Linearization(anchored=False),
            trapezium_leg=TrapeziumLeg.RETAIN,
            finetune_anchor=FinetuneAnchor.START,
            noise=NoiseConfig(average=NoiseAverage.INPUT_CHANNELS),
        )
        return base.replace(**changes)

    @classmethod
    def from_preset(cls, preset: Preset | str, **changes) -> ForgetConfig:
        """``"forgetbox"`` (the defaults) or ``"authors"`` (:meth:`authors`), with ``changes``."""
        if Preset.parse(preset, "preset") is Preset.AUTHORS:
            return cls.authors(**changes)
        return cls(**changes)

    def key(self, method: str | None = None) -> dict:
        """Every field but the kernel's build (``ntk.jacobian``) as plain data (cache keys); the
        settings in :data:`OWN_SETTINGS` only in the key of a method that reads them
        (``method``), so that one baseline's settings leave every other method's cached results
        valid."""
        out = asdict(self)
        # how the dense kernel is built changes it only in rounding (tests/test_structured.py):
        # results cached with either build stay valid
        del out["ntk"]["jacobian"]
        for name, readers in OWN_SETTINGS.items():
            if method not in readers:
                del out[name]
        return out


# explicit arguments of scrub() and prepare() -> where they live in a ForgetConfig
LINEARIZATION_ARGUMENTS = ("weight_decay", "loss", "dtype")
CONFIG_ARGUMENTS = ("alpha", "step_scale")


def resolve_config(
    config: ForgetConfig | None,
    *,
    weight_decay: float | None = None,
    loss=None,
    dtype=None,
    alpha: float | None = None,
    step_scale: float | None = None,
    options: NTKOptions | None = None,
    certify: CertifyConfig | None = None,
) -> ForgetConfig:
    """``config`` (default :class:`ForgetConfig`) with the explicit arguments that are not None:
    ``weight_decay``, ``loss``, ``dtype`` (the linearization's), ``alpha``, ``step_scale``,
    ``options`` (the NTK options, whole) and ``certify`` (the certified guarantee, whole). With
    a ``config``, an argument that contradicts it is refused naming both (give each setting
    once)."""
    given = {
        "weight_decay": weight_decay,
        "loss": loss,
        "dtype": dtype,
        "alpha": alpha,
        "step_scale": step_scale,
        "options": options,
        "certify": certify,
    }
    given = {k: v for k, v in given.items() if v is not None}
    base = config or ForgetConfig()
    if config is not None:
        for name, value in given.items():
            have, where = _setting(config, name)
            if value != have:
                raise ValueError(f"{name}={value!r} conflicts with {where}={have!r}: give it once")
        return config
    lin = {k: v for k, v in given.items() if k in LINEARIZATION_ARGUMENTS}
    top = {k: v for k, v in given.items() if k in CONFIG_ARGUMENTS}
    if "options" in given:
        top["ntk"] = given["options"]
    if "certify" in given:
        top["certify"] = given["certify"]
    if lin:
        top["linearization"] = base.linearization.replace(**lin)
    return base.replace(**top)


def _setting(config: ForgetConfig, name: str) -> tuple[object, str]:
    """The value of an explicit argument's setting in ``config``, and where it lives."""
    if name == "options":
        return config.ntk, "config.ntk"
    if name == "certify":
        return config.certify, "config.certify"
    if name in LINEARIZATION_ARGUMENTS:
        return getattr(config.linearization, name), f"config.linearization.{name}"
    return getattr(config, name), f"config.{name}"


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
