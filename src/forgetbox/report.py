"""Outputs of a run: results.json / results.csv, the paper's figures, report.html, a summary.

Figures (PNG and SVG): ``fig1_pca`` (training paths and scrubbed weights), ``fig2_readouts``
(one panel per readout, retrain band shaded), ``fig3_tradeoff`` (error vs information in
weights / activations, information per query by subset), ``fig4_l1_path`` (L1 distance to
retrain along the scrubbing direction).
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import tomli_w  # noqa: E402

from . import claims  # noqa: E402
from .checkpoints import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: E402

COLORS = {
    "original": "#4c4c4c",
    "retrain": "#2ca02c",
    "finetune": "#ff7f0e",
    "fisher": "#9467bd",
    "ntk": "#1f77b4",
    "ntk_fisher": "#d62728",
    "newton": "#8c564b",
}
PANELS = [
    ("error_forget", "Error on D_f"),
    ("error_retain", "Error on D_r"),
    ("error_test", "Error on test"),
    ("mia_forget_member_rate", "MIA: D_f called member"),
    ("relearn_epochs", "Re-learn time (epochs)"),
    ("l1_to_retrain_forget", "L1 to retrain on D_f"),
    ("info_weights_nats", "White-box bound (nats)"),
    ("info_activations_nats_forget", "Black-box bound per D_f query (nats)"),
]
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


def _save(fig, out: Path, name: str) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    png = buf.getvalue()
    atomic_write_bytes(out / f"{name}.png", png)
    svg = io.BytesIO()
    fig.savefig(svg, format="svg", bbox_inches="tight")
    atomic_write_bytes(out / f"{name}.svg", svg.getvalue())
    plt.close(fig)
    return png


def fig1(results: dict, out: Path) -> bytes | None:
    pca = results.get("pca")
    if not pca:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 4.5))
    for name, color in (("D", "tab:blue"), ("D_r", "tab:orange")):
        p = np.asarray(pca["paths"][name])
        ax.plot(p[:, 0], p[:, 1], "-o", ms=2, color=color, label=f"training on {name}")
        ax.plot(*p[-1, :2], "s", color=color, ms=8)
    marks = {"ntk": "X", "ntk_fisher": "P", "fisher": "*"}
    for name, pt in pca["points"].items():
        method = name.split(" ")[0]
        face = "none" if "noisy" in name else COLORS.get(method, "k")
        ax.scatter(
            pt[0],
            pt[1],
            marker=marks.get(method, "o"),
            s=110,
            edgecolors=COLORS.get(method),
            facecolors=face,
            label=name,
            zorder=5,
        )
    ev = pca.get("explained", [0, 0])
    ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}% of path variance)")
    ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}%)")
    ax.set_title(f"Fig. 1: training paths and scrubbed weights (seed {results['seeds'][0]})")
    ax.legend(fontsize=7)
    return _save(fig, out, "fig1_pca")


def fig2(results: dict, out: Path) -> bytes:
    methods = list(results["methods"])
    fig, axes = plt.subplots(2, 4, figsize=(15, 6.5))
    for ax, (key, title) in zip(axes.flat, PANELS, strict=True):
        means = [results["methods"][m]["mean"].get(key) for m in methods]
        stds = [results["methods"][m]["std"].get(key) or 0 for m in methods]
        vals = [np.nan if v is None else v for v in means]
        r = results["methods"].get("retrain", {}).get("mean", {}).get(key)
        rs = results["methods"].get("retrain", {}).get("std", {}).get(key) or 0
        if r is not None:
            ax.axhspan(r - rs, r + rs, color="#2ca02c", alpha=0.2, label="retrain band")
        ax.bar(
            range(len(methods)),
            vals,
            yerr=stds,
            color=[COLORS.get(m, "k") for m in methods],
            capsize=3,
        )
        ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right", fontsize=8)
        ax.set_title(title, fontsize=10)
        if key.startswith("info") and all(v is not None and v > 0 for v in means):
            ax.set_yscale("log")
    fig.suptitle("Fig. 2: readouts (mean and std over seeds; green: retrain, the target)")
    fig.tight_layout()
    return _save(fig, out, "fig2_readouts")


def fig3(results: dict, out: Path) -> bytes | None:
    rows = results.get("tradeoff") or []
    if not rows:
        return None
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    for method in sorted({r["method"] for r in rows}):
        sub = [r for r in rows if r["method"] == method]
        alphas = sorted({r["alpha"] for r in sub})
        for ax, key in zip(
            axes[:2], ("info_weights_nats", "info_activations_nats_forget"), strict=True
        ):
            xs = [np.mean([r[key] for r in sub if r["alpha"] == a]) for a in alphas]
            ys = [np.mean([r["error_test"] for r in sub if r["alpha"] == a]) for a in alphas]
            ax.plot(xs, ys, "-o", color=COLORS.get(method), label=method)
            for a, x, y in zip(alphas, xs, ys, strict=True):
                ax.annotate(f"{a:.0e}", (x, y), fontsize=6)
    axes[0].set_xlabel("remaining information in weights (nats, white box)")
    axes[1].set_xlabel("remaining information per D_f query (nats, black box)")
    for ax in axes[:2]:
        ax.set_xscale("log")
        ax.set_ylabel("test error")
        ax.legend(fontsize=8)
    subsets = ("forget", "retain", "test")
    methods = [m for m in results["methods"] if m not in ("retrain",)]
    width = 0.25
    for i, s in enumerate(subsets):
        vals = [
            results["methods"][m]["mean"].get(f"info_activations_nats_{s}") or np.nan
            for m in methods
        ]
        axes[2].bar(np.arange(len(methods)) + i * width, vals, width, label=f"queries from {s}")
    axes[2].set_xticks(
        np.arange(len(methods)) + width, methods, rotation=40, ha="right", fontsize=8
    )
    axes[2].set_yscale("log")
    axes[2].set_ylabel("nats per query")
    axes[2].legend(fontsize=8)
    axes[0].set_title("error vs white-box bound")
    axes[1].set_title("error vs black-box bound")
    axes[2].set_title("information per query by subset")
    fig.suptitle("Fig. 3: error-forgetting trade-off")
    fig.tight_layout()
    return _save(fig, out, "fig3_tradeoff")


def fig4(results: dict, out: Path) -> bytes | None:
    rows = results.get("activation_path") or []
    if not rows:
        return None
    methods = sorted({r["method"] for r in rows})
    fig, axes = plt.subplots(1, len(methods), figsize=(4.2 * len(methods), 3.6), squeeze=False)
    for ax, method in zip(axes[0], methods, strict=True):
        sub = [r for r in rows if r["method"] == method]
        alphas = sorted({r["alpha"] for r in sub})
        for subset, color in (("forget", "tab:blue"), ("retain", "tab:red"), ("test", "tab:gray")):
            vals = np.array([[r[subset] for r in sub if r["alpha"] == a] for a in alphas])
            m, s = vals.mean(1), vals.std(1)
            ax.plot(
                alphas,
                m,
                "-o",
                ms=3,
                color=color,
                label=f"D_{subset}" if subset != "test" else "test",
            )
            ax.fill_between(alphas, m - s, m + s, color=color, alpha=0.15)
        ax.axvline(1.0, color="k", lw=0.8, ls="--")
        ax.set_xlabel("alpha (0 = original, 1 = scrubbed)")
        ax.set_title(method)
    axes[0][0].set_ylabel("mean L1 to retrain (softmax)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle("Fig. 4: closeness of activations along the scrubbing direction")
    fig.tight_layout()
    return _save(fig, out, "fig4_l1_path")


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
    figures = {
        "fig1_pca": fig1(results, out),
        "fig2_readouts": fig2(results, out),
        "fig3_tradeoff": fig3(results, out),
        "fig4_l1_path": fig4(results, out),
    }
    atomic_write_text(out / "report.html", html_report(results, figures))
    atomic_write_text(out / "summary.txt", summary_table(results) + "\n")
