"""What the figures share: colours, names of the subsets, and how a figure is saved (PNG and
SVG) and embedded in the report."""

from __future__ import annotations

import io
from dataclasses import dataclass, replace
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from ..atomic import atomic_write_bytes  # noqa: E402

COLORS = {
    "original": "#4c4c4c",
    "retrain": "#2ca02c",
    "finetune": "#ff7f0e",
    "fisher": "#9467bd",
    "ntk": "#1f77b4",
    "ntk_fisher": "#d62728",
    "newton": "#8c564b",
    "neggrad_plus": "#e377c2",
    "scrub": "#17becf",
    "scrub_r": "#0b6e7a",
    "salun": "#bcbd22",
    "l1_sparse": "#7f7f7f",
}
SUBSET_COLORS = {"forget": "tab:blue", "retain": "tab:red", "test": "tab:gray"}
SUBSET_NAMES = {"forget": "D_f", "retain": "D_r", "test": "test"}


@dataclass(frozen=True)
class Figure:
    """A drawn figure: its PNG and SVG bytes (both also written to disk), and a narrow drawing
    of the same panels, one or two a row, that the page shows on small screens (not written)."""

    png: bytes
    svg: bytes
    narrow: Figure | None = None

    def with_narrow(self, narrow: Figure | None) -> Figure:
        """This figure with ``narrow`` as its small-screen drawing."""
        return replace(self, narrow=narrow)

    def embedded(self) -> tuple[str, bytes]:
        """``(mime type, bytes)`` of the smaller of the two, for the report."""
        if len(self.svg) < len(self.png):
            return "image/svg+xml", self.svg
        return "image/png", self.png


def save(fig, out: Path | None, name: str) -> Figure:
    """Save ``fig`` as PNG and SVG under ``out`` (atomically; ``out`` None: in memory only,
    as the narrow drawings are); its :class:`Figure` record."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    svg = io.BytesIO()
    # no date and fixed element ids: the same results draw byte-identical figures
    with plt.rc_context({"svg.hashsalt": "forgetbox"}):
        fig.savefig(svg, format="svg", bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    drawn = Figure(buf.getvalue(), svg.getvalue())
    if out is not None:
        atomic_write_bytes(out / f"{name}.png", drawn.png)
        atomic_write_bytes(out / f"{name}.svg", drawn.svg)
    return drawn


def panel_grid(n: int, narrow: bool, cols: int, size: tuple[float, float], narrow_cols: int = 1):
    """``(fig, axes)``: ``n`` panels of ``size`` inches, ``cols`` a row (``narrow_cols`` in the
    narrow drawing); the grid's unused axes removed."""
    c = min(narrow_cols if narrow else cols, n)
    rows = -(-n // c)
    fig, axes = plt.subplots(rows, c, figsize=(size[0] * c, size[1] * rows), squeeze=False)
    flat = list(axes.flat)
    for ax in flat[n:]:
        ax.remove()
    return fig, flat[:n]


def tight(fig, bottom_in: float = 0.0, top_in: float = 0.45) -> None:
    """``tight_layout`` leaving ``bottom_in`` inches for a legend below the panels and
    ``top_in`` for the title above them, whatever the figure's height."""
    h = fig.get_size_inches()[1]
    fig.tight_layout(rect=(0, bottom_in / h, 1, 1 - top_in / h))
