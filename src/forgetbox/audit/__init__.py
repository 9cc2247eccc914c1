"""Judging forgetting as the field now does, from ensembles of models (pure functions over
logits and confidences; nothing here trains a model):

- :mod:`.confidence`: the logit-scaled confidence log p_y - log sum_{j!=y} p_j (the margin).
- :mod:`.roc`: ROC curves, AUC, TPR at a low FPR.
- :mod:`.population`: loss- and confidence-threshold membership attacks (one threshold for
  every example).
- :mod:`.challenge`: the NeurIPS 2023 Machine Unlearning Challenge's forget-quality score
  (per-example epsilon, bucketed points, utility adjustment), as its official scoring code
  defines it.
- :mod:`.ulira`: U-LiRA (Hayes et al. 2024), the per-example likelihood-ratio attack on
  unlearning, on shadow models in which each example was trained on and unlearned, or never
  seen.
- :mod:`.klom`: KLoM (Georgiev et al. 2024), the binned KL divergence between the margins of
  unlearned and retrained ensembles, per example.
- :mod:`.band`: the retrain band of a readout as quantiles of a retrained ensemble, and which
  side of it a method falls on and what that side means.
- :mod:`.certificate`: whether an attack's rates stay inside an (ε, δ) certificate.
"""

from .band import EDGE, Band, band_of, edge_margin, judge, meaning_of, resolution_of, side_of
from .certificate import MIN_CERTIFICATE_DRAWS, within_certificate
from .challenge import ChallengeScore, challenge_score, example_epsilons, forget_quality
from .confidence import challenge_confidence, margin
from .klom import binned_kl, klom
from .population import PopulationAttack, auc_interval, same_class_negatives, threshold_attack
from .roc import Roc, roc
from .ulira import ULiRA, ulira

__all__ = [
    "Band",
    "ChallengeScore",
    "PopulationAttack",
    "Roc",
    "ULiRA",
    "auc_interval",
    "band_of",
    "meaning_of",
    "EDGE",
    "edge_margin",
    "judge",
    "resolution_of",
    "binned_kl",
    "challenge_confidence",
    "challenge_score",
    "example_epsilons",
    "forget_quality",
    "klom",
    "margin",
    "roc",
    "same_class_negatives",
    "side_of",
    "threshold_attack",
    "ulira",
    "within_certificate",
    "MIN_CERTIFICATE_DRAWS",
]
