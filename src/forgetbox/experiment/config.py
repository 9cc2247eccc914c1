"""The experiment's configuration: every setting a run depends on, resolved and validated
before any work."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

from ..devices import check_device
from ..methods import BASELINE_METHODS, LINEARIZED_METHODS, METHODS, PAPER_METHODS
from ..training import DEFAULT_WEIGHT_DECAY
from .profiles import PRESETS, PROFILES
from .schema import coerce


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run depends on. ``None`` fields are filled from the profile/dataset."""

    # digits | cifar10 | cifar10-npz | tinyimagenet32 | npz:PATH | tinyimagenet | lacuna
    dataset: str = "digits"
    pretrain_dataset: str = "auto"
    model: str = "smallcnn"
    width: float = 1.0
    profile: str = "default"
    data_dir: str | None = None
    download: bool = False
    seeds: tuple[int, ...] = (0, 1, 2)
    # default: the paper's methods, or with linearized = true those of a linearized network
    methods: tuple[str, ...] | None = None
    forget_class: int = 0
    # None: the whole class; auto: the whole class on digits (retraining without it visibly
    # changes D_f; the paper's 15 images barely do: docs/experiment.md), 25 (the paper's) else
    num_to_forget: int | str | None = "auto"
    train_per_class: int | None = None  # None: 20 for digits, 100 (the paper's) otherwise
    val_per_class: int = 25
    test_per_class: int | None = None  # None: 25 for tinyimagenet32 (50 per class), else 100
    weight_decay: float = DEFAULT_WEIGHT_DECAY
    alpha: float | None = None  # overrides both noise scales below
    alpha_fisher: float = 1e-6
    alpha_ntk_fisher: float = 1e-9
    solver: str = "auto"
    around: str = "trained"
    finetune_lr: float = 0.01
    pretrain_lr: float = 0.1
    pretrain_seed: int = 0
    pretrain_flip: bool | None = None  # None: flips for photographs, none for digits
    pretrain_epochs: int | None = None
    finetune_max_epochs: int | None = None
    finetune_schedule: str | None = None  # constant | cosine (lr decay over the epoch cap)
    finetune_baseline_lr: float | None = None  # the fine-tune baseline's plain-SGD rate
    relearn_max_epochs: int | None = None
    queries_per_subset: int | None = None
    tradeoff_draws: int | None = None
    tradeoff_alphas: tuple[float, ...] | None = None
    path_alphas: tuple[float, ...] | None = None
    newton_max_iter: int | None = None
    # forgetbox | authors: fills the settings below that are left unset (profiles.PRESETS)
    preset: str = "forgetbox"
    anchored: bool | None = None  # keep the weight-decay anchor in the NTK linearization
    trapezium_leg: str | None = None  # retain (the authors' code) | full (Fig. 5's drawing)
    step_scale: float | None = None  # a fixed multiplier of the NTK step instead of the trapezium
    noise_average: str | None = None  # fan_in | input_channels (authors) | none
    finetune_anchor: str | None = None  # the fine-tune baseline's pull: pretrained | start
    relearn_weight_decay: float | None = None  # re-learn pull toward its start (authors 0.1)
    relearn_check_before: bool | None = None  # check D_f loss before training (0 possible)
    retrain_duplicates: bool | None = None  # retrain on D_r plus duplicates to |D| (authors)
    # fine-tune the network linearized at w0, exactly (a strongly convex problem): the setting
    # of certified deletion (docs/certified.md); the certified method's (epsilon, delta)
    linearized: bool = False
    epsilon: float = 1.0
    delta: float = 1e-5
    trainable: str | None = None  # parameters fine-tuning trains (patterns); default all
    # the baselines' settings by group (neggrad, scrub, salun, l1_sparse): {group: {field:
    # value}}, each group read only by its methods; default their papers' (methods.md)
    baselines: dict | None = None
    device: str = "cpu"
    out: str = "runs/default"
    cache_dir: str | None = None  # default: <out>/cache

    def __post_init__(self) -> None:
        for f in fields(self):  # every value type- and range-checked when the config is made
            object.__setattr__(self, f.name, coerce(f.name, getattr(self, f.name)))

    def resolved(self) -> ExperimentConfig:
        """Fill profile defaults and the pre-training set; validate."""
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}: {', '.join(PROFILES)}")
        preset = PRESETS[self.preset]
        cfg = replace(self, **{k: v for k, v in preset.items() if getattr(self, k) is None})
        profile = PROFILES[self.profile].fields()
        cfg = replace(cfg, **{k: v for k, v in profile.items() if getattr(cfg, k) is None})
        cfg = cfg._dataset_defaults()
        allowed = LINEARIZED_METHODS if cfg.linearized else PAPER_METHODS + BASELINE_METHODS
        if cfg.methods is None:  # the baselines only when asked for
            cfg = replace(cfg, methods=LINEARIZED_METHODS if cfg.linearized else PAPER_METHODS)
        bad = [m for m in cfg.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown methods {bad}; choose from {', '.join(METHODS)}")
        other = [m for m in cfg.methods if m not in allowed]
        if other:
            setting = "linearized = true" if cfg.linearized else "standard fine-tuning"
            raise ValueError(f"methods {other} do not apply with {setting}: {', '.join(allowed)}")
        if "retrain" not in cfg.methods or "original" not in cfg.methods:
            cfg = replace(cfg, methods=tuple(dict.fromkeys(("original", "retrain", *cfg.methods))))
        cfg._validate()
        if cfg.alpha is not None:
            cfg = replace(cfg, alpha_fisher=cfg.alpha, alpha_ntk_fisher=cfg.alpha)
        return cfg

    def _dataset_defaults(self) -> ExperimentConfig:
        digits = self.dataset == "digits"
        cfg = self
        if cfg.train_per_class is None:
            cfg = replace(cfg, train_per_class=20 if digits else 100)
        if cfg.num_to_forget == "auto":
            cfg = replace(cfg, num_to_forget=None if digits else 25)
        if cfg.test_per_class is None:
            cfg = replace(cfg, test_per_class=25 if cfg.dataset == "tinyimagenet32" else 100)
        if cfg.pretrain_flip is None:
            cfg = replace(cfg, pretrain_flip=not digits)
        if cfg.pretrain_dataset == "auto":
            cfg = replace(cfg, pretrain_dataset=default_pretrain(cfg.dataset))
        return cfg

    def _validate(self) -> None:
        if not self.seeds:
            raise ValueError("at least one seed is needed")
        if not self.finetune_baseline_lr > 0:
            raise ValueError(f"finetune_baseline_lr must be > 0, got {self.finetune_baseline_lr}")
        check_device(self.device)

    def as_dict(self) -> dict:
        """Every field as plain data (``results.json``, ``config.toml``)."""
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _plain(v):
    if isinstance(v, tuple):
        return list(v)
    return v


def config_from_dict(
    d: dict, where: str = "configuration", overrides: dict | None = None
) -> ExperimentConfig:
    """An :class:`ExperimentConfig` from a TOML/JSON mapping; every key known, every value
    checked (:mod:`forgetbox.experiment.schema`); errors name the key. ``overrides``: settings
    already checked (command-line flags) that replace the mapping's before the whole is
    validated, so a flag can correct a file (``--device cpu`` over ``device = "cuda"``)."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a table of settings")
    names = {f.name for f in fields(ExperimentConfig)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"{where}: unknown configuration keys: {sorted(unknown)}")
    try:
        settings = {k: coerce(k, v) for k, v in d.items() if k not in (overrides or {})}
        return ExperimentConfig(**settings, **(overrides or {}))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc


def default_pretrain(dataset: str) -> str:
    """The pre-training set that goes with a fine-tuning set (the paper's pairs)."""
    return {
        "digits": "digits59",
        "cifar10": "cifar100",
        "cifar10-npz": "tinyimagenet32",
        "tinyimagenet32": "tinyimagenet32-150",
        "tinyimagenet": "tinyimagenet150",
        "lacuna": "lacuna100",
    }.get(dataset, "tinyimagenet32")
