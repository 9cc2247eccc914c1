"""Outputs of a run: results.json / results.csv, the figures, report.html and a summary."""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path

import tomli_w

from ..atomic import atomic_write_json, atomic_write_text
from . import claims
from .figures import draw_all

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
    rows = []
    for method, block in results["methods"].items():
        for r in block["per_seed"]:
            for k, v in r.items():
                if k != "seed":
                    rows.append((method, r["seed"], k, v))
    return rows


def summary_table(results: dict) -> str:
    head = f"{'method':<11}" + "".join(f" {h:>16}" for _, h in SUMMARY_KEYS)
    lines = [head, "-" * len(head)]
    for method, block in results["methods"].items():
        cells = []
        for k, _ in SUMMARY_KEYS:
            m, s = block["mean"].get(k), block["std"].get(k)
            cells.append(
                f" {'n/a':>16}" if m is None else " " + f"{_short(m)}±{_short(s or 0)}".rjust(16)
            )
        lines.append(f"{method:<11}" + "".join(cells))
    lines.append("")
    for c in results.get("claims", []):
        lines.append(f"claim {c['id']}: {c['verdict'].upper():<12} {c['text']}")
    warnings = claims.training_warnings(results)
    if warnings:
        lines += [""] + [f"warning: {w}" for w in warnings]
    return "\n".join(lines)


def _short(x: float) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "nan"
    if x != 0 and (abs(x) >= 1e4 or abs(x) < 1e-2):
        return f"{x:.1e}"
    return f"{x:.3f}" if abs(x) < 10 else f"{x:.1f}"


def config_toml(results: dict) -> str:
    cfg = {k: v for k, v in results["config"].items() if v is not None}
    return tomli_w.dumps({"experiment": cfg, "versions": results["versions"]})


def _wall_time(results: dict) -> str:
    """``wall time N s``, saying how many stages came from the cache (their time not counted)."""
    text = f"wall time {results.get('wall_seconds', 0):.0f} s"
    cache = results.get("cache") or {}
    if cache.get("hits"):
        total = cache["hits"] + cache.get("misses", 0)
        text += f" ({cache['hits']} of {total} stages read from the cache, their time not counted)"
    return text


def _img(png: bytes | None, alt: str) -> str:
    if png is None:
        return ""
    b64 = base64.b64encode(png).decode()
    return (
        f'<figure><img alt="{alt}" src="data:image/png;base64,{b64}"/>'
        f"<figcaption>{alt}</figcaption></figure>"
    )


def _table(results: dict) -> str:
    keys = [k for k, _ in SUMMARY_KEYS] + [
        "info_activations_nats_retain",
        "info_activations_nats_test",
        "mia_auc",
        "l1_to_retrain_retain",
    ]
    head = "".join(f"<th>{html.escape(k)}</th>" for k in keys)
    body = []
    for method, block in results["methods"].items():
        cells = "".join(
            f"<td>{_short(block['mean'].get(k)) if block['mean'].get(k) is not None else 'n/a'}"
            f" <small>± {_short(block['std'].get(k) or 0)}</small></td>"
            for k in keys
        )
        body.append(f"<tr><th>{method}</th>{cells}</tr>")
    return f"<table><tr><th>method</th>{head}</tr>{''.join(body)}</table>"


def html_report(results: dict, figures: dict[str, bytes | None]) -> str:
    claim_rows = "".join(
        f'<tr class="{c["verdict"]}"><td>{c["id"]}</td><td>{html.escape(c["text"])}</td>'
        f"<td><b>{c['verdict']}</b></td><td>{html.escape(c['evidence'])}</td></tr>"
        for c in results.get("claims", [])
    )
    cfg = html.escape(config_toml(results))
    warned = claims.training_warnings(results)
    warnings = (
        '<ul class="warnings">' + "".join(f"<li>{html.escape(w)}</li>" for w in warned) + "</ul>"
        if warned
        else ""
    )
    timing = "".join(
        f"<tr><th>{m}</th><td>{_short(b['mean'].get('seconds'))}</td></tr>"
        for m, b in results["methods"].items()
    )
    style = (
        "body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;color:#222}"
        "table{border-collapse:collapse;margin:1em 0;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}"
        "tr.holds td:nth-child(3){color:#1a7f1a}tr.fails td:nth-child(3){color:#c0392b}"
        "tr.inconclusive td:nth-child(3){color:#b9770e}img{max-width:100%}"
        ".warnings{color:#c0392b}"
        "pre{background:#f6f6f6;padding:1em;overflow:auto}figure{margin:1.5em 0}"
    )
    figs = "".join(
        _img(figures.get(k), k)
        for k in ("fig1_pca", "fig2_readouts", "fig3_tradeoff", "fig4_l1_path")
    )
    return f"""<!DOCTYPE html><html><head><meta charset="utf-8"><title>forgetbox report</title>
<style>{style}</style></head><body>
<h1>forgetbox report</h1>
<p>Forgetting Outside the Box (Golatkar, Achille, Soatto, ECCV 2020) on
<b>{html.escape(str(results["config"]["dataset"]))}</b> with
<b>{html.escape(str(results["config"]["model"]))}</b>,
seeds {results["seeds"]}; {_wall_time(results)}.</p>
<h2 id="claims">Claims</h2>{warnings}
<table><tr><th>#</th><th>claim</th><th>verdict</th><th>evidence</th></tr>{claim_rows}</table>
<h2 id="results">Results (mean ± std over seeds)</h2>{_table(results)}
<h2 id="figures">Figures</h2>{figs}
<h2 id="timings">Timings (seconds per method)</h2><table>{timing}</table>
<h2 id="configuration">Configuration</h2><pre>{cfg}</pre>
</body></html>"""


def write_all(results: dict, out: Path) -> None:
    """results.json, results.csv, figures, report.html and summary.txt into ``out``."""
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
