"""Fig. 3: the error-forgetting trade-off over the noise scale alpha (test and D_f error
against the white-box and black-box information left), and the information per query by the
subset the queries come from."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .headline import cohort_content_nats, method_alpha
from .style import COLORS, SUBSET_COLORS, SUBSET_NAMES, Figure, save, tight

INFO = (
    ("info_weights_nats", "information left in the weights (nats, white box)"),
    ("info_activations_nats_forget", "information per D_f query (nats, black box)"),
)
ERRORS = (("error_test", "test error"), ("error_forget", "D_f error"))


def curve(rows: list[dict], key_x: str, key_y: str) -> tuple[np.ndarray, ...]:
    """Per alpha (sorted): mean and std of ``key_x`` and of ``key_y`` over seeds and draws."""
    alphas = sorted({r["alpha"] for r in rows})
    stats = []
    for a in alphas:
        xs = [r[key_x] for r in rows if r["alpha"] == a]
        ys = [r[key_y] for r in rows if r["alpha"] == a]
        stats.append((np.mean(xs), np.std(xs), np.mean(ys), np.std(ys)))
    mx, sx, my, sy = (np.array(c) for c in zip(*stats, strict=True))
    return np.array(alphas), mx, sx, my, sy


def _content_line(ax, results: dict, vertical: bool) -> None:
    """The cohort's raw content: a bound beyond it is vacuous."""
    content = cohort_content_nats(results) if "config" in results else None
    if content is None:
        return
    line = ax.axvline if vertical else ax.axhline
    line(content, color="#c0392b", ls=":", lw=1.2, label="cohort's raw content (vacuous beyond)")


def _tradeoff_panel(ax, rows: list[dict], key_x: str, key_y: str) -> None:
    for method in sorted({r["method"] for r in rows}):
        sub = [r for r in rows if r["method"] == method]
        alphas, mx, sx, my, sy = curve(sub, key_x, key_y)
        ax.errorbar(mx, my, xerr=sx, yerr=np.minimum(sy, my), fmt="-o", ms=4, capsize=2,
                    color=COLORS.get(method), label=method)  # fmt: skip
        for a, x, y in zip(alphas, mx, my, strict=True):
            ax.annotate(f"{a:.0e}", (x, y), textcoords="offset points", xytext=(4, 4),
                        fontsize=6, color=COLORS.get(method))  # fmt: skip
    ax.set_xscale("log")
    ax.set_ylim(bottom=0)


def _subset_panel(ax, results: dict) -> None:
    methods = [m for m in results["methods"] if m != "retrain"]
    width = 0.27
    for i, s in enumerate(("forget", "retain", "test")):
        vals = [results["methods"][m]["mean"].get(f"info_activations_nats_{s}") for m in methods]
        vals = [v if v is not None and v > 0 else np.nan for v in vals]
        ax.barh(np.arange(len(methods)) + i * width, vals, width, color=SUBSET_COLORS[s],
                label=f"queries from {SUBSET_NAMES[s]}")  # fmt: skip
        for j, (m, v) in enumerate(zip(methods, vals, strict=True)):
            alpha = method_alpha(results, m)
            if alpha and np.isfinite(v):
                ax.annotate(f"α {alpha:.0e}", (v, j + i * width), textcoords="offset points",
                            xytext=(3, 0), va="center", fontsize=5.5)  # fmt: skip
    _content_line(ax, results, vertical=True)
    ax.set_yticks(np.arange(len(methods)) + width, methods, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("nats per query (black box)")
    ax.set_title("information per query by subset", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)


def fig3(results: dict, out: Path | None, narrow: bool = False) -> Figure | None:
    """Fig. 3: test error against remaining information over the noise grid (``narrow``: one
    panel a row)."""
    rows = results.get("tradeoff") or []
    if not rows:
        return None
    if narrow:
        fig = plt.figure(figsize=(5, 20))
        grid = fig.add_gridspec(5, 1, height_ratios=[1, 1, 1, 1, 1.4])
        cells = [grid[i, 0] for i in range(4)] + [grid[4, 0]]
    else:
        fig = plt.figure(figsize=(15, 8))
        grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 0.8])
        cells = [grid[0, 0], grid[0, 1], grid[1, 0], grid[1, 1], grid[:, 2]]
    k = 0
    for key_y, ylabel in ERRORS:
        for key_x, xlabel in INFO:
            ax = fig.add_subplot(cells[k])
            k += 1
            _tradeoff_panel(ax, rows, key_x, key_y)
            _content_line(ax, results, vertical=True)
            ax.set_ylabel(ylabel)
            ax.set_xlabel(xlabel, fontsize=8)
    _subset_panel(fig.add_subplot(cells[4]), results)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2 if narrow else len(labels), fontsize=9,
               frameon=False, bbox_to_anchor=(0.5 if narrow else 0.35, 0.0))  # fmt: skip
    fig.suptitle("Fig. 3: error against information left, over the noise scale alpha")
    tight(fig, 0.6 if narrow else 0.4)
    return save(fig, out, "fig3_tradeoff")
