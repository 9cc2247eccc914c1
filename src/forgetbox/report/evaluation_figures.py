"""The evaluation's figures: per-example epsilon histograms, U-LiRA ROC curves, KLoM by
subset, and the retrain bands of the readouts with every model's value."""

from __future__ import annotations

from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from .style import COLORS, Figure, panel_grid, save, tight

CAPTIONS = {
    "eval_epsilons": (
        "Per-example epsilon of the NeurIPS 2023 challenge score, one panel per method: how "
        "well the best threshold rule tells the method's K models from the K retrained ones "
        "on each D_f example (0: indistinguishable; 50: the cap, fully separable). Dashed "
        "lines: the bucket edges that earn points; the retrain row shows what sampling error "
        "alone gives. An epsilon that cannot be computed (no usable rule) is not drawn."
    ),
    "eval_ulira_roc": (
        "U-LiRA: ROC of the per-example likelihood-ratio attack on held-out shadow models, "
        "log-log; the diagonal is a perfect method (and what the retrain row should show). A "
        "curve above it at low FPR means some examples remain identifiable."
    ),
    "eval_klom": (
        "KLoM per example, KL(unlearned || retrained) of the margins, by subset (dots: examples; "
        "bar: median). 0 means the method's models look like retrained ones on that example; the "
        "retrain row is the level of sampling noise. n/c: examples where KLoM cannot be computed "
        "(every unlearned margin at the top of the joint range), not drawn."
    ),
    "eval_bands": (
        "Readouts of every model (dots) per method, with the retrain band (5-95 % quantiles of the "
        "retrain row, green). Outside the band on D_f error or the attack means the method still "
        "holds D_f (below / above) or overshoots it (the Streisand effect); on the L1 distance "
        "to the paired reference, below the band is only closer than a retrain seeded apart."
    ),
}
BAND_KEYS = (
    ("error_forget", "error on D_f"),
    ("error_retain", "error on D_r"),
    ("error_test", "error on test"),
    ("mia_forget_member_rate", "entropy attack: D_f called member"),
    ("l1_to_retrain_forget", "L1 to a reference model, D_f"),
    ("relearn_epochs", "re-learn time (epochs)"),
)


def _methods(results: dict) -> list[str]:
    return list(results["methods"])


def epsilons(results: dict, out: Path | None, narrow: bool = False) -> Figure:
    """The challenge score's per-example epsilons of every method, at most four a row
    (``narrow``: two a row)."""
    methods = _methods(results)
    cols = min(len(methods), 4)
    fig, axes = panel_grid(len(methods), narrow, cols, (2.6, 3), narrow_cols=2)
    # the ensemble's K (a method whose models diverged is scored on fewer: the same grid)
    k = max(b["challenge"]["models_per_side"] for b in results["methods"].values())
    top = np.ceil(np.log(k - 1))
    bins = np.arange(0, max(top, 1) + 0.5, 0.5).tolist() + [50.5]
    for ax, m in zip(axes, methods, strict=True):
        eps = np.asarray(
            [np.nan if e is None else e for e in results["methods"][m]["challenge"]["epsilons"]]
        )
        eps = np.minimum(eps[np.isfinite(eps)], top + 0.25)  # NaN: not computable, not drawn
        ax.hist(eps, bins=np.minimum(bins, top + 0.5), color=COLORS.get(m, "k"))
        for edge in np.arange(0.5, top + 0.01, 0.5):
            ax.axvline(edge, color="0.6", ls="--", lw=0.6)
        s = results["methods"][m]["challenge"]
        ax.set_title(f"{m}\nF = {s['forget_quality']:.2f}, score {s['score']:.2f}", fontsize=9)
        ax.set_xlabel(f"epsilon (>= {top:.0f} pooled at the right)", fontsize=7)
    for ax in axes[:: 2 if narrow else cols]:
        ax.set_ylabel("D_f examples")
    fig.suptitle(f"Per-example epsilon ({k} models per side)")
    tight(fig)
    return save(fig, out, "eval_epsilons")


def ulira_roc(results: dict, out: Path | None, narrow: bool = False) -> Figure | None:
    """U-LiRA's ROC curve of every attacked method (None without U-LiRA)."""
    methods = [m for m in _methods(results) if "ulira" in results["methods"][m]]
    if not methods:
        return None
    fig, ax = plt.subplots(figsize=(5.5, 5))
    floor = 1e-4
    for m in methods:
        u = results["methods"][m]["ulira"]
        fpr, tpr = np.maximum(u["fpr"], floor), np.maximum(u["tpr"], floor)
        ax.plot(
            fpr, tpr, color=COLORS.get(m, "k"), label=f"{m}: bal. acc. {u['balanced_accuracy']:.2f}"
        )
    ax.plot([floor, 1], [floor, 1], color="0.5", ls=":", lw=1, label="chance (perfect unlearning)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("U-LiRA on held-out shadow models")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    return save(fig, out, "eval_ulira_roc")


def klom_panels(results: dict, out: Path | None, narrow: bool = False) -> Figure:
    """KLoM on D_f, D_r and validation examples of every method (``narrow``: one a row)."""
    methods = _methods(results)
    fig, axes = panel_grid(3, narrow, 3, (5, 3.8))
    names = {"forget": "D_f", "retain": "D_r", "val": "validation"}
    gen = np.random.default_rng(0)
    for ax, subset in zip(axes, ("forget", "retain", "val"), strict=True):
        labels = []
        for i, m in enumerate(methods):
            values = results["methods"][m]["klom"][subset]["values"]
            v = np.asarray([np.nan if x is None else x for x in values], float)
            v = v[np.isfinite(v)]
            missing = len(values) - len(v)
            labels.append(f"{m} ({missing} n/c)" if missing else m)
            ax.scatter(
                i + gen.uniform(-0.25, 0.25, len(v)), v, s=6, alpha=0.5, color=COLORS.get(m, "k")
            )
            if len(v):
                ax.hlines(np.median(v), i - 0.35, i + 0.35, color="k", lw=2)
        ax.set_xticks(range(len(methods)), labels, rotation=40, ha="right", fontsize=8)
        ax.set_title(f"KLoM on {names[subset]}", fontsize=10)
        ax.set_ylim(bottom=0)
    for ax in axes if narrow else axes[:1]:
        ax.set_ylabel("nats, KL(unlearned || retrained)")
    fig.tight_layout()
    return save(fig, out, "eval_klom")


def band_panels(results: dict, out: Path | None, narrow: bool = False) -> Figure:
    """Every readout of every method against its retrain band, three a row (``narrow``: one)."""
    methods = _methods(results)
    keys = [(k, t) for k, t in BAND_KEYS if k in results["bands"]]
    fig, axes = panel_grid(len(keys), narrow, 3, (3.6, 3.8))
    for ax, (key, title) in zip(axes, keys, strict=True):
        b = results["bands"][key]
        ax.axhspan(b["low"], b["high"], color="#2ca02c", alpha=0.2)
        for i, m in enumerate(methods):
            v = results["methods"][m]["readouts"][key]["values"]
            ax.scatter(
                np.full(len(v), i) + np.linspace(-0.2, 0.2, len(v)),
                v,
                s=10,
                color=COLORS.get(m, "k"),
            )
        ax.set_xticks(range(len(methods)), methods, rotation=40, ha="right", fontsize=8)
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, out, "eval_bands")


def _both(draw, results: dict, out: Path) -> Figure | None:
    wide = draw(results, out)
    return None if wide is None else wide.with_narrow(draw(results, None, narrow=True))


def draw_all(results: dict, out: Path) -> dict[str, Figure | None]:
    """Every evaluation figure, by name (None where it has no data); the multi-panel ones with
    a narrow drawing for small screens."""
    return {
        "eval_epsilons": _both(epsilons, results, out),
        "eval_ulira_roc": ulira_roc(results, out),
        "eval_klom": _both(klom_panels, results, out),
        "eval_bands": _both(band_panels, results, out),
    }
