"""The settings of the fine-tuning baselines of issue 33, one frozen dataclass per method, each
default from the method's paper or its authors' code for CIFAR-scale image classification (the
source is written beside every field; docs/methods.md gives the links).

- :class:`NegGradConfig`: NegGrad+ (Kurmanji et al., NeurIPS 2023), github.com/meghdadk/SCRUB.
- :class:`ScrubConfig`: SCRUB and SCRUB+R (the same paper and repository); the defaults are those
  of its small-scale notebook (``small_scale_unlearning.ipynb``), the repository's setting
  closest to forgetbox's (its README names small CIFAR-5 / Lacuna-5 as in Golatkar et al. 2020;
  the notebook's saved arguments are a small Lacuna-6 run forgetting 300 images).
- :class:`SalUnConfig`: SalUn (Fan et al., ICLR 2024), github.com/OPTML-Group/Unlearn-Saliency.
- :class:`L1SparseConfig`: l1-sparse (Jia et al., NeurIPS 2023),
  github.com/OPTML-Group/Unlearn-Sparse.

Every error names the setting as ``<method>.<field>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..settings import Choice, Settings, check_int, check_number


class DecayAnchor(Choice):
    """What a baseline's weight decay (lambda/2)||w - anchor||^2 pulls toward."""

    ZERO = "zero", "the origin: an optimizer's weight decay (the authors' code of most baselines)"
    START = "start", "the weights it starts from, w(D) (the NegGrad+ authors' l2 penalty)"
    PRETRAINED = "pretrained", "w0, the regulariser forgetbox's fine-tuning trains with"


class ScrubOptimizer(Choice):
    """The optimizer of SCRUB's max and min steps (one optimizer, its state shared)."""

    ADAM = "adam", "Adam, the small-scale notebook's (CIFAR-5 / Lacuna-5)"
    SGD = "sgd", "SGD with momentum, the large-scale and MIA notebooks'"


def _opt(default, text: str, flag: str):
    """A field with its default, its help and its command-line flag."""
    return field(default=default, metadata={"help": text, "flag": flag})


def check_between(value, name: str, low: float, high: float, *, open_low: bool = False) -> None:
    """Refuse a non-number or a value outside [low, high] ((low, high] with ``open_low``)."""
    check_number(value, name, low=low, strict=open_low)
    if value > high:
        raise ValueError(f"{name} must be <= {high}; got {value}")


def _check_sgd(cfg, group: str) -> None:
    """The fields every baseline has: epochs, rate, momentum, weight decay and its anchor."""
    check_int(cfg.epochs, f"{group}.epochs", low=1)
    check_number(cfg.lr, f"{group}.lr", low=0.0, strict=True)
    check_number(cfg.momentum, f"{group}.momentum", low=0.0)
    if cfg.momentum >= 1.0:
        raise ValueError(f"{group}.momentum must be < 1; got {cfg.momentum}")
    check_number(cfg.weight_decay, f"{group}.weight_decay", low=0.0)
    object.__setattr__(
        cfg, "decay_anchor", DecayAnchor.parse(cfg.decay_anchor, f"{group}.decay_anchor")
    )


@dataclass(frozen=True)
class NegGradConfig(Settings):
    """NegGrad+: SGD on beta * (CE(D_r) + (lambda/2)||w - anchor||^2) - (1 - beta) * CE(D_f),
    each step a batch of D_r with the next batch of D_f (D_f reshuffled when exhausted)."""

    # the small-scale notebook of github.com/meghdadk/SCRUB (`negative_grad`, cell "ng_*")
    epochs: int = _opt(10, "NegGrad+ epochs over D_r", "neggrad-epochs")  # ng_epochs = 10
    lr: float = _opt(0.01, "NegGrad+ SGD rate", "neggrad-lr")  # ng_lr = 0.01
    beta: float = _opt(0.95, "NegGrad+ weight of the D_r loss (beta)", "neggrad-beta")  # ng_alpha
    momentum: float = _opt(0.0, "NegGrad+ SGD momentum", "neggrad-momentum")  # plain SGD
    # l2_penalty(model, model_init, args.weight_decay = 0.1), inside the beta-weighted term
    weight_decay: float = _opt(0.1, "NegGrad+ weight decay lambda", "neggrad-weight-decay")
    decay_anchor: DecayAnchor = _opt(
        DecayAnchor.START, "NegGrad+ weight decay's pull", "neggrad-decay-anchor"
    )
    # the notebook rebinds retain_loader with args.batch_size = 128 (main.py) before its NegGrad+
    # cell runs, so NegGrad+ saw batches of 128 of D_r (retain_bs = 32 is SCRUB's)
    retain_batch: int = _opt(128, "NegGrad+ batch of D_r", "neggrad-retain-batch")
    forget_batch: int = _opt(64, "NegGrad+ batch of D_f", "neggrad-forget-batch")  # forget_bs

    def __post_init__(self) -> None:
        _check_sgd(self, "neggrad")
        check_between(self.beta, "neggrad.beta", 0.0, 1.0)
        check_int(self.retain_batch, "neggrad.retain_batch", low=1)
        check_int(self.forget_batch, "neggrad.forget_batch", low=1)


@dataclass(frozen=True)
class ScrubConfig(Settings):
    """SCRUB: the student (a copy of w(D)) ascends KL(teacher || student) on D_f in the first
    ``max_steps`` epochs, and every epoch descends ce_weight * CE + kl_weight * KL on D_r; the
    rate is multiplied by ``lr_decay`` after each epoch of ``lr_decay_epochs``."""

    # github.com/meghdadk/SCRUB, small_scale_unlearning.ipynb (the `args.*` cell of SCRUB)
    epochs: int = _opt(10, "SCRUB epochs (min steps every epoch)", "scrub-epochs")  # sgda_epochs
    max_steps: int = _opt(3, "SCRUB epochs that start with a max step", "scrub-max-steps")  # msteps
    # the paper's appendix: "initialize the learning rate at 0.0005 and decay it by 0.1"
    lr: float = _opt(5e-4, "SCRUB rate", "scrub-lr")
    lr_decay: float = _opt(0.1, "SCRUB rate decay factor", "scrub-lr-decay")  # lr_decay_rate
    lr_decay_epochs: tuple[int, ...] = (5, 8, 9)  # lr_decay_epochs (epochs counted from 1)
    optimizer: ScrubOptimizer = _opt(ScrubOptimizer.ADAM, "SCRUB optimizer", "scrub-optimizer")
    momentum: float = _opt(0.9, "SCRUB momentum (sgd only)", "scrub-momentum")  # sgda_momentum
    # the paper: 0.1 in the small-scale setting; the optimizer's weight decay (toward zero)
    weight_decay: float = _opt(0.1, "SCRUB weight decay lambda", "scrub-weight-decay")
    decay_anchor: DecayAnchor = _opt(
        DecayAnchor.ZERO, "SCRUB weight decay's pull", "scrub-decay-anchor"
    )
    temperature: float = _opt(2.0, "SCRUB distillation temperature", "scrub-temperature")  # kd_T
    kl_weight: float = _opt(0.5, "SCRUB weight of KL on D_r (alpha)", "scrub-kl-weight")  # alpha
    ce_weight: float = _opt(1.0, "SCRUB weight of CE on D_r (gamma)", "scrub-ce-weight")  # gamma
    retain_batch: int = _opt(32, "SCRUB batch of D_r", "scrub-retain-batch")  # retain_bs
    forget_batch: int = _opt(64, "SCRUB batch of D_f", "scrub-forget-batch")  # forget_bs

    def __post_init__(self) -> None:
        _check_sgd(self, "scrub")
        object.__setattr__(
            self, "optimizer", ScrubOptimizer.parse(self.optimizer, "scrub.optimizer")
        )
        check_int(self.max_steps, "scrub.max_steps", low=0)
        if self.max_steps > self.epochs:
            raise ValueError(
                f"scrub.max_steps must be <= scrub.epochs ({self.epochs}); got {self.max_steps}"
            )
        check_between(self.lr_decay, "scrub.lr_decay", 0.0, 1.0, open_low=True)
        _check_milestones(self.lr_decay_epochs, "scrub.lr_decay_epochs")
        object.__setattr__(self, "lr_decay_epochs", tuple(self.lr_decay_epochs))
        check_number(self.temperature, "scrub.temperature", low=0.0, strict=True)
        check_number(self.kl_weight, "scrub.kl_weight", low=0.0)
        check_number(self.ce_weight, "scrub.ce_weight", low=0.0)
        if self.kl_weight == 0 and self.ce_weight == 0:
            raise ValueError("scrub.kl_weight and scrub.ce_weight are both 0: no min step")
        check_int(self.retain_batch, "scrub.retain_batch", low=1)
        check_int(self.forget_batch, "scrub.forget_batch", low=1)


def _check_milestones(value, name: str) -> None:
    """Refuse anything but a strictly increasing sequence of epochs >= 1."""
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list of epochs; got {value!r}")
    for v in value:
        check_int(v, name, low=1)
    if any(b <= a for a, b in zip(value, value[1:], strict=False)):
        raise ValueError(f"{name} must increase strictly; got {list(value)}")


@dataclass(frozen=True)
class SalUnConfig(Settings):
    """SalUn: the mask keeps the ``mask_fraction`` of weights with the largest |gradient| of the
    D_f loss at w(D); each epoch, SGD on the masked weights over D_f with random labels (another
    class), then over D_r with its labels (weighted ``retain_weight``)."""

    # github.com/OPTML-Group/Unlearn-Saliency, Classification/README.md (10 % of CIFAR-10)
    epochs: int = _opt(10, "SalUn epochs", "salun-epochs")  # --unlearn_epochs 10
    lr: float = _opt(0.013, "SalUn SGD rate", "salun-lr")  # --unlearn_lr 0.013
    mask_fraction: float = _opt(0.5, "SalUn fraction of weights trained", "salun-mask-fraction")
    # (the README's mask/with_0.5.pt; the paper's 50 % sparsity)
    momentum: float = _opt(0.9, "SalUn SGD momentum", "salun-momentum")  # arg_parser --momentum
    weight_decay: float = _opt(5e-4, "SalUn weight decay lambda", "salun-weight-decay")
    decay_anchor: DecayAnchor = _opt(
        DecayAnchor.ZERO, "SalUn weight decay's pull", "salun-decay-anchor"
    )
    batch_size: int = _opt(256, "SalUn batch", "salun-batch")  # arg_parser --batch_size 256
    # alpha of the paper's eq. 6; "set to 1" (the authors, Unlearn-Saliency issue 21)
    retain_weight: float = _opt(1.0, "SalUn weight of the D_r loss (alpha)", "salun-retain-weight")

    def __post_init__(self) -> None:
        _check_sgd(self, "salun")
        check_between(self.mask_fraction, "salun.mask_fraction", 0.0, 1.0, open_low=True)
        check_int(self.batch_size, "salun.batch_size", low=1)
        check_number(self.retain_weight, "salun.retain_weight", low=0.0)


@dataclass(frozen=True)
class L1SparseConfig(Settings):
    """l1-sparse: SGD on D_r of CE + gamma_t ||w||_1 (+ the weight decay), gamma_t =
    gamma * (1 - t / epochs) in epoch t = 0, 1, ... (the linearly decaying schedule)."""

    # github.com/OPTML-Group/Unlearn-Sparse, README.MD (l1-sparse: --unlearn_lr 0.01, 10 epochs)
    epochs: int = _opt(10, "l1-sparse epochs", "l1-epochs")
    lr: float = _opt(0.01, "l1-sparse SGD rate", "l1-lr")
    # the README leaves --alpha to the user; 5e-4 is the paper's CIFAR-10 value as recalled
    # (docs/methods.md: not checked against the paper's text)
    gamma: float = _opt(5e-4, "l1-sparse initial l1 weight gamma", "l1-gamma")
    momentum: float = _opt(0.9, "l1-sparse SGD momentum", "l1-momentum")  # --momentum 0.9
    weight_decay: float = _opt(5e-4, "l1-sparse weight decay lambda", "l1-weight-decay")
    decay_anchor: DecayAnchor = _opt(
        DecayAnchor.ZERO, "l1-sparse weight decay's pull", "l1-decay-anchor"
    )
    batch_size: int = _opt(256, "l1-sparse batch", "l1-batch")  # arg_parser --batch_size 256

    def __post_init__(self) -> None:
        _check_sgd(self, "l1_sparse")
        check_number(self.gamma, "l1_sparse.gamma", low=0.0)
        check_int(self.batch_size, "l1_sparse.batch_size", low=1)
