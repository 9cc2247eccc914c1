"""Readout functions of section 5.4 and Figures 1, 2 and 4, as pure functions.

- :func:`error_and_loss`: top-1 error (fraction) and mean cross-entropy (nats).
- :func:`relearn_time`: epochs of SGD on D until the D_f loss falls below a threshold.
- :func:`membership_attack`: black-box membership inference from output statistics (SVM, RBF).
- :func:`l1_distance` / :func:`activation_path`: closeness of softmax outputs to a reference.
- :func:`pca_paths`: training paths and scrubbed weights on their top principal components.
"""

from .activations import activation_path, l1_distance
from .errors import error_and_loss
from .membership import AttackFeature, AttackResult, attack_feature, membership_attack
from .pca import PCAResult, pca_paths
from .relearn import RelearnResult, relearn_time

__all__ = [
    "AttackFeature",
    "AttackResult",
    "PCAResult",
    "RelearnResult",
    "activation_path",
    "attack_feature",
    "error_and_loss",
    "l1_distance",
    "membership_attack",
    "pca_paths",
    "relearn_time",
]
