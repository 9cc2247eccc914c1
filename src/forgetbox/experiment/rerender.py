"""Re-rendering a run folder from its ``results.json``: the claims are judged again with the
current criteria and cross-checked against a committed ensemble evaluation of the same setup
found beside the folder (:mod:`.cross_check`), then every output is written again (the numbers
are not touched)."""

from __future__ import annotations

import json
from pathlib import Path

from ..report.outputs import write_all
from . import claims


def rerender(folder: Path, evaluations=None) -> None:
    """Re-render a run folder's figures, report and summary from its ``results.json`` (the
    claims are evaluated again with the current criteria; the numbers are not touched).
    ``evaluations``: folders to look for an ``evaluation.json`` of the same setup in (default:
    the folder's siblings)."""
    folder = Path(folder)
    path = folder / "results.json"
    if not path.is_file():
        raise ValueError(f"{folder}: no results.json (a folder written by `forgetbox run`)")
    try:
        results = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not valid JSON ({exc})") from exc
    missing = {"config", "methods", "seeds"} - set(results if isinstance(results, dict) else ())
    if missing:
        raise ValueError(f"{path}: not a forgetbox results file (missing {sorted(missing)})")
    write_all(claims.judge(results, folder, evaluations), folder)
