"""``forgetbox run``: the paper's experiment, all methods and readouts, a report."""

from __future__ import annotations

import argparse
import sys

from ..experiment.run import run_experiment
from ..report.outputs import summary_table
from .experiment_args import add_experiment_args, experiment_config

HELP = "the paper's experiment, all methods and readouts, a report"


def add_parser(sub) -> None:
    """``forgetbox run`` and the experiment's flags."""
    p = sub.add_parser("run", help=HELP)
    add_experiment_args(p)
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Run (or resume) the experiment and print its summary table."""
    cfg = experiment_config(args)
    results = run_experiment(cfg, log=lambda s: print(s, file=sys.stderr))
    print(summary_table(results))
    print(f"\nresults, figures and report.html in {cfg.out}")
    return 0
