"""What an ensemble evaluation depends on (``[evaluate]`` in a run's TOML, flags of
``forgetbox evaluate``), checked when made."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

from ..methods import METHODS

DEFAULT_METHODS = ("original", "finetune", "fisher", "ntk", "ntk_fisher", "newton", "retrain")
PAIRED_RETRAIN = "retrain_paired"
"""A linearized evaluation's second retrain row: reference k's own exact retrain released with
fresh noise. It shares its seed with reference k (the new head's initialisation, hence the
linearization point; linearized training is an exact full-batch solve, with no data order), as
each method's model k does, where the ``retrain`` row uses other seeds: against it the seeds are
no longer a difference."""


@dataclass(frozen=True)
class EvaluateConfig:
    """The ensembles and attacks of ``forgetbox evaluate``.

    ``models``: K originals trained on D and K reference models trained on D_r, each with its
    own seed (data order and head initialisation; the pre-trained backbone is shared), and K
    more retrained models as the ``retrain`` method's row (the sanity check: a perfect method).
    ``methods``: applied to every original (default :data:`DEFAULT_METHODS`, or with a
    linearized run :data:`forgetbox.methods.LINEARIZED_METHODS`). ``split_seed``: the run seed
    whose split and cohort are evaluated. ``seed_base``: the first training seed of the
    ensembles (K consecutive seeds for originals and references, the next K for the retrain
    row).
    U-LiRA: ``shadow_models`` trained on random halves of D, each unlearning ``forget_sets``
    cohorts drawn from its half (from the forgotten class, at most half of that class's images
    in the half), with ``ulira_methods`` (default: ``methods``); models are split into
    ``folds`` for fitting and testing. ``relearn``: also measure re-learn time (slow).
    ``model_bootstrap``: draws of the two-level bootstrap (models, then examples) of the
    challenge points and KLoM against the retrain row (0: none; the rows are then judged by the
    bootstrap over examples alone, which holds the models fixed).
    A linearized run adds :data:`PAIRED_RETRAIN` to ``methods`` (not attacked by U-LiRA, whose
    shadow retrains already share their originals' seeds).
    """

    models: int = 8
    methods: tuple[str, ...] | None = None  # default: DEFAULT_METHODS, or a linearized run's
    split_seed: int = 0
    seed_base: int = 1000
    shadow_models: int = 16
    forget_sets: int = 2
    ulira_methods: tuple[str, ...] | None = None
    folds: int = 2
    relearn: bool = False
    model_bootstrap: int = 200

    def __post_init__(self) -> None:
        for name in (
            "models",
            "shadow_models",
            "forget_sets",
            "folds",
            "split_seed",
            "seed_base",
            "model_bootstrap",
        ):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int):
                raise ValueError(f"evaluate.{name} must be an integer; got {v!r}")
        if self.models < 3:
            raise ValueError(
                f"evaluate.models must be >= 3 (the challenge score needs it); got {self.models}"
            )
        if self.model_bootstrap < 0:
            raise ValueError(f"evaluate.model_bootstrap must be >= 0; got {self.model_bootstrap}")
        if self.shadow_models < 0 or self.forget_sets < 1:
            raise ValueError("evaluate.shadow_models must be >= 0 and forget_sets >= 1")
        if self.shadow_models and not 2 <= self.folds <= self.shadow_models:
            raise ValueError(f"evaluate.folds must lie in [2, shadow_models]; got {self.folds}")
        if not isinstance(self.relearn, bool):
            raise ValueError(f"evaluate.relearn must be true or false; got {self.relearn!r}")
        if self.methods is not None:
            object.__setattr__(self, "methods", _methods(self.methods, "methods"))
        if self.ulira_methods is not None:
            object.__setattr__(self, "ulira_methods", _methods(self.ulira_methods, "ulira_methods"))

    @property
    def attacked_methods(self) -> tuple[str, ...]:
        """The methods U-LiRA attacks."""
        chosen = self.ulira_methods if self.ulira_methods is not None else self.methods or ()
        return tuple(m for m in chosen if m != PAIRED_RETRAIN)

    def as_dict(self) -> dict:
        """Every field as plain data (JSON, cache keys)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


def _methods(value, name: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = tuple(v.strip() for v in value.split(",") if v.strip())
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise ValueError(f"evaluate.{name} must be a list of method names; got {value!r}")
    known = (*METHODS, PAIRED_RETRAIN)
    bad = [v for v in value if v not in known]
    if bad:
        raise ValueError(f"evaluate.{name}: unknown methods {bad}; choose from {', '.join(known)}")
    if not value:
        raise ValueError(f"evaluate.{name} is empty")
    return tuple(dict.fromkeys(value))


def evaluate_config_from_dict(d: dict, where: str = "[evaluate]") -> EvaluateConfig:
    """An :class:`EvaluateConfig` from a TOML table; every key known, every value checked."""
    if not isinstance(d, dict):
        raise ValueError(f"{where}: expected a table of settings")
    unknown = set(d) - {f.name for f in fields(EvaluateConfig)}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    try:
        return EvaluateConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc}") from exc
