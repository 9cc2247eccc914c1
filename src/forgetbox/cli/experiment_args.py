"""Flags shared by ``forgetbox run`` and ``forgetbox train``, and the configuration they make."""

from __future__ import annotations

import argparse
import tomllib
from dataclasses import fields, replace
from pathlib import Path

from ..experiment.config import ExperimentConfig, config_from_dict


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


def add_experiment_args(p: argparse.ArgumentParser) -> None:
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


_FLAGS = (
    "dataset",
    "pretrain_dataset",
    "model",
    "width",
    "profile",
    "data_dir",
    "download",
    "device",
    "seeds",
    "methods",
    "alpha",
    "num_to_forget",
    "forget_class",
    "train_per_class",
    "solver",
    "finetune_schedule",
    "out",
    "cache_dir",
)


def experiment_config(args: argparse.Namespace) -> ExperimentConfig:
    """The run's configuration: the TOML file's settings, then the flags given."""
    cfg = ExperimentConfig()
    if args.config is not None:
        try:
            doc = tomllib.loads(args.config.read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise SystemExit(f"error: cannot read config {args.config}: {exc}") from exc
        cfg = config_from_dict(doc.get("experiment", doc))
    updates = {}
    for flag in _FLAGS:
        v = getattr(args, flag, None)
        if flag == "num_to_forget":
            if flag in vars(args):
                updates[flag] = v
        elif v is not None:
            updates[flag] = v
    valid = {f.name for f in fields(ExperimentConfig)}
    return replace(cfg, **{k: v for k, v in updates.items() if k in valid})
