"""A prepared state on disk: safetensors only (nothing in it can execute code), every file
checked against the SHA-256 recorded when it was written.

``kernel.safetensors`` holds the immutable factor (written once), ``cohort.safetensors`` (or a
request's ``cohort-NNNN.safetensors``) the requests answered so far, and ``prepared.json`` the
manifest with every file's SHA-256.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .. import ntk
from ..atomic import atomic_write_json
from ..checkpoints import CheckpointError, load_state, read_metadata, save_large
from ..hashing import sha256_file

FORMAT = "forgetbox-prepared/2"
KERNEL_FILE = "kernel.safetensors"
COHORT_FILE = "cohort.safetensors"
MANIFEST_FILE = "prepared.json"


def save_prepared(state: ntk.PreparedKernel, folder: str | Path, extra: dict | None = None) -> None:
    """Write ``kernel.safetensors`` (immutable), ``cohort.safetensors`` (the requests
    answered so far) and the manifest ``prepared.json`` with every file's SHA-256, each
    atomically, the manifest last (``extra``: more fields for the manifest)."""
    folder = Path(folder)
    kpath = folder / KERNEL_FILE
    if kpath.exists():
        if read_metadata(kpath).get("hashes") != state.hashes:
            raise CheckpointError(f"{kpath} holds the kernel of another model or data set")
    else:
        save_large(kpath, state.kernel_tensors(), {"format": FORMAT, **state.describe()})
    files = {KERNEL_FILE: sha256_file(kpath), COHORT_FILE: save_cohort(state, folder)}
    manifest = {"format": FORMAT, "files": files, "hashes": state.hashes, **(extra or {})}
    atomic_write_json(folder / MANIFEST_FILE, manifest)


def save_cohort(state: ntk.PreparedKernel, folder: str | Path, name: str = COHORT_FILE) -> str:
    """Write the requests ``state`` answered so far to ``folder/name``, atomically; its
    SHA-256."""
    path = Path(folder) / name
    meta = {"format": FORMAT, "kernel_hashes": state.hashes, "space": state.space}
    save_large(path, state.cohort_tensors(), meta)
    return sha256_file(path)


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
    _check_manifest(doc, path)
    return doc


def _check_manifest(doc: dict, path: Path) -> None:
    """The fields a manifest's reader relies on, of the right kind (a damaged or hand-edited
    manifest is refused naming the field, before any of it is used)."""
    files = doc["files"]
    if not isinstance(files, dict):
        raise CheckpointError(
            f"{path}: field 'files' must map file names to SHA-256 digests, got "
            f"{type(files).__name__}"
        )
    for name, digest in files.items():
        if not isinstance(digest, str) or not _is_sha256(digest):
            raise CheckpointError(
                f"{path}: field 'files' must map file names to SHA-256 digests (64 hexadecimal "
                f"digits), got {name!r}: {digest!r:.80}"
            )
    serves = doc.get("serves")
    if serves is not None and (not isinstance(serves, str) or not serves):
        raise CheckpointError(
            f"{path}: field 'serves' must be the folder of the ledger it serves, got {serves!r:.80}"
        )


def _is_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


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
) -> ntk.PreparedKernel:
    """Read a prepared state written by :func:`save_prepared`; every file is checked against
    its recorded SHA-256, and shapes and hashes against each other. ``cohort``:
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
    cls = (
        ntk.PreparedParams if meta.get("space") == ntk.PreparedParams.space else ntk.PreparedKernel
    )
    try:
        state = cls.from_tensors(meta, load_state(kpath), device)
    except CheckpointError as exc:
        raise CheckpointError(f"{kpath}: {exc}") from exc
    name, want = cohort if cohort is not None else (COHORT_FILE, manifest["files"].get(COHORT_FILE))
    cpath = folder / name
    if cohort is not None or cpath.exists():
        verify_file(cpath, want)
        state = _with_cohort(state, cpath, device)
    return state


def _with_cohort(state: ntk.PreparedKernel, cpath: Path, device) -> ntk.PreparedKernel:
    cmeta = read_metadata(cpath)
    if cmeta.get("kernel_hashes") != state.hashes:
        raise CheckpointError(f"{cpath}: belongs to another prepared kernel")
    if cmeta.get("space", ntk.PreparedKernel.space) != state.space:
        raise CheckpointError(f"{cpath}: the cohort of a state in another space")
    try:
        return state.with_cohort(load_state(cpath), device)
    except CheckpointError as exc:
        raise CheckpointError(f"{cpath}: {exc}") from exc
