"""``forgetbox report``: re-render a run's figures, report and summary from its results.json."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiment.report import rerender

HELP = "re-render a run folder's figures and report.html from its results.json"


def add_parser(sub) -> None:
    p = sub.add_parser("report", help=HELP)
    p.add_argument("folders", nargs="+", type=Path, help="run folders (each with results.json)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    for folder in args.folders:
        rerender(folder)
        print(f"re-rendered {folder / 'report.html'}")
    return 0
