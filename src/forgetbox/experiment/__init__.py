"""The paper's experiment: pre-train -> fine-tune -> forget -> read out, over seeds.

:mod:`.config`, :mod:`.schema` and :mod:`.profiles` (what a run depends on), :mod:`.cache` (the
stage cache), :mod:`.tasks` (data and cohorts per seed), :mod:`.stages` (training and methods,
cached), :mod:`.seed_run` (one seed's models, shared NTK step and readout keys), :mod:`.rows`
(readouts of one scrubbed model, the trade-off grid), :mod:`.run` (the per-seed run,
aggregation, publishing), :mod:`.claims`, :mod:`.claim_checks` and :mod:`.claim_bounds` (the
verdicts), :mod:`.evidence` (resolutions, spreads and margins the verdicts rest on),
:mod:`.cross_check` (the verdicts against a committed ensemble evaluation of the same setup),
:mod:`.rerender` (a run folder judged and rendered again). Pages and figures:
:mod:`forgetbox.report`.
"""

from .cache import Cache
from .config import ExperimentConfig, config_from_dict
from .profiles import PROFILES, Profile
from .rows import READOUT_KEYS, readout_row, tradeoff_rows
from .run import aggregate, publish, run_experiment, run_seed
from .seed_run import SeedRun
from .stages import TRAJECTORY_BYTES, Stages, record_stride
from .tasks import Task, build_task, load_pretrain_set

__all__ = [
    "PROFILES",
    "READOUT_KEYS",
    "TRAJECTORY_BYTES",
    "Cache",
    "ExperimentConfig",
    "Profile",
    "SeedRun",
    "Stages",
    "Task",
    "aggregate",
    "build_task",
    "config_from_dict",
    "load_pretrain_set",
    "publish",
    "readout_row",
    "record_stride",
    "run_experiment",
    "run_seed",
    "tradeoff_rows",
]
