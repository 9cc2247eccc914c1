"""The paper's four figures from a run's results (PNG and SVG).

``fig1_pca`` (training paths and scrubbed weights), ``fig2_readouts`` (one panel per readout,
retrain band shaded), ``fig3_tradeoff`` (error vs information in weights / activations,
information per query by subset), ``fig4_l1_path`` (L1 distance to retrain along the scrubbing
direction).
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..atomic import atomic_write_bytes  # noqa: E402

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


def draw_all(results: dict, out: Path) -> dict[str, bytes | None]:
    """Every figure, written into ``out``; the PNG bytes by name (None when not drawn)."""
    return {
        "fig1_pca": fig1(results, out),
        "fig2_readouts": fig2(results, out),
        "fig3_tradeoff": fig3(results, out),
        "fig4_l1_path": fig4(results, out),
    }
