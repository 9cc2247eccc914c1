"""Fig. 4: the L1 distance of the outputs to the retrained model's along the scrubbing
direction, per subset, for the methods that move the weights' centre."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .style import SUBSET_COLORS, SUBSET_NAMES, Figure, panel_grid, save, tight


def _flat(sub: list[tuple]) -> bool:
    """Every seed's curve constant along the path (to float32 rounding)."""
    for seed in {s[0] for s in sub}:
        values = np.array([s[2:] for s in sub if s[0] == seed])
        if np.ptp(values, axis=0).max() > 1e-6:
            return False
    return True


def moving_methods(rows: list[dict]) -> list[str]:
    """The methods whose path is not flat (a centre at w(D) gives the same outputs at every
    point), without a method whose path equals one already kept (ntk_fisher's centre is
    ntk's)."""
    kept: dict[str, np.ndarray] = {}
    for method in sorted({r["method"] for r in rows}):
        sub = sorted((r["seed"], r["alpha"], r["forget"], r["retain"]) for r in rows
                     if r["method"] == method)  # fmt: skip
        if _flat(sub):
            continue
        values = np.array([s[2:] for s in sub])
        if any(v.shape == values.shape and np.allclose(v, values) for v in kept.values()):
            continue
        kept[method] = values
    return list(kept)


def _same_path(rows: list[dict], a: str, b: str) -> bool:
    pa = sorted((r["seed"], r["alpha"], r["forget"]) for r in rows if r["method"] == a)
    pb = sorted((r["seed"], r["alpha"], r["forget"]) for r in rows if r["method"] == b)
    return len(pa) == len(pb) and np.allclose(np.array(pa), np.array(pb))


def _noise_floor(ax, results: dict) -> None:
    """The L1 distance between two retrained models on D_f (the retrain row of a committed
    ensemble of this setup): closer than this is closer than retraining itself gets."""
    cc = results.get("cross_check") or {}
    floor = (cc.get("l1_floor") or {}).get("forget")
    if not floor:
        return
    ax.axhspan(floor["low"], floor["high"], color=SUBSET_COLORS["forget"], alpha=0.08, lw=0)
    ax.axhline(floor["median"], color=SUBSET_COLORS["forget"], ls=":", lw=1.2,
               label=f"D_f, retrain vs retrain (K = {cc['models']})")  # fmt: skip


def fig4(results: dict, out: Path | None, narrow: bool = False) -> Figure | None:
    """Fig. 4: L1 distance to retrain along the scrubbing direction (None without a path),
    with the retrain-vs-retrain noise floor where a committed ensemble gives it; ``narrow``:
    the panels one under the other."""
    rows = results.get("activation_path") or []
    methods = moving_methods(rows)
    if not methods:
        return None
    fig, axes = panel_grid(len(methods), narrow, len(methods), (5, 4))
    for ax, method in zip(axes, methods, strict=True):
        sub = [r for r in rows if r["method"] == method]
        alphas = sorted({r["alpha"] for r in sub})
        for subset in ("forget", "retain", "test"):
            vals = np.array([[r[subset] for r in sub if r["alpha"] == a] for a in alphas])
            m, s = vals.mean(1), vals.std(1)
            ax.plot(alphas, m, "-o", ms=3, color=SUBSET_COLORS[subset], label=SUBSET_NAMES[subset])
            ax.fill_between(alphas, np.maximum(m - s, 0), m + s, color=SUBSET_COLORS[subset],
                            alpha=0.15)  # fmt: skip
        ax.axvline(1.0, color="k", lw=0.8, ls="--")
        _noise_floor(ax, results)
        ax.set_xlabel("position along the direction (0 = original, 1 = scrubbed)")
        dropped = {r["method"] for r in rows} - set(methods)
        same = [m for m in dropped if _same_path(rows, m, method)]
        ax.set_title(method + (f" (= {', '.join(sorted(same))}: same centre)" if same else ""))
        ax.set_ylim(bottom=0)
    axes[0].set_ylabel("mean L1 to retrain (softmax outputs)")
    axes[0].legend(fontsize=8, title="queries from", title_fontsize=8, loc="best")
    n = len(results.get("seeds", []))
    sep = "\n" if narrow else " "
    fig.suptitle(f"Fig. 4: closeness to the retrained outputs along the scrubbing direction{sep}"
                 f"(shading: 1 std over {n} seeds)")  # fmt: skip
    tight(fig, top_in=0.7 if narrow else 0.45)
    return save(fig, out, "fig4_l1_path")
