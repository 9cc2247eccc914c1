"""Re-rendering a run folder from its ``results.json``: the file's structure is checked, the
claims are judged again with the current criteria and cross-checked against a committed
ensemble evaluation of the same setup found beside the folder (:mod:`.cross_check`), every
output is rendered into a staging folder and only then moved into place (the numbers are not
touched). A results file that cannot be rendered changes nothing in the folder."""

from __future__ import annotations

import json
from pathlib import Path

from ..atomic import staged_files
from ..report.outputs import write_all
from ..report.schema import ResultsError, check_results
from . import claims

# what rendering a file that passed the structure check may still raise on odd content (a
# run without the retrain row, say): reported as the file's fault, nothing written
RENDER_ERRORS = (KeyError, TypeError, IndexError, AttributeError, ZeroDivisionError, ValueError)


def rerender(folder: Path, evaluations=None) -> None:
    """Re-render a run folder's figures, report and summary from its ``results.json`` (the
    claims are evaluated again with the current criteria; the numbers are not touched).
    ``evaluations``: folders to look for an ``evaluation.json`` of the same setup in (default:
    the folder's siblings). :class:`~forgetbox.report.schema.ResultsError` (nothing written)
    when it cannot be rendered."""
    render(folder, read_results(folder), evaluations)


def read_results(folder: Path) -> dict:
    """A run folder's ``results.json``, its structure checked (nothing is written)."""
    folder = Path(folder)
    path = folder / "results.json"
    if not path.is_file():
        raise ValueError(f"{folder}: no results.json (a folder written by `forgetbox run`)")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ResultsError(f"{path}: not valid JSON ({exc})") from exc
    return check_results(results, path)


def render(folder: Path, results: dict, evaluations=None) -> None:
    """Judge the claims again (and cross-check them, :func:`.claims.judge`) and write every
    output of ``results`` into ``folder``: all rendered into a staging folder first, then moved
    into place (``results.json`` last)."""
    path = Path(folder) / "results.json"
    try:
        claims.judge(results, folder, evaluations)
        with staged_files(folder, last="results.json") as stage:
            write_all(results, stage)
    except RENDER_ERRORS as exc:
        if isinstance(exc, ResultsError):
            raise
        raise ResultsError(
            f"{path}: cannot be rendered ({type(exc).__name__}: {exc}); nothing was written "
            "(a results file of another forgetbox version, or edited? --debug shows where)"
        ) from exc
