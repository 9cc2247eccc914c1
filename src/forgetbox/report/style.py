"""What the figures share: colours, names of the subsets, and how a figure is saved (PNG and
SVG) and embedded in the report."""

from __future__ import annotations

import io
from dataclasses import dataclass
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
    """A drawn figure: its PNG and SVG bytes (both also written to disk)."""

    png: bytes
    svg: bytes

    def embedded(self) -> tuple[str, bytes]:
        """``(mime type, bytes)`` of the smaller of the two, for the report."""
        if len(self.svg) < len(self.png):
            return "image/svg+xml", self.svg
        return "image/png", self.png


def save(fig, out: Path, name: str) -> Figure:
    """Save ``fig`` as PNG and SVG under ``out`` (atomically); its :class:`Figure` record."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    svg = io.BytesIO()
    fig.savefig(svg, format="svg", bbox_inches="tight")
    plt.close(fig)
    drawn = Figure(buf.getvalue(), svg.getvalue())
    atomic_write_bytes(out / f"{name}.png", drawn.png)
    atomic_write_bytes(out / f"{name}.svg", drawn.svg)
    return drawn
