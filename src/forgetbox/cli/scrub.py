"""``forgetbox scrub``: scrub a cohort from your own trained model."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..deletion.files import ModelFiles
from ..deletion.requests import ScrubRequest
from ..deletion.serve import serve_scrub
from ..methods import Method
from .settings_flags import add_forget_flags, forget_config

HELP = "scrub a cohort from your own trained model"


def add_model_args(p: argparse.ArgumentParser) -> None:
    """The flags that locate a trained model and its data (shared with ``prepare``)."""
    p.add_argument("--model", required=True, help="built-in name or module:factory")
    p.add_argument("--weights", required=True, type=Path, help="trained weights (.safetensors/.pt)")
    p.add_argument("--pretrained", required=True, type=Path, help="w0 (.safetensors/.pt)")
    p.add_argument("--data", required=True, type=Path, help=".npz of arrays or an image folder")


def add_model_options(p: argparse.ArgumentParser) -> None:
    """``--num-classes``, ``--width``, ``--device`` and ``--trainable`` (shared with
    ``prepare``)."""
    p.add_argument("--num-classes", type=int, help="model outputs (default: from the weights)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (built-in models)")
    p.add_argument("--device", default="cpu", help="cpu | cuda[:N] (the data stays on the host)")
    p.add_argument(
        "--trainable",
        help="parameters fine-tuning trained, names or patterns (e.g. 'layer4.*,fc.*'); "
        "default: all",
    )


def model_files(args: argparse.Namespace) -> ModelFiles:
    """Where the trained model, w0 and the architecture come from."""
    return ModelFiles(args.model, args.weights, args.pretrained, args.num_classes, args.width)


def add_parser(sub) -> None:
    """``forgetbox scrub`` and its flags (the settings' flags generated from their classes)."""
    p = sub.add_parser("scrub", help=HELP)
    add_model_args(p)
    p.add_argument("--forget", type=Path, help="text file of training-set indices to forget")
    p.add_argument("--forget-class", type=int, help="forget random samples of this class")
    p.add_argument("--num-to-forget", type=int, help="with --forget-class (default: whole class)")
    p.add_argument(
        "--method",
        choices=Method.values(),
        help=f"default ntk_fisher, with --certify certified ({Method.help_text()})",
    )
    p.add_argument(
        "--certify",
        action="store_true",
        help="a certified deletion from a linearized model: --epsilon/--delta hold against "
        "exact retraining (docs/certified.md)",
    )
    p.add_argument(
        "--mu-budget",
        type=float,
        help="ledger: mark a retrain due once the certified releases compose past this mu",
    )
    add_forget_flags(p)
    add_model_options(p)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", type=Path, help="weights of a model trained on D_r alone")
    p.add_argument(
        "--verify-retrain",
        action="store_true",
        help="retrain on D_r (same recipe) and measure the bounds against it",
    )
    p.add_argument(
        "--retrain-threshold-nats",
        type=float,
        help="ledger: flag a full retrain once the running total exceeds this",
    )
    p.add_argument(
        "--prepared",
        type=Path,
        help="folder written by `forgetbox prepare` for these --weights and --data: the NTK "
        "step is answered from it (every request from the original weights)",
    )
    p.add_argument(
        "--restart-from-original",
        action="store_true",
        help="--weights are the original model: scrub every cohort so far from it (recorded)",
    )
    p.add_argument(
        "--recompute-batchnorm",
        action="store_true",
        help="recompute the scrubbed model's BatchNorm running statistics on D_r",
    )
    p.add_argument(
        "--ledger-key-file",
        type=Path,
        help="a secret key: the ledger's entries, head and receipts are also authenticated "
        "with HMAC-SHA256",
    )
    p.add_argument(
        "--data-appended",
        action="store_true",
        help="--data holds the recorded data with samples added after it (recorded; refused "
        "otherwise)",
    )
    p.add_argument("--out", required=True, type=Path)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Serve one deletion request (nothing is written unless it succeeds)."""
    config, stated = forget_config(args)
    if args.certify and args.method not in (None, Method.CERTIFIED.value):
        raise ValueError(f"--certify asks for the certified method, not --method {args.method}")
    method = Method.CERTIFIED if args.certify else Method(args.method or Method.NTK_FISHER)
    req = ScrubRequest(
        files=model_files(args),
        data=args.data,
        out=args.out,
        config=config,
        stated=stated,
        forget=args.forget,
        forget_class=args.forget_class,
        num_to_forget=args.num_to_forget,
        method=method,
        mu_budget=args.mu_budget,
        seed=args.seed,
        reference=args.reference,
        verify_retrain=args.verify_retrain,
        retrain_threshold_nats=args.retrain_threshold_nats,
        prepared=args.prepared,
        restart_from_original=args.restart_from_original,
        recompute_batchnorm=args.recompute_batchnorm,
        trainable=args.trainable,
        device=args.device,
        ledger_key_file=args.ledger_key_file,
        data_appended=args.data_appended,
    )
    serve_scrub(req)
    return 0
