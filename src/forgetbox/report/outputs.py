"""Outputs of a run: results.json / results.csv, the figures, report.html and a summary.

The report (:func:`html_report`) is one self-contained page: what was run, the headline table
(errors, attack, L1, seconds and speed-up over retraining), the claims with their rules, the
bounds with their noise scale and context, the figures with captions, the full table, the
compute, and the configuration. It renders from the results (``results.json``) alone, so
committed reports can be re-rendered (:func:`forgetbox.experiment.rerender.rerender`).
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

import tomli_w

from ..atomic import atomic_write_json, atomic_write_text
from .figures import CAPTIONS, draw_all
from .lede import run_sentence
from .page import page, short

SUMMARY_KEYS = [
    ("error_forget", "err D_f"),
    ("error_retain", "err D_r"),
    ("error_test", "err test"),
    ("mia_forget_member_rate", "MIA"),
    ("relearn_epochs", "relearn"),
    ("l1_to_retrain_forget", "L1 D_f"),
    ("info_weights_nats", "info W"),
    ("info_activations_nats_forget", "info A(D_f)"),
    ("seconds", "seconds"),
]


def tidy_rows(results: dict) -> list[tuple]:
    """``(method, seed, readout, value)`` rows of every per-seed readout (results.csv)."""
    rows = []
    for method, block in results["methods"].items():
        for r in block["per_seed"]:
            for k, v in r.items():
                if k != "seed":
                    rows.append((method, r["seed"], k, v))
    return rows


def summary_table(results: dict) -> str:
    """The plain-text summary: mean +- sd per method, the claims' verdicts, warnings."""
    head = f"{'method':<11}" + "".join(f" {h:>16}" for _, h in SUMMARY_KEYS)
    lines = [run_sentence(results), "", head, "-" * len(head)]
    for method, block in results["methods"].items():
        cells = []
        for k, _ in SUMMARY_KEYS:
            m, s = block["mean"].get(k), block["std"].get(k)
            cells.append(
                f" {'n/a':>16}" if m is None else " " + f"{short(m)}±{short(s or 0)}".rjust(16)
            )
        lines.append(f"{method:<11}" + "".join(cells))
    lines.append("")
    flags = {c["id"]: c for c in (results.get("cross_check") or {}).get("claims", [])}
    for c in results.get("claims", []):
        lines.append(f"claim {c['id']}: {c['verdict'].upper():<12} {c['text']}")
        f = flags.get(c["id"])
        if f and f["flag"] != "agrees":
            lines.append(f"{'':<22}ensemble ({results['cross_check']['evaluation']}): "
                         f"{f['ensemble']} ({f['flag']})")  # fmt: skip
    warnings = results.get("warnings", [])
    if warnings:
        lines += [""] + [f"warning: {w}" for w in warnings]
    return "\n".join(lines)


# where the run wrote (this machine's folders), not what it computed: left out of config.toml,
# so that ``forgetbox run --config config.toml`` elsewhere writes where its user says
WHERE_WRITTEN = ("out", "cache_dir")


def config_toml(results: dict) -> str:
    """The run's configuration and versions as TOML (``config.toml``, read back by ``forgetbox
    run --config``), without the folders it wrote to (:data:`WHERE_WRITTEN`; ``results.json``
    keeps them)."""
    cfg = {k: v for k, v in results["config"].items() if v is not None and k not in WHERE_WRITTEN}
    head = "# re-run with: forgetbox run --config config.toml --out OUT [--cache-dir DIR]\n"
    return head + tomli_w.dumps({"experiment": cfg, "versions": results["versions"]})


def html_report(results: dict, figures: dict) -> str:
    """The report page; ``figures`` maps a figure's name to its drawn
    :class:`~forgetbox.report.style.Figure` (or None)."""
    return page(results, figures, CAPTIONS, config_toml(results))


def write_all(results: dict, out: Path) -> None:
    """results.json, results.csv, figures, report.html, summary.txt and config.toml into
    ``out``."""
    out = Path(out)
    atomic_write_json(out / "results.json", results)
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["method", "seed", "readout", "value"])
    w.writerows(tidy_rows(results))
    atomic_write_text(out / "results.csv", buf.getvalue())
    figures = draw_all(results, out)
    atomic_write_text(out / "report.html", html_report(results, figures))
    atomic_write_text(out / "summary.txt", summary_table(results) + "\n")
    atomic_write_text(out / "config.toml", config_toml(results))
