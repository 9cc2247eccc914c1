"""Reading a prepared state back (safetensors only: nothing in it can execute code)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import torch

from .. import ntk
from ..checkpoints import CheckpointError, load_state, read_metadata
from .prepared import COHORT_FILE, FORMAT, KERNEL_FILE, PreparedKernel


def load_prepared(folder: str | Path, device: str | torch.device = "cpu") -> PreparedKernel:
    """Read a prepared state written by :meth:`PreparedKernel.save`; shapes and hashes are
    checked."""
    folder = Path(folder)
    kpath, cpath = folder / KERNEL_FILE, folder / COHORT_FILE
    if not kpath.exists():
        raise CheckpointError(f"{folder}: no {KERNEL_FILE} (run `forgetbox prepare` first)")
    meta = read_metadata(kpath)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{kpath}: not a forgetbox prepared kernel ({meta.get('format')})")
    t = load_state(kpath)
    n, c, kernel = int(meta["n"]), int(meta["c"]), str(meta["kernel"])
    rows = 1 if kernel == ntk.Kernel.PSEUDO else c
    m = n * rows
    k = c if kernel == ntk.Kernel.PSEUDO else 1
    expect = {"chol": (m, m), "alpha": (m, k), "residuals": (n, c)}
    for name, shape in expect.items():
        if name not in t or tuple(t[name].shape) != shape:
            raise CheckpointError(f"{kpath}: {name!r} missing or of the wrong shape")
    for name in ("jt_alpha", "around"):
        if name not in t or t[name].ndim != 1 or len(t[name]) != len(t["around"]):
            raise CheckpointError(f"{kpath}: {name!r} missing or of the wrong shape")
    prep = PreparedKernel(
        kernel=kernel,
        loss=str(meta["loss"]),
        weight_decay=float(meta["weight_decay"]),
        n=n,
        c=c,
        chol=t["chol"].to(device),
        alpha=t["alpha"].to(device),
        residuals=t["residuals"].to(device),
        jt_alpha=t["jt_alpha"].to(device),
        around=t["around"].to(device),
        anchor=t["anchor"].to(device) if "anchor" in t else None,
        hashes=dict(meta["hashes"]),
        seconds=float(meta.get("seconds", 0.0)),
    )
    if cpath.exists():
        prep = _with_cohort(prep, cpath, m, rows, device)
    return prep


def _with_cohort(prep: PreparedKernel, cpath: Path, m: int, rows: int, device) -> PreparedKernel:
    cmeta = read_metadata(cpath)
    if cmeta.get("kernel_hashes") != prep.hashes:
        raise CheckpointError(f"{cpath}: belongs to another prepared kernel")
    ct = load_state(cpath)
    forgotten = ct["forgotten"].long()
    cols = ct["columns"]
    if len(forgotten) and tuple(cols.shape) != (m, len(forgotten) * rows):
        raise CheckpointError(f"{cpath}: columns of the wrong shape")
    return replace(prep, forgotten=forgotten, columns=cols.to(device) if len(forgotten) else None)
