"""Forgetting methods: the scrubbers behind :func:`forget` and the Fisher noise.

:mod:`.config` (names, :class:`ForgetConfig`, :class:`ForgetResult`), :mod:`.fisher` (the
diagonal Fisher and its noise), :mod:`.ntk_scrub` (the NTK step and the trapezium-rescaled
point), :mod:`.newton` (eq. 12), :mod:`.registry` (the table of methods and :func:`forget`).
"""

from .config import (
    DEFAULT_ALPHA,
    FINETUNE_ANCHORS,
    METHODS,
    NOISE_AVERAGES,
    NOISY,
    NTK_METHODS,
    PRESETS,
    TRAPEZIUM_LEGS,
    VERSION,
    ForgetConfig,
    ForgetResult,
    Method,
    NoiseConfig,
)
from .fisher import (
    FisherMemo,
    fisher_of,
    method_variance,
    noise_variance,
    noisy_weights,
    variance_at,
)
from .fisher_diag import fisher_diagonal
from .newton import newton_step
from .ntk_scrub import check_trapezium_leg, ntk_point, ntk_step
from .registry import METHOD_TABLE, forget

__all__ = [
    "DEFAULT_ALPHA",
    "FINETUNE_ANCHORS",
    "METHODS",
    "NOISE_AVERAGES",
    "METHOD_TABLE",
    "NOISY",
    "NTK_METHODS",
    "PRESETS",
    "TRAPEZIUM_LEGS",
    "VERSION",
    "ForgetConfig",
    "FisherMemo",
    "ForgetResult",
    "Method",
    "NoiseConfig",
    "check_trapezium_leg",
    "fisher_diagonal",
    "fisher_of",
    "forget",
    "method_variance",
    "newton_step",
    "noise_variance",
    "noisy_weights",
    "ntk_point",
    "ntk_step",
    "variance_at",
]
