"""The structure a report is rendered from, checked before anything is written: a run's
``results.json`` and an evaluation's ``evaluation.json``, as far as the pages, figures and
verdicts read them (the numbers themselves are not judged). A file that does not fit is
refused with the first field that does not, by its path (``methods['ntk'].per_seed[2].seed``).

A spec is a small tree of :class:`Spec` objects: a kind of value (:data:`NUM`, :data:`INT`,
:data:`STR`, :data:`BOOL`, :data:`SCALAR`, :data:`ANY`), :class:`Opt` (or null),
:class:`List`, :class:`Map` (any keys, one spec for the values) and :class:`Obj` (named
fields, required or optional; others allowed).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path


class ResultsError(ValueError):
    """A results file that a report cannot be rendered from."""


class Spec:
    """What a value must be."""

    def check(self, value, at: str) -> None:
        """Raise :class:`ResultsError` naming ``at`` when ``value`` does not fit."""


@dataclass(frozen=True)
class Kind(Spec):
    """A leaf value accepted by ``test``, described as ``what``."""

    what: str
    test: object

    def check(self, value, at: str) -> None:  # noqa: D102
        if not self.test(value):
            raise ResultsError(f"field {at} must be {self.what}, got {_show(value)}")


def _number(v) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and not math.isinf(v)


NUM = Kind("a number", _number)  # NaN is allowed: a readout that could not be computed
INT = Kind("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool))
STR = Kind("a string", lambda v: isinstance(v, str))
BOOL = Kind("true or false", lambda v: isinstance(v, bool))
SCALAR = Kind("a number, string or boolean", lambda v: isinstance(v, str | bool) or _number(v))
ANY = Kind("anything", lambda v: True)


@dataclass(frozen=True)
class Opt(Spec):
    """``spec`` or null."""

    spec: Spec

    def check(self, value, at: str) -> None:  # noqa: D102
        if value is not None:
            self.spec.check(value, at)


@dataclass(frozen=True)
class List(Spec):
    """A list of ``spec`` (at least ``min`` long)."""

    spec: Spec
    min: int = 0

    def check(self, value, at: str) -> None:  # noqa: D102
        if not isinstance(value, list):
            raise ResultsError(f"field {at} must be a list, got {_show(value)}")
        if len(value) < self.min:
            raise ResultsError(f"field {at} must hold at least {self.min}, it holds {len(value)}")
        for i, v in enumerate(value):
            self.spec.check(v, f"{at}[{i}]")


@dataclass(frozen=True)
class Map(Spec):
    """An object whose every value is ``spec`` (at least ``min`` entries)."""

    spec: Spec
    min: int = 0

    def check(self, value, at: str) -> None:  # noqa: D102
        if not isinstance(value, dict):
            raise ResultsError(f"field {at} must be an object, got {_show(value)}")
        if len(value) < self.min:
            raise ResultsError(f"field {at} must hold at least {self.min}, it holds {len(value)}")
        for k, v in value.items():
            self.spec.check(v, f"{at}[{k!r}]")


@dataclass(frozen=True)
class Obj(Spec):
    """An object with the ``required`` fields and, when present, the ``optional`` ones; any
    other field must be ``rest``."""

    required: dict = field(default_factory=dict)
    optional: dict = field(default_factory=dict)
    rest: Spec = ANY

    def check(self, value, at: str) -> None:  # noqa: D102
        if not isinstance(value, dict):
            raise ResultsError(f"field {at} must be an object, got {_show(value)}")
        for name in self.required:
            if name not in value:
                raise ResultsError(f"field {at} lacks {name!r}")
        specs = {**self.optional, **self.required}
        for name, v in value.items():
            specs.get(name, self.rest).check(v, f"{at}.{name}" if at else name)


def _show(value) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text[:60]}{'...' if len(text) > 60 else ''}"


# ------------------------------------------------------------------ a run's results.json

TRAINING = Obj(
    optional={
        "epochs": Opt(INT),
        "seconds": Opt(NUM),
        "train_error": Opt(NUM),
        "reached_zero_error": Opt(BOOL),
        "restored_from_epoch": Opt(INT),
    }
)
POINTS = List(List(NUM))
TRADEOFF_ROW = Obj(
    required={
        "method": STR,
        "seed": INT,
        "alpha": NUM,
        "info_weights_nats": NUM,
        "info_activations_nats_forget": NUM,
        "error_test": NUM,
        "error_forget": NUM,
    },
    rest=Opt(SCALAR),
)
PATH_ROW = Obj(
    required={"method": STR, "seed": INT, "alpha": NUM, "forget": NUM, "retain": NUM},
    rest=Opt(SCALAR),
)
RUN = Obj(
    required={
        "config": ANY,  # CONFIG, below
        "seeds": List(INT, min=1),
        "methods": Map(
            Obj(
                required={"mean": Map(Opt(NUM)), "std": Map(Opt(NUM))},
                optional={"per_seed": List(Obj(required={"seed": INT}, rest=Opt(NUM)))},
            ),
            min=1,
        ),
    },
    optional={
        "versions": Map(Opt(SCALAR)),
        "provenance": Obj(
            optional={
                "created": STR,
                "source": Opt(Obj(required={"commit": STR, "dirty": BOOL})),
                "hardware": Opt(Map(Opt(SCALAR))),
                "reconstructed": STR,  # where provenance written after the run came from
            }
        ),
        "task": Opt(Obj(optional={"input_shape": List(INT), "n_forget": Opt(INT)}, rest=ANY)),
        "tradeoff": Opt(List(TRADEOFF_ROW)),
        "activation_path": Opt(List(PATH_ROW)),
        "pca": Opt(
            Obj(
                required={
                    "paths": Obj(required={"D": POINTS, "D_r": POINTS}, rest=POINTS),
                    "points": Map(List(NUM, min=2)),
                },
                optional={"clouds": Map(POINTS), "explained": List(NUM)},
            )
        ),
        "training": Opt(
            List(
                Obj(
                    required={"seed": INT},
                    optional={"original": Opt(TRAINING), "retrain": Opt(TRAINING)},
                )
            )  # fmt: skip
        ),
        "wall_seconds": Opt(NUM),
        "compute": Opt(
            Obj(
                required={"total_seconds": NUM},
                optional={
                    "this_run_seconds": Opt(NUM),
                    "stages_without_recorded_time": Opt(INT),
                    "per_stage_kind_seconds": Map(NUM),
                },
            )
        ),
    },
)
# the report shows the configuration as TOML, which has no null inside a list or a table
CONFIG = Map(Opt(Kind("a TOML value (no null inside a list or table)", lambda v: _toml_value(v))))


def _toml_value(v) -> bool:
    if isinstance(v, list):
        return all(_toml_value(x) for x in v)
    if isinstance(v, dict):
        return all(isinstance(k, str) and _toml_value(x) for k, x in v.items())
    return isinstance(v, str | bool) or _number(v)


def check_results(doc, path: str | Path) -> dict:
    """``doc`` (a run's ``results.json`` read from ``path``) when a report can be rendered
    from it; otherwise :class:`ResultsError` naming the file and the field."""
    try:
        RUN.check(doc, "")
        CONFIG.check(doc["config"], "config")
    except ResultsError as exc:
        raise ResultsError(f"{path}: not a forgetbox results file: {exc}") from None
    return doc


# ------------------------------------------------------------ an evaluation's evaluation.json

CURVE = Obj(
    required={"auc": NUM},
    optional={"auc_ci95": Opt(List(NUM, min=2)), "fpr": List(NUM), "tpr": List(NUM)},
)
KLOM = Obj(required={"median": Opt(NUM), "values": List(Opt(NUM))})
VERSUS = Opt(
    Obj(
        required={"ci95": Opt(List(NUM, min=2)), "examples": INT},
        optional={
            "difference": Opt(NUM),
            "distinguishable": Opt(BOOL),
            "models_and_examples": Obj(
                required={"ci95": Opt(List(NUM, min=2)), "draws": INT},
                optional={"draws_median": NUM},
            ),
        },
    )
)
EVALUATION_METHOD = Obj(
    required={
        "readouts": Map(
            Obj(
                required={
                    "median": Opt(NUM),
                    "meaning": STR,
                    "models_outside": INT,
                    "values": List(Opt(NUM)),
                },
                optional={"margin": NUM, "needed": NUM},
            )
        ),
        "population": Obj(required={"loss": Opt(CURVE)}, optional={"loss_same_class": Opt(CURVE)}),
        "challenge": Obj(
            required={
                "forget_quality": NUM,
                "score": NUM,
                "models_per_side": INT,
                "epsilons": List(Opt(NUM)),
            }
        ),
        "klom": Obj(required={"direction": STR, "forget": KLOM, "retain": KLOM, "val": KLOM}),
        "seconds": List(Opt(NUM)),
    },
    optional={
        "diverged": List(INT),
        "ulira": Opt(
            Obj(
                required={
                    "balanced_accuracy": NUM,
                    "tpr_at_1pct_fpr": NUM,
                    "fpr": List(NUM),
                    "tpr": List(NUM),
                }
            )
        ),
    },
)
EVALUATION = Obj(
    required={
        "kind": STR,
        "protocol": STR,
        "config": Obj(
            required={
                "evaluate": Obj(required={"models": INT}),
                "experiment": Obj(required={"model": STR, "width": NUM, "dataset": STR}),
            }
        ),
        "methods": Map(EVALUATION_METHOD, min=1),
        "against_retrain": Map(Map(VERSUS)),
        "bands": Map(Obj(required={"low": NUM, "high": NUM})),
    },
    optional={
        "ulira_plan": Opt(Map(Opt(SCALAR))),
        "against_paired_retrain": Opt(Map(Map(VERSUS))),
    },
)


def check_evaluation(doc, path: str | Path) -> dict:
    """``doc`` (an ``evaluation.json`` read from ``path``) when its page can be rendered from
    it; otherwise :class:`ResultsError` naming the file and the field."""
    try:
        EVALUATION.check(doc, "")
    except ResultsError as exc:
        raise ResultsError(f"{path}: not a forgetbox evaluation: {exc}") from None
    return doc
