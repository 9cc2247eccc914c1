"""The schema of :class:`~forgetbox.experiment.config.ExperimentConfig`: for every field its
kind, its check and its help, from which the TOML reader and the command-line flags are both
derived. A value of the wrong type or out of range is refused with a message that names the
setting, before any work."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, fields

from ..methods import METHODS, FinetuneAnchor, NoiseAverage, TrapeziumLeg
from ..methods.config import BASELINE_SETTINGS
from ..models import MODEL_NAMES
from ..ntk import Around, Solver
from ..training import LRSchedule
from .profiles import PRESETS, PROFILES

DATASETS = ("digits", "cifar10", "cifar10-npz", "tinyimagenet32", "tinyimagenet", "lacuna")
PRETRAIN_SETS = (
    "auto",
    "digits59",
    "cifar100",
    "cifar10-59",
    "tinyimagenet32",
    "tinyimagenet32-150",
    "tinyimagenet150",
    "lacuna100",
)


@dataclass(frozen=True)
class Spec:
    """``kind``: str, float, int, bool, ints, floats, strs, count (an integer, ``auto`` or
    ``all``) or table (a TOML table; JSON on the command line); ``nullable``: None is allowed
    (the profile or data set fills it in)."""

    kind: str
    help: str
    check: Callable | None = None
    nullable: bool = False


def _choice(options) -> Callable:
    def check(v, name):
        if v not in options:
            raise ValueError(f"{name} must be one of {', '.join(map(str, options))}; got {v!r}")

    return check


def _named(options, prefix: str, extra: str) -> Callable:
    def check(v, name):
        if v not in options and not v.startswith(prefix):
            raise ValueError(f"{name} must be one of {', '.join(options)} or {extra}; got {v!r}")

    return check


def _model(v, name):
    if v not in MODEL_NAMES and ":" not in v:
        raise ValueError(f"{name} must be one of {', '.join(MODEL_NAMES)} or module:factory")


def _at_least(low: float, strict: bool = False) -> Callable:
    def check(v, name):
        values = v if isinstance(v, tuple) else (v,)
        for x in values:
            if x < low or (strict and x == low):
                raise ValueError(f"{name} must be {'>' if strict else '>='} {low}; got {v!r}")

    return check


def _methods(v, name):
    bad = [m for m in v if m not in METHODS]
    if bad:
        raise ValueError(f"{name}: unknown methods {bad}; choose from {', '.join(METHODS)}")


def _nonempty(v, name):
    if not v:
        raise ValueError(f"{name}: at least one is needed")
    _at_least(0)(v, name)


def _baselines(v, name):
    """``{group: {field: value}}``: each group a baseline's settings (``neggrad``, ``scrub``,
    ``salun``, ``l1_sparse``), each field one of its dataclass's, the values checked by
    building it (errors name ``group.field``)."""
    for group, values in v.items():
        if group not in BASELINE_SETTINGS:
            known = ", ".join(BASELINE_SETTINGS)
            raise ValueError(f"{name}: unknown baseline {group!r}; choose from {known}")
        if not isinstance(values, dict):
            raise ValueError(f"{name}.{group} must be a table of settings; got {values!r}")
        settings = BASELINE_SETTINGS[group]
        unknown = set(values) - {f.name for f in fields(settings)}
        if unknown:
            raise ValueError(f"{name}.{group}: unknown settings {sorted(unknown)}")
        settings(**values)


def _device(v, name):
    from ..devices import check_device

    check_device(v)


POSITIVE, NONNEGATIVE = _at_least(0, strict=True), _at_least(0)

SPECS: dict[str, Spec] = {
    "dataset": Spec("str", "fine-tuning data", _named(DATASETS, "npz:", "npz:PATH")),
    "pretrain_dataset": Spec("str", "pre-training data", _named(PRETRAIN_SETS, "npz:", "npz:PATH")),
    "model": Spec("str", "architecture", _model),
    "width": Spec("float", "width multiplier of the model", POSITIVE),
    "profile": Spec("str", "stage lengths and readout sizes", _choice(tuple(PROFILES))),
    "data_dir": Spec("str", "folder with data archives / npz files", nullable=True),
    "download": Spec("bool", "download the CIFAR archives"),
    "seeds": Spec("ints", "seeds, e.g. 0,1,2", _nonempty),
    "methods": Spec(
        "strs", "methods to run (original and retrain are always run)", _methods, nullable=True
    ),
    "forget_class": Spec("int", "class of the cohort", NONNEGATIVE),
    "num_to_forget": Spec("count", "size of the cohort: a number, auto or all", nullable=True),
    "train_per_class": Spec("int", "training images per class", POSITIVE, nullable=True),
    "val_per_class": Spec("int", "validation images per class", NONNEGATIVE),
    "test_per_class": Spec("int", "test images per class", POSITIVE, nullable=True),
    "weight_decay": Spec("float", "lambda of (lambda/2)||w - w0||^2", NONNEGATIVE),
    "alpha": Spec("float", "noise scale of fisher and ntk_fisher", NONNEGATIVE, nullable=True),
    "alpha_fisher": Spec("float", "noise scale of fisher", NONNEGATIVE),
    "alpha_ntk_fisher": Spec("float", "noise scale of ntk_fisher", NONNEGATIVE),
    "solver": Spec("str", "NTK solver", _choice(Solver.values())),
    "around": Spec("str", "NTK linearization point", _choice(Around.values())),
    "finetune_lr": Spec("float", "fine-tuning learning rate", POSITIVE),
    "pretrain_lr": Spec("float", "pre-training learning rate", POSITIVE),
    "pretrain_seed": Spec("int", "seed of pre-training", NONNEGATIVE),
    "pretrain_flip": Spec("bool", "random flips while pre-training", nullable=True),
    "pretrain_epochs": Spec("int", "pre-training epochs", NONNEGATIVE, nullable=True),
    "finetune_max_epochs": Spec("int", "fine-tuning epoch cap", POSITIVE, nullable=True),
    "finetune_schedule": Spec(
        "str", "fine-tuning learning rate schedule", _choice(LRSchedule.values()), nullable=True
    ),
    "finetune_baseline_lr": Spec("float", "fine-tune baseline's rate", POSITIVE, nullable=True),
    "relearn_max_epochs": Spec("int", "re-learn time cap", POSITIVE, nullable=True),
    "queries_per_subset": Spec("int", "black-box queries per subset", POSITIVE, nullable=True),
    "tradeoff_draws": Spec("int", "noise draws per alpha (Fig. 3)", POSITIVE, nullable=True),
    "tradeoff_alphas": Spec("floats", "noise scales of Fig. 3", NONNEGATIVE, nullable=True),
    "path_alphas": Spec("floats", "points along the scrubbing direction (Fig. 4)", nullable=True),
    "newton_max_iter": Spec("int", "Newton CG iterations", NONNEGATIVE, nullable=True),
    "preset": Spec("str", "forgetbox's choices or the authors' notebook's", _choice(PRESETS)),
    "anchored": Spec(
        "bool", "keep the weight-decay anchor in the NTK linearization", nullable=True
    ),
    "trapezium_leg": Spec(
        "str", "side of the trapezium", _choice(TrapeziumLeg.values()), nullable=True
    ),
    "step_scale": Spec("float", "fixed NTK step multiplier", POSITIVE, nullable=True),
    "noise_average": Spec(
        "str", "how the Fisher noise is averaged", _choice(NoiseAverage.values()), nullable=True
    ),
    "finetune_anchor": Spec(
        "str", "the fine-tune baseline's pull", _choice(FinetuneAnchor.values()), nullable=True
    ),
    "relearn_weight_decay": Spec(
        "float", "re-learn time's pull toward its start", NONNEGATIVE, nullable=True
    ),
    "relearn_check_before": Spec(
        "bool", "re-learn time checks D_f before training (can be 0)", nullable=True
    ),
    "retrain_duplicates": Spec(
        "bool", "retrain on D_r with duplicates up to |D| (authors)", nullable=True
    ),
    "linearized": Spec("bool", "fine-tune the network linearized at w0 (certified deletion)"),
    "epsilon": Spec("float", "epsilon of the certified method", POSITIVE),
    "delta": Spec("float", "delta of the certified method", POSITIVE),
    "trainable": Spec("str", "parameters fine-tuning trains (patterns)", nullable=True),
    "baselines": Spec(
        "table",
        "the baselines' settings, by method: neggrad, scrub, salun, l1_sparse "
        '(default: their papers\'), e.g. {"scrub": {"lr": 0.001}}',
        _baselines,
        nullable=True,
    ),
    "device": Spec("str", "cpu or cuda[:N]", _device),
    "out": Spec("str", "run folder"),
    "cache_dir": Spec("str", "stage cache (default <out>/cache)", nullable=True),
}


def _number(v, name: str, integral: bool):
    if isinstance(v, bool) or not isinstance(v, int | float) or (integral and isinstance(v, float)):
        raise ValueError(f"{name} must be {'an integer' if integral else 'a number'}; got {v!r}")
    if not integral and not math.isfinite(v):
        raise ValueError(f"{name} is {v}: give a finite number")
    return v


def coerce(name: str, value):
    """``value`` as the field's type (TOML lists become tuples), checked; or ValueError."""
    spec = SPECS[name]
    if value is None:
        if spec.nullable:
            return None
        raise ValueError(f"{name} must be set")
    kind = spec.kind
    if kind == "str":
        if not isinstance(value, str):
            raise ValueError(f"{name} must be a string; got {value!r}")
    elif kind in ("float", "int"):
        value = _number(value, name, kind == "int")
    elif kind == "bool":
        if not isinstance(value, bool):
            raise ValueError(f"{name} must be true or false; got {value!r}")
    elif kind == "count":
        value = _count(value, name)
    elif kind == "table":
        if not isinstance(value, dict):
            raise ValueError(f"{name} must be a table; got {value!r}")
        value = {k: dict(v) if isinstance(v, dict) else v for k, v in sorted(value.items())}
    else:
        value = _sequence(value, name, kind)
    if spec.check is not None and value is not None:
        spec.check(value, name)
    return value


def _count(value, name: str):
    if value in ("auto",):
        return value
    if value in ("all", "class"):
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, 'auto' or 'all'; got {value!r}")
    return value


def _sequence(value, name: str, kind: str) -> tuple:
    if not isinstance(value, list | tuple):
        raise ValueError(f"{name} must be a list; got {value!r}")
    if kind == "strs":
        if not all(isinstance(v, str) for v in value):
            raise ValueError(f"{name} must be a list of strings; got {value!r}")
        return tuple(value)
    return tuple(_number(v, name, kind == "ints") for v in value)


def parse_flag(name: str, text: str):
    """A command-line string as the field's value (before :func:`coerce`)."""
    kind = SPECS[name].kind
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "ints":
            return [int(v) for v in text.split(",") if v.strip()]
        if kind == "floats":
            return [float(v) for v in text.split(",") if v.strip()]
        if kind == "strs":
            return [v.strip() for v in text.split(",") if v.strip()]
        if kind == "count":
            return text if text in ("auto", "all", "class") else int(text)
        if kind == "table":
            return json.loads(text)
    except ValueError:
        raise ValueError(f"--{name.replace('_', '-')}: cannot read {text!r} as {kind}") from None
    return text
