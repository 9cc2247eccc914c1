"""``forgetbox report``: re-render a run's figures, report and summary from its results.json
(or an evaluation's from its evaluation.json; with ``--rescore``, an evaluation's scores computed
again from its evaluation-inputs.npz)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..evaluation import rescore
from ..experiment.rerender import read_results
from ..experiment.rerender import render as render_run
from ..report.evaluation_page import read_evaluation
from ..report.evaluation_page import render as render_evaluation

HELP = "re-render a run folder's figures and report from its results.json or evaluation.json"


def add_parser(sub) -> None:
    """``forgetbox report FOLDER...``."""
    p = sub.add_parser("report", help=HELP)
    p.add_argument(
        "folders",
        nargs="+",
        type=Path,
        help="run or evaluation folders (results.json, evaluation.json)",
    )
    p.add_argument(
        "--rescore",
        action="store_true",
        help="evaluations only: compute every score again from evaluation-inputs.npz (its "
        "SHA-256 checked against evaluation.json), keeping the run's provenance and compute",
    )
    p.set_defaults(func=command)


def command(args: argparse.Namespace) -> int:
    """Re-render each folder (a run's results.json or an evaluation's evaluation.json; with
    ``--rescore``, an evaluation rescored). Every folder's files are read, checked and (with
    ``--rescore``) scored before anything is written."""
    jobs = []
    for folder in args.folders:  # every check first: nothing is scored or written before
        if args.rescore:
            jobs.append((folder, render_evaluation, rescore.load(folder), "evaluation.html"))
        elif (folder / "evaluation.json").is_file() and not (folder / "results.json").is_file():
            jobs.append((folder, render_evaluation, read_evaluation(folder), "evaluation.html"))
        else:
            jobs.append((folder, render_run, read_results(folder), "report.html"))
    for folder, render, results, page in jobs:
        if args.rescore:
            results = rescore.score(results)
        render(folder, results)
        print(f"{'rescored' if args.rescore else 're-rendered'} {folder / page}")
    return 0
