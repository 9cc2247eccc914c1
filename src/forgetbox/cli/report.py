"""``forgetbox report``: re-render a run's figures, report and summary from its results.json
(or an evaluation's from its evaluation.json)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..experiment.rerender import read_results
from ..experiment.rerender import render as render_run
from ..report.evaluation_page import read_evaluation
from ..report.evaluation_page import render as render_evaluation

HELP = "re-render a run folder's figures and report from its results.json or evaluation.json"


def add_parser(sub) -> None:
    """``forgetbox report FOLDER...``."""
    p = sub.add_parser("report", help=HELP)
    p.add_argument("folders", nargs="+", type=Path, help="run folders (each with results.json)")
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Re-render each folder (a run's results.json or an evaluation's evaluation.json). Every
    folder's file is read and checked before anything is written."""
    jobs = []
    for folder in args.folders:
        if (folder / "evaluation.json").is_file() and not (folder / "results.json").is_file():
            jobs.append((folder, render_evaluation, read_evaluation(folder), "evaluation.html"))
        else:
            jobs.append((folder, render_run, read_results(folder), "report.html"))
    for folder, render, results, page in jobs:
        render(folder, results)
        print(f"re-rendered {folder / page}")
    return 0
