"""``forgetbox prepare``: factor the kernel of a trained model's data once, for fast requests."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..deletion.requests import PrepareRequest
from ..deletion.serve import serve_prepare
from ..methods import ForgetConfig
from ..ntk import Linearization, NTKOptions
from .scrub import add_model_args, add_model_options, model_files
from .settings_flags import add_settings_flags, stated_settings

HELP = "factor the kernel of a trained model's data once, for fast requests"


def add_parser(sub) -> None:
    """``forgetbox prepare``: the model, the data, and the flags of the linearization and the
    NTK options (generated from their classes; a prepared state linearizes at w(D))."""
    p = sub.add_parser("prepare", help=HELP)
    add_model_args(p)
    add_settings_flags(p, Linearization, exclude=("around",))
    add_settings_flags(p, NTKOptions)
    add_model_options(p)
    p.add_argument(
        "--ledger-key-file",
        type=Path,
        help="the key of the ledger it will serve: the manifest is authenticated with it",
    )
    p.add_argument(
        "--certify",
        action="store_true",
        help="the kernel of a linearized model at its w0, for certified requests "
        "(forgetbox scrub --certify --prepared; docs/certified.md)",
    )
    p.add_argument("--out", required=True, type=Path, help="folder for the prepared state")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Prepare the state and write it to ``--out``."""
    lin = Linearization(**stated_settings(args, Linearization))
    opts = NTKOptions(**stated_settings(args, NTKOptions))
    req = PrepareRequest(
        files=model_files(args),
        data=args.data,
        out=args.out,
        config=ForgetConfig(linearization=lin, ntk=opts),
        device=args.device,
        trainable=args.trainable,
        ledger_key_file=args.ledger_key_file,
        certified=args.certify,
    )
    serve_prepare(req)
    return 0
