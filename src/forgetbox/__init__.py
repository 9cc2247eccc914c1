"""forgetbox: one-shot forgetting for deep networks.

Implements "Forgetting Outside the Box" (Golatkar, Achille, Soatto, ECCV 2020): NTK scrubbing
(Prop. 2, eq. 10) with Fisher noise (eq. 11), the baselines, and the white-box (eq. 6) and
black-box (eq. 7) information bounds.

The public API is listed in ``__all__``; everything else is importable by its module path
(``forgetbox.ntk``, ``forgetbox.methods``, ``forgetbox.deletion``, ...; see
``docs/architecture.md``). Names are loaded on first use, so ``import forgetbox`` stays light.
"""

from importlib import import_module

from .versions import package_version

__version__ = package_version()

# public name -> module that defines it
_PUBLIC = {
    # deletion: scrub your own model, many requests against one model
    "scrub": "deletion.scrub",
    "ScrubResult": "deletion.scrub",
    "prepare": "deletion.prepare",
    "load_prepared": "deletion.prepared_files",
    "save_prepared": "deletion.prepared_files",
    "PreparedKernel": "ntk.prepared",
    "Cohort": "cohort",
    # the methods
    "forget": "methods.registry",
    "ForgetConfig": "methods.config",
    "ForgetResult": "methods.config",
    "NoiseConfig": "methods.config",
    "Method": "methods.config",
    "NTKOptions": "ntk.options",
    "Linearization": "ntk.options",
    "ntk_direction": "ntk.direction",
    # certified deletion from a linearized network
    "LinearizedModel": "ntk.linearized",
    "CertifyConfig": "methods.certified",
    "train_linearized": "methods.certified",
    # the bounds (eq. 6, 7)
    "white_box": "bounds",
    "black_box": "bounds",
    # the readouts
    "error_and_loss": "readouts.errors",
    "relearn_time": "readouts.relearn",
    "membership_attack": "readouts.membership",
    "l1_distance": "readouts.activations",
    "activation_path": "readouts.activations",
    "pca_paths": "readouts.pca",
    # the experiment
    "ExperimentConfig": "experiment.config",
    "run_experiment": "experiment.run",
    # the ensemble evaluation (U-LiRA, the NeurIPS 2023 score, KLoM)
    "evaluate": "evaluation.run",
    "EvaluateConfig": "evaluation.config",
}

__all__ = ["__version__", *_PUBLIC]


def __getattr__(name: str):
    if name in _PUBLIC:
        return getattr(import_module(f".{_PUBLIC[name]}", __name__), name)
    raise AttributeError(f"module 'forgetbox' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
