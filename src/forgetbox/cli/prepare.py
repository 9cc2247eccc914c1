"""``forgetbox prepare``: factor the kernel of a trained model's data once, for fast requests."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..deletion.requests import PrepareRequest
from ..deletion.serve import serve_prepare
from .scrub import add_model_args, add_model_options, model_files

HELP = "factor the kernel of a trained model's data once, for fast requests"


def add_parser(sub) -> None:
    p = sub.add_parser("prepare", help=HELP)
    add_model_args(p)
    p.add_argument("--kernel", default="exact", choices=["exact", "pseudo"])
    p.add_argument(
        "--solver",
        default="auto",
        choices=["auto", "dense", "param"],
        help="kernel space (dense) or parameter space (param; auto: the smaller)",
    )
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--loss", default="ce", choices=["ce", "mse"])
    p.add_argument("--memory-budget-gb", type=float, help="memory budget of the kernel")
    add_model_options(p)
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument(
        "--trainable", help="parameters fine-tuning trained, names or patterns (default: all)"
    )
    p.add_argument(
        "--dtype", choices=["float32", "float64"], help="precision (default: the weights')"
    )
    p.add_argument("--out", required=True, type=Path, help="folder for the prepared state")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    req = PrepareRequest(
        files=model_files(args),
        data=args.data,
        out=args.out,
        kernel=args.kernel,
        solver=args.solver,
        weight_decay=args.weight_decay,
        loss=args.loss,
        memory_budget_gb=args.memory_budget_gb,
        device=args.device,
        trainable=args.trainable,
        dtype=args.dtype,
    )
    serve_prepare(req)
    return 0
