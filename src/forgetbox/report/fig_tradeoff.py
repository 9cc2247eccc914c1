"""Fig. 3: the error-forgetting trade-off over the noise scale alpha (test and D_f error
against the white-box and black-box information left), and the information per query by the
subset the queries come from."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .style import COLORS, SUBSET_COLORS, SUBSET_NAMES, Figure, save

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
    ax.set_yticks(np.arange(len(methods)) + width, methods, fontsize=8)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.set_xlabel("nats per query (black box)")
    ax.set_title("information per query by subset", fontsize=10)
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)


def fig3(results: dict, out: Path) -> Figure | None:
    """Fig. 3: test error against remaining information over the noise grid."""
    rows = results.get("tradeoff") or []
    if not rows:
        return None
    fig = plt.figure(figsize=(15, 8))
    grid = fig.add_gridspec(2, 3, width_ratios=[1, 1, 0.8])
    for i, (key_y, ylabel) in enumerate(ERRORS):
        for j, (key_x, xlabel) in enumerate(INFO):
            ax = fig.add_subplot(grid[i, j])
            _tradeoff_panel(ax, rows, key_x, key_y)
            ax.set_ylabel(ylabel)
            ax.set_xlabel(xlabel, fontsize=8)
    _subset_panel(fig.add_subplot(grid[:, 2]), results)
    handles, labels = fig.axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=9, frameon=False,
               bbox_to_anchor=(0.35, 0.0))  # fmt: skip
    fig.suptitle("Fig. 3: error against information left, over the noise scale alpha")
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    return save(fig, out, "fig3_tradeoff")
