"""``forgetbox report``: re-render a run's figures, report and summary from its results.json
(or an evaluation's from its evaluation.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiment.rerender import rerender
from ..report.evaluation_page import rerender as rerender_evaluation

HELP = "re-render a run folder's figures and report from its results.json or evaluation.json"


def add_parser(sub) -> None:
    """``forgetbox report FOLDER...``."""
    p = sub.add_parser("report", help=HELP)
    p.add_argument("folders", nargs="+", type=Path, help="run folders (each with results.json)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Re-render each folder (a run's results.json or an evaluation's evaluation.json)."""
    for folder in args.folders:
        if (folder / "evaluation.json").is_file() and not (folder / "results.json").is_file():
            rerender_evaluation(folder)
            print(f"re-rendered {folder / 'evaluation.html'}")
        else:
            rerender(folder)
            print(f"re-rendered {folder / 'report.html'}")
    return 0
