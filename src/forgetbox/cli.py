"""Command line: ``forgetbox run`` (the paper's experiment), ``forgetbox train`` (pre-train and
fine-tune, print the three models' errors), ``forgetbox scrub`` (scrub your own model).

The CLI only parses arguments and calls the library.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from dataclasses import fields, replace
from pathlib import Path

from . import __version__


def _csv_ints(s: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in s.split(",") if v.strip())
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {s!r}") from exc


def _csv(s: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in s.split(",") if v.strip())


def _forget_count(s: str) -> int | None:
    if s in ("all", "class"):
        return None
    try:
        return int(s)
    except ValueError as exc:
        raise argparse.ArgumentTypeError("--num-to-forget takes an integer or 'all'") from exc


def _add_experiment_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, help="TOML file of experiment settings (flags override)")
    p.add_argument(
        "--dataset", help="digits | cifar10 | cifar10-npz | npz:PATH | tinyimagenet | lacuna"
    )
    p.add_argument(
        "--pretrain-dataset", help="digits59 | cifar100 | tinyimagenet32 | cifar10-59 | ..."
    )
    p.add_argument("--model", help="allcnn | resnet18 | smallcnn | mlp | linear | module:factory")
    p.add_argument("--width", type=float, help="width multiplier of the model")
    p.add_argument("--profile", help="quick | default | cpu | paper")
    p.add_argument("--data-dir", help="folder with data archives / npz files")
    p.add_argument("--download", action="store_true", default=None, help="download CIFAR archives")
    p.add_argument("--device", help="cpu | cuda")
    p.add_argument("--seeds", type=_csv_ints, help="comma-separated seeds, e.g. 0,1,2")
    p.add_argument("--methods", type=_csv, help="comma-separated subset of the methods")
    p.add_argument("--alpha", type=float, help="noise scale for fisher and ntk_fisher")
    p.add_argument(
        "--num-to-forget",
        type=_forget_count,
        default=argparse.SUPPRESS,
        help="size of the cohort (or 'all' for the whole class)",
    )
    p.add_argument("--forget-class", type=int, help="class of the cohort")
    p.add_argument("--train-per-class", type=int, help="training images per class")
    p.add_argument("--solver", help="auto | dense | cg")
    p.add_argument("--finetune-schedule", help="constant | cosine learning rate while fine-tuning")
    p.add_argument("--out", help="run folder (default runs/default)")
    p.add_argument("--cache-dir", help="stage cache (default <out>/cache)")


_FLAG_TO_FIELD = {
    "dataset": "dataset",
    "pretrain_dataset": "pretrain_dataset",
    "model": "model",
    "width": "width",
    "profile": "profile",
    "data_dir": "data_dir",
    "download": "download",
    "device": "device",
    "seeds": "seeds",
    "methods": "methods",
    "alpha": "alpha",
    "num_to_forget": "num_to_forget",
    "forget_class": "forget_class",
    "train_per_class": "train_per_class",
    "solver": "solver",
    "finetune_schedule": "finetune_schedule",
    "out": "out",
    "cache_dir": "cache_dir",
}


def experiment_config(args: argparse.Namespace):
    from .experiment import ExperimentConfig, config_from_dict

    cfg = ExperimentConfig()
    if args.config is not None:
        try:
            doc = tomllib.loads(args.config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SystemExit(f"error: cannot read config {args.config}: {exc}") from exc
        cfg = config_from_dict(doc.get("experiment", doc))
    updates = {}
    for flag, fname in _FLAG_TO_FIELD.items():
        v = getattr(args, flag, None)
        if flag == "num_to_forget":
            if flag in vars(args):
                updates[fname] = v
        elif v is not None:
            updates[fname] = v
    valid = {f.name for f in fields(ExperimentConfig)}
    return replace(cfg, **{k: v for k, v in updates.items() if k in valid})


def cmd_run(args: argparse.Namespace) -> int:
    from .experiment import run_experiment
    from .report import summary_table

    cfg = experiment_config(args)
    results = run_experiment(cfg, log=lambda s: print(s, file=sys.stderr))
    print(summary_table(results))
    print(f"\nresults, figures and report.html in {cfg.out}")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from . import models
    from .experiment import Cache, Stages, build_task
    from .readouts import error_and_loss

    cfg = experiment_config(args).resolved()
    stages = Stages(
        cfg,
        Cache(Path(cfg.cache_dir or Path(cfg.out) / "cache")),
        lambda s: print(s, file=sys.stderr),
    )
    print(f"{'seed':<5}{'model':<10}{'err D_r':>9}{'err D_f':>9}{'err test':>9}{'epochs':>8}")
    for seed in cfg.seeds:
        task = build_task(cfg, seed, stages.stats())
        pre = stages.pretrained(task.split.num_classes, task.split.input_shape)
        w0 = models.with_new_head(pre, task.split.num_classes, seed=seed)
        for name, (model, info) in (
            ("w0", (w0, {"epochs": 0})),
            ("original", stages.trained(task, w0, seed, "original")),
            ("retrain", stages.trained(task, w0, seed, "retrain")),
        ):
            errs = [error_and_loss(model, *s)[0] for s in (task.retain, task.forget, task.test)]
            print(
                f"{seed:<5}{name:<10}"
                + "".join(f"{e:>9.3f}" for e in errs)
                + f"{info['epochs']:>8}"
            )
    return 0


def cmd_scrub(args: argparse.Namespace) -> int:
    from .api import scrub_command

    return scrub_command(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forgetbox",
        description="One-shot forgetting for deep networks (NTK scrubbing, Fisher noise, "
        "information bounds).",
    )
    parser.add_argument("--version", action="version", version=f"forgetbox {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="the paper's experiment, all methods and readouts, a report")
    _add_experiment_args(run)
    run.set_defaults(func=cmd_run)
    train = sub.add_parser("train", help="pre-train, fine-tune on D and D_r, print their errors")
    _add_experiment_args(train)
    train.set_defaults(func=cmd_train)
    scrub = sub.add_parser("scrub", help="scrub a cohort from your own trained model")
    from .api import add_scrub_args

    add_scrub_args(scrub)
    scrub.set_defaults(func=cmd_scrub)
    prep = sub.add_parser(
        "prepare", help="factor the kernel of a trained model's data once, for fast requests"
    )
    from .api import add_prepare_args, prepare_command

    add_prepare_args(prep)
    prep.set_defaults(func=prepare_command)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ValueError, MemoryError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
