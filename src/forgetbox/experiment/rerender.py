"""Re-rendering a run folder from its ``results.json``: the claims are judged again with the
current criteria, then every output is written again (the numbers are not touched)."""

from __future__ import annotations

import json
from pathlib import Path

from ..report.outputs import write_all
from . import claims


def rerender(folder: Path) -> None:
    """Re-render a run folder's figures, report and summary from its ``results.json`` (the
    claims are evaluated again with the current criteria; the numbers are not touched)."""
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
    results["claims"] = claims.evaluate(results)
    results["warnings"] = claims.training_warnings(results)
    write_all(results, folder)
