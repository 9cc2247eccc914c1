"""Reading a prepared state back: safetensors only (nothing in it can execute code), every file
checked against the SHA-256 recorded when it was written."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import torch

from .. import ntk
from ..checkpoints import CheckpointError, load_state, read_metadata
from ..hashing import sha256_file
from .prepared import COHORT_FILE, FORMAT, KERNEL_FILE, MANIFEST_FILE, PreparedKernel
from .prepared_params import SPACE, PreparedParams


def read_manifest(folder: Path) -> dict:
    """``prepared.json``: the files of a prepared state and their SHA-256."""
    path = folder / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: no {MANIFEST_FILE} (an incomplete prepared state, or one written by "
            "forgetbox before 0.2): run `forgetbox prepare` again"
        )
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT or "files" not in doc:
        raise CheckpointError(f"{path}: not a forgetbox {FORMAT} manifest")
    return doc


def verify_file(path: Path, want: str | None) -> None:
    """Refuse ``path`` unless its SHA-256 is ``want``."""
    if want is None:
        raise CheckpointError(f"{path}: not listed in {MANIFEST_FILE} (no recorded SHA-256)")
    if not path.is_file():
        raise CheckpointError(f"{path}: missing from the prepared state")
    if sha256_file(path) != want:
        raise CheckpointError(
            f"{path}: its SHA-256 does not match the one recorded when it was written "
            "(the file was altered or replaced); prepare again"
        )


def load_prepared(
    folder: str | Path,
    device: str | torch.device = "cpu",
    *,
    cohort: tuple[str, str] | None = None,
) -> PreparedKernel:
    """Read a prepared state written by :meth:`PreparedKernel.save`; every file is checked
    against its recorded SHA-256, and shapes and hashes against each other. ``cohort``:
    ``(file name, SHA-256)`` of the cohort to load (the deletion ledger records one per
    request); default: the one the manifest lists."""
    folder = Path(folder)
    kpath = folder / KERNEL_FILE
    if not kpath.exists():
        raise CheckpointError(f"{folder}: no {KERNEL_FILE} (run `forgetbox prepare` first)")
    meta = read_metadata(kpath)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{kpath}: not a forgetbox prepared kernel ({meta.get('format')})")
    manifest = read_manifest(folder)
    verify_file(kpath, manifest["files"].get(KERNEL_FILE))
    prep = _kernel(kpath, meta, device)
    name, want = cohort if cohort is not None else (COHORT_FILE, manifest["files"].get(COHORT_FILE))
    cpath = folder / name
    if cohort is not None or cpath.exists():
        verify_file(cpath, want)
        prep = _with_cohort(prep, cpath, device)
    return prep


def _kernel(kpath: Path, meta: dict, device) -> PreparedKernel:
    t = load_state(kpath)
    n, c, kernel = int(meta["n"]), int(meta["c"]), str(meta["kernel"])
    params = meta.get("space") == SPACE
    if params:
        p = len(t["around"]) if "around" in t else -1
        m, k = p, 1
    else:
        m = n * (1 if kernel == ntk.Kernel.PSEUDO else c)
        k = c if kernel == ntk.Kernel.PSEUDO else 1
    expect = {"chol": (m, m), "alpha": (m, k), "residuals": (n, c)}
    for name, shape in expect.items():
        if name not in t or tuple(t[name].shape) != shape:
            raise CheckpointError(f"{kpath}: {name!r} missing or of the wrong shape")
    for name in ("jt_alpha", "around"):
        if name not in t or t[name].ndim != 1 or len(t[name]) != len(t["around"]):
            raise CheckpointError(f"{kpath}: {name!r} missing or of the wrong shape")
    cls = PreparedParams if params else PreparedKernel
    return cls(
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


def _with_cohort(prep: PreparedKernel, cpath: Path, device) -> PreparedKernel:
    cmeta = read_metadata(cpath)
    if cmeta.get("kernel_hashes") != prep.hashes:
        raise CheckpointError(f"{cpath}: belongs to another prepared kernel")
    ct = load_state(cpath)
    forgotten = ct["forgotten"].long()
    cols = ct["columns"]
    m = prep.chol.shape[0]
    if len(forgotten) and tuple(cols.shape) != (m, len(forgotten) * prep.rows):
        raise CheckpointError(f"{cpath}: columns of the wrong shape")
    if len(forgotten) and (forgotten.min() < 0 or forgotten.max() >= prep.n):
        raise CheckpointError(f"{cpath}: forgotten indices outside the prepared data")
    if len(forgotten) and len(forgotten.unique()) != len(forgotten):
        raise CheckpointError(f"{cpath}: forgotten indices repeat")
    columns = cols.to(device) if len(forgotten) else None
    if not isinstance(prep, PreparedParams):
        return replace(prep, forgotten=forgotten, columns=columns)
    if (cmeta.get("space") != SPACE) or "jacobian" not in ct:
        raise CheckpointError(f"{cpath}: not the cohort of a parameter-space prepared state")
    jac = ct["jacobian"]
    if len(forgotten) and tuple(jac.shape) != (len(forgotten) * prep.rows, m):
        raise CheckpointError(f"{cpath}: jacobian of the wrong shape")
    jacobian = jac.to(device) if len(forgotten) else None
    return replace(prep, forgotten=forgotten, columns=columns, jacobian=jacobian)
