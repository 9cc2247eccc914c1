"""Fig. 1: the fine-tuning paths and the scrubbed weights in the paths' principal plane,
Fisher forgetting beside NTK + Fisher, as the paper draws them."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import COLORS, Figure, panel_grid, save, tight

PANELS = (("fisher", "Fisher forgetting"), ("ntk_fisher", "NTK + Fisher (proposed)"))


def _landmarks(pca: dict) -> dict[str, np.ndarray]:
    d, dr = np.asarray(pca["paths"]["D"]), np.asarray(pca["paths"]["D_r"])
    return {"w0": d[0, :2], "w(D)": d[-1, :2], "w(D_r)": dr[-1, :2]}


def _draw(ax, pca: dict, method: str, *, labels: bool) -> list[np.ndarray]:
    """One panel's paths, landmarks, scrubbed centre and noise cloud; the points drawn."""
    shown = []
    for name, color in (("D", "tab:blue"), ("D_r", "tab:orange")):
        p = np.asarray(pca["paths"][name])
        ax.plot(p[:, 0], p[:, 1], "-", lw=1, color=color, label=f"fine-tuning on {name}")
        shown.append(p[:, :2])
    marks = {"w0": ("o", "black"), "w(D)": ("s", "tab:blue"), "w(D_r)": ("s", "tab:orange")}
    for name, pt in _landmarks(pca).items():
        marker, color = marks[name]
        ax.scatter(*pt, marker=marker, s=60, color=color, zorder=6, edgecolors="white")
        if labels:
            ax.annotate(name, pt, textcoords="offset points", xytext=(6, 4), fontsize=8)
    cloud = (pca.get("clouds") or {}).get(method)
    if cloud:
        c = np.asarray(cloud)
        ax.scatter(c[:, 0], c[:, 1], s=10, alpha=0.45, color=COLORS[method], zorder=4,
                   label=f"{method}: noisy draws")  # fmt: skip
        shown.append(c[:, :2])
    else:
        noisy = pca["points"].get(f"{method} (noisy)")
        if noisy is not None:
            ax.scatter(*noisy[:2], s=40, facecolors="none", edgecolors=COLORS[method],
                       zorder=4, label=f"{method}: a noisy draw")  # fmt: skip
            shown.append(np.asarray([noisy[:2]]))
    mean = pca["points"].get(f"{method} (mean)")
    if mean is not None:
        ax.scatter(*mean[:2], marker="X", s=90, color=COLORS[method], edgecolors="white",
                   zorder=7, label=f"{method}: scrubbed centre")  # fmt: skip
        shown.append(np.asarray([mean[:2]]))
    return shown


def _inset(ax, pca: dict, method: str, focus: np.ndarray) -> None:
    """Enlarge the box around the end points when they crowd a small part of the panel."""
    lo, hi = focus.min(0), focus.max(0)
    x0, x1 = ax.get_xlim()
    y0, y1 = ax.get_ylim()
    if ((hi - lo) >= 0.25 * np.array([x1 - x0, y1 - y0])).any():
        return  # not crowded: the panel shows them apart
    pad = 0.15 * np.maximum(hi - lo, 1e-9) + 1e-9
    ins = ax.inset_axes([0.55, 0.05, 0.42, 0.42])
    _draw(ins, pca, method, labels=False)
    ins.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ins.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    ins.tick_params(labelsize=6)
    ax.indicate_inset_zoom(ins, edgecolor="0.4")


def fig1(results: dict, out: Path | None, narrow: bool = False) -> Figure | None:
    """Fig. 1: training paths and scrubbed points in PCA coordinates (None without them);
    ``narrow``: the panels one under the other."""
    pca = results.get("pca")
    if not pca:
        return None
    panels = [(m, t) for m, t in PANELS if f"{m} (mean)" in pca["points"]]
    if not panels:
        return None
    fig, axes = panel_grid(len(panels), narrow, len(panels), (6, 5))
    ev = pca.get("explained", [0, 0])
    for ax, (method, title) in zip(axes, panels, strict=True):
        _draw(ax, pca, method, labels=True)
        ax.set_title(title)
        ax.set_xlabel(f"PC1 ({100 * ev[0]:.0f}% of path variance)")
        ax.set_ylabel(f"PC2 ({100 * ev[1]:.0f}%)")
        land = _landmarks(pca)
        focus = [land["w(D)"], land["w(D_r)"], np.asarray(pca["points"][f"{method} (mean)"][:2])]
        _inset(ax, pca, method, np.vstack(focus))
    handles, labels = [], []
    for ax in axes:
        for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
            if lab not in labels:
                handles.append(h)
                labels.append(lab)
    fig.legend(handles, labels, loc="lower center", ncol=2 if narrow else 3, fontsize=8,
               frameon=False)  # fmt: skip
    fig.suptitle(f"Fig. 1: training paths and scrubbed weights (seed {results['seeds'][0]})")
    tight(fig, 0.8 if narrow else 0.6)
    return save(fig, out, "fig1_pca")
