"""``forgetbox train``: pre-train and fine-tune on D and D_r, print the three models' errors
(``--linearized``: the linearized network trained exactly, with its gradient norm)."""

from __future__ import annotations

import argparse
import sys

from ..experiment.run import train_only
from .experiment_args import add_experiment_args, experiment_config

HELP = "pre-train, fine-tune on D and D_r, print their errors"


def add_parser(sub) -> None:
    """``forgetbox train`` and the experiment's flags."""
    p = sub.add_parser("train", help=HELP)
    add_experiment_args(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Pre-train and fine-tune (cached) and print the three models' errors per seed."""
    rows = train_only(experiment_config(args), log=lambda s: print(s, file=sys.stderr))
    linearized = any("grad_norm" in r for r in rows)
    steps = "Newton" if linearized else "epochs"
    head = f"{'seed':<5}{'model':<10}{'err D_r':>9}{'err D_f':>9}{'err test':>9}{steps:>8}"
    print(head + (f"{'|grad L|':>11}" if linearized else ""))
    for r in rows:
        errs = (r["error_retain"], r["error_forget"], r["error_test"])
        grad = f"{r['grad_norm']:>11.2e}" if "grad_norm" in r else ""
        line = f"{r['seed']:<5}{r['model']:<10}" + "".join(f"{e:>9.3f}" for e in errs)
        print(line + f"{r['epochs']:>8}" + grad)
    return 0
