"""Forgetting methods: the scrubbers behind :func:`forget` and the Fisher noise.

:mod:`.config` (names, :class:`ForgetConfig`, :class:`ForgetResult`), :mod:`.fisher` (the
diagonal Fisher and its noise), :mod:`.ntk_scrub` (the NTK step and the trapezium-rescaled
point), :mod:`.newton` (eq. 12), :mod:`.registry` (the table of methods and :func:`forget`);
the baselines of other papers: :mod:`.baseline_config` (their settings), :mod:`.unlearning`
(what they share), :mod:`.neggrad`, :mod:`.scrub_teacher`, :mod:`.salun`, :mod:`.l1_sparse`.
"""

from .baseline_config import (
    DecayAnchor,
    L1SparseConfig,
    NegGradConfig,
    SalUnConfig,
    ScrubConfig,
    ScrubOptimizer,
)
from .certified import (
    CertifiedRelease,
    CertifyConfig,
    RetrainDueError,
    certified_release,
    noisy_release,
    train_linearized,
)
from .certified_state import CertifiedState, prepare_certified
from .config import (
    BASELINE_METHODS,
    DEFAULT_ALPHA,
    LINEARIZED_METHODS,
    METHODS,
    NOISY,
    NTK_METHODS,
    PAPER_METHODS,
    PRESETS,
    VERSION,
    FinetuneAnchor,
    ForgetConfig,
    ForgetResult,
    Method,
    NoiseAverage,
    NoiseConfig,
    Preset,
    TrapeziumLeg,
    resolve_config,
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
from .ntk_scrub import ntk_point, ntk_step
from .registry import METHOD_TABLE, MethodDivergedError, forget

__all__ = [
    "MethodDivergedError",
    "BASELINE_METHODS",
    "DEFAULT_ALPHA",
    "DecayAnchor",
    "L1SparseConfig",
    "NegGradConfig",
    "SalUnConfig",
    "ScrubConfig",
    "ScrubOptimizer",
    "CertifiedRelease",
    "CertifiedState",
    "prepare_certified",
    "CertifyConfig",
    "RetrainDueError",
    "certified_release",
    "noisy_release",
    "train_linearized",
    "LINEARIZED_METHODS",
    "METHODS",
    "METHOD_TABLE",
    "PAPER_METHODS",
    "NOISY",
    "NTK_METHODS",
    "PRESETS",
    "VERSION",
    "FinetuneAnchor",
    "ForgetConfig",
    "FisherMemo",
    "ForgetResult",
    "Method",
    "NoiseAverage",
    "NoiseConfig",
    "Preset",
    "TrapeziumLeg",
    "fisher_diagonal",
    "fisher_of",
    "forget",
    "method_variance",
    "newton_step",
    "noise_variance",
    "noisy_weights",
    "ntk_point",
    "ntk_step",
    "resolve_config",
    "variance_at",
]
