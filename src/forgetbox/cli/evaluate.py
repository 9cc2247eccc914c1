"""``forgetbox evaluate``: judge the methods against ensembles of retrained models (U-LiRA,
the NeurIPS 2023 challenge score, KLoM, population attacks, retrain bands)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields, replace

from ..evaluation import EvaluateConfig, evaluate, evaluate_config_from_dict
from .experiment_args import add_experiment_args, experiment_config, read_toml_table

HELP = "judge the methods against retrain ensembles (U-LiRA, challenge score, KLoM)"

# flag -> (EvaluateConfig field, type); the experiment's own flags come from its schema
FLAGS = {
    "--models": ("models", int, "K: originals, references and retrain-row models (8)"),
    "--eval-methods": ("methods", str, "methods to judge, comma-separated (all)"),
    "--split-seed": ("split_seed", int, "the run seed whose split and cohort are judged (0)"),
    "--seed-base": ("seed_base", int, "first training seed of the ensembles (1000)"),
    "--shadow-models": ("shadow_models", int, "U-LiRA shadow models on random halves (16)"),
    "--forget-sets": ("forget_sets", int, "cohorts unlearned per shadow model (2)"),
    "--ulira-methods": ("ulira_methods", str, "methods U-LiRA attacks (default: all judged)"),
    "--folds": ("folds", int, "U-LiRA folds for fitting and testing (2)"),
    "--model-bootstrap": ("model_bootstrap", int, "draws over models vs retrain (200; 0: none)"),
}


def add_parser(sub) -> None:
    """``forgetbox evaluate``: the experiment's flags and the evaluation's own."""
    p = sub.add_parser("evaluate", help=HELP)
    add_experiment_args(p)
    for flag, (_, kind, text) in FLAGS.items():
        p.add_argument(flag, type=kind, default=None, help=text)
    p.add_argument(
        "--relearn", action=argparse.BooleanOptionalAction, default=None, help="re-learn time too"
    )
    p.add_argument(
        "--no-score",
        action="store_true",
        help="train and record every model's outputs (evaluation-inputs.npz), score nothing: "
        "forgetbox report --rescore FOLDER scores them later, e.g. on another machine",
    )
    p.set_defaults(func=command)


def evaluate_config(args: argparse.Namespace) -> EvaluateConfig:
    """``[evaluate]`` of the TOML file, then the flags given."""
    cfg = EvaluateConfig()
    if args.config is not None:
        table = read_toml_table(args.config, "evaluate")
        if table is not None:
            cfg = evaluate_config_from_dict(table, where=f"--config {args.config} [evaluate]")
    updates = {
        name: getattr(args, flag[2:].replace("-", "_")) for flag, (name, _, _) in FLAGS.items()
    }
    updates["relearn"] = args.relearn
    updates = {k: v for k, v in updates.items() if v is not None}
    known = {f.name for f in fields(EvaluateConfig)}
    return replace(cfg, **{k: v for k, v in updates.items() if k in known})


def _g(x: float | None) -> str:
    return "not computable" if x is None else f"{x:.3g}"


def command(args: argparse.Namespace) -> int:
    """Run the evaluation and print one line per method."""
    exp = experiment_config(args)
    cfg = evaluate_config(args)
    results = evaluate(exp, cfg, log=lambda s: print(s, file=sys.stderr), score=not args.no_score)
    if args.no_score:
        print(f"unscored: forgetbox report --rescore {exp.out} scores it")
        return 0
    for m, b in results["methods"].items():
        u, c = b.get("ulira"), b["challenge"]
        print(
            f"{m:<11} challenge score {c['score']:.3f} (F {c['forget_quality']:.3f})"
            f"  KLoM D_f median {_g(b['klom']['forget']['median'])}"
            + (f"  U-LiRA balanced accuracy {u['balanced_accuracy']:.3f}" if u else "")
        )
    print(f"\nevaluation.json and evaluation.html in {exp.out}")
    return 0
