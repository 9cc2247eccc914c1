"""``forgetbox evaluate``: every method judged against ensembles of retrained models with the
per-example attacks and scores of the field (:mod:`forgetbox.audit`).

:mod:`.config` (what an evaluation depends on), :mod:`.ensembles` (K originals, K references,
every method on every original, the retrain row), :mod:`.shadows` (U-LiRA's shadow models),
:mod:`.scores` (every score from logits and confidences), :mod:`.run` (:func:`evaluate`),
:mod:`.figures` and :mod:`.report`.
"""

from .config import EvaluateConfig, evaluate_config_from_dict
from .run import evaluate

__all__ = ["EvaluateConfig", "evaluate", "evaluate_config_from_dict"]
