"""Fig. 2: one panel per readout; per method the mean over seeds (bar), each seed (dots), the
spread clipped to what is possible, and the retrain band."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .headline import cohort_content_nats, method_alpha
from .style import COLORS, Figure, panel_grid, save, tight

# key, title, y label, (lowest, highest) possible value
PANELS = [
    ("error_forget", "Error on D_f", "fraction misclassified", (0.0, 1.0)),
    ("error_retain", "Error on D_r", "fraction misclassified", (0.0, 1.0)),
    ("error_test", "Error on test", "fraction misclassified", (0.0, 1.0)),
    ("mia_forget_member_rate", "Attack: D_f called member", "fraction of D_f", (0.0, 1.0)),
    ("relearn_epochs", "Re-learn time", "epochs", (0.0, None)),
    ("l1_to_retrain_forget", "L1 to retrain on D_f", "mean L1 of softmax outputs", (0.0, 2.0)),
    ("info_weights_nats", "White-box bound", "nats", (0.0, None)),
    ("info_activations_nats_forget", "Black-box bound per D_f query", "nats", (0.0, None)),
]
LOG_SPAN = 100.0  # positive values spanning more than this ratio get a log axis
BOUND_KEYS = ("info_weights_nats", "info_activations_nats_forget")


def _per_seed(results: dict, method: str, key: str) -> list[float]:
    rows = results["methods"][method].get("per_seed") or []
    return [float(r[key]) for r in rows if r.get(key) is not None and np.isfinite(r[key])]


def use_log(values: list[float]) -> bool:
    """A log axis when the positive values span more than :data:`LOG_SPAN`."""
    pos = [v for v in values if v > 0]
    return len(pos) > 1 and max(pos) / min(pos) > LOG_SPAN


def _panel(ax, results: dict, methods: list[str], key: str, bounds) -> None:
    lo_ok, hi_ok = bounds
    seeds = {m: _per_seed(results, m, key) for m in methods}
    means = [float(np.mean(v)) if v else np.nan for v in seeds.values()]
    stds = [float(np.std(v, ddof=1)) if len(v) > 1 else 0.0 for v in seeds.values()]
    log = key in BOUND_KEYS or use_log([x for v in seeds.values() for x in v])
    # the spread, clipped to the possible range (no negative errors, no rate above 1); on a log
    # axis a spread reaching 0 is drawn down to the mean only
    lower, upper = [], []
    for m, s in zip(means, stds, strict=True):
        lower.append(max(lo_ok, m - s) if np.isfinite(m) else 0.0)
        upper.append((m + s if hi_ok is None else min(hi_ok, m + s)) if np.isfinite(m) else 0.0)
    if log:
        lower = [lw if lw > 0 else m for lw, m in zip(lower, means, strict=True)]
    low = [m - lw if np.isfinite(m) else 0.0 for m, lw in zip(means, lower, strict=True)]
    high = [up - m if np.isfinite(m) else 0.0 for m, up in zip(means, upper, strict=True)]
    x = np.arange(len(methods))
    ax.bar(x, means, yerr=[low, high], color=[COLORS.get(m, "k") for m in methods], alpha=0.75,
           capsize=3, error_kw={"lw": 1})  # fmt: skip
    for i, m in enumerate(methods):
        v = seeds[m]
        jitter = np.linspace(-0.18, 0.18, len(v)) if len(v) > 1 else np.zeros(len(v))
        ax.scatter(i + jitter, v, s=12, color="black", zorder=5, label="a seed" if i == 0 else None)
    r = seeds.get("retrain")
    band = (results.get("retrain_bands") or {}).get(key)
    if band:  # the band the claims use
        top = band["high"] if hi_ok is None else min(hi_ok, band["high"])
        ax.axhspan(max(lo_ok, band["low"]), top, color="#2ca02c", alpha=0.2, label="retrain band")
    elif r and not (log and min(r) <= 0):
        mu, sd = float(np.mean(r)), float(np.std(r, ddof=1)) if len(r) > 1 else 0.0
        ax.axhspan(max(lo_ok, mu - sd), mu + sd, color="#2ca02c", alpha=0.2, label="retrain band")
    if key in BOUND_KEYS:
        _bound_context(ax, results, methods, means)
    if key == "relearn_epochs" and results["config"].get("relearn_max_epochs"):
        cap = results["config"]["relearn_max_epochs"]
        ax.axhline(cap, color="k", ls="--", lw=0.8, label=f"cap ({cap} epochs)")
    if log:
        ax.set_yscale("log")
        if key in BOUND_KEYS:  # room above the bars for their alpha labels
            low, high = ax.get_ylim()
            ax.set_ylim(low, high * 6)
        zeros = [m for m in methods if seeds[m] and max(seeds[m]) <= 0]
        if zeros:
            ax.text(0.02, 0.02, "0 (not drawn): " + ", ".join(zeros), transform=ax.transAxes,
                    fontsize=7)  # fmt: skip
    else:
        top = max([v for vs in seeds.values() for v in vs] + upper + [1e-12])
        if hi_ok is not None:
            top = min(top, hi_ok)
        ax.set_ylim(lo_ok, top * 1.08 if top > 0 else 1.0)
    ax.set_xticks(x, methods, rotation=40, ha="right", fontsize=8)


def _bound_context(ax, results: dict, methods: list[str], means: list[float]) -> None:
    """A bound panel's context: the cohort's raw content (a bound above it is vacuous) and the
    noise scale alpha of every bar."""
    content = cohort_content_nats(results) if "config" in results else None
    if content is not None:
        ax.axhline(content, color="#c0392b", ls=":", lw=1.2, label="cohort's raw content")
    for i, (m, v) in enumerate(zip(methods, means, strict=True)):
        alpha = method_alpha(results, m) if m != "retrain" else None
        if alpha and np.isfinite(v) and v > 0:
            ax.annotate(f"α {alpha:.0e}", (i, v), textcoords="offset points", xytext=(0, 3),
                        ha="center", va="bottom", rotation=90, fontsize=6)  # fmt: skip


def fig2(results: dict, out: Path | None, narrow: bool = False) -> Figure:
    """Fig. 2: the readouts of every method against the retrain band (``narrow``: one panel a
    row)."""
    methods = list(results["methods"])
    fig, axes = panel_grid(len(PANELS), narrow, 4, (4, 3.75))
    for ax, (key, title, ylabel, bounds) in zip(axes, PANELS, strict=True):
        _panel(ax, results, methods, key, bounds)
        ax.set_title(title, fontsize=10)
        ax.set_ylabel(ylabel, fontsize=8)
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=2 if narrow else len(labels), fontsize=8,
               frameon=False)  # fmt: skip
    n = len(results.get("seeds", []))
    fig.suptitle(f"Fig. 2: readouts ({n} seeds: bars are means, dots are seeds)")
    tight(fig, 0.5 if narrow else 0.3)
    return save(fig, out, "fig2_readouts")
