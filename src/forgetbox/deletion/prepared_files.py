"""A prepared state on disk: safetensors only (nothing in it can execute code), every file
checked against the SHA-256 recorded when it was written.

``kernel.safetensors`` holds the immutable factor (written once), ``cohort.safetensors`` (or a
request's ``cohort-NNNN.safetensors``) the requests answered so far, and ``prepared.json`` the
manifest with every file's SHA-256 and the state's deployment identifier (also in the kernel's
metadata): the ledger a state serves carries the same identifier, so the two are bound by
identity, not by where they lie. With a key the manifest is HMAC-authenticated; without one,
each ledger entry records the manifest's SHA-256.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

import torch

from .. import ntk
from ..atomic import atomic_write_json
from ..checkpoints import CheckpointError, load_state, read_metadata, save_large
from ..hashing import canonical_json, sha256_file
from ..methods import CertifiedState
from .ledger import DEPLOYMENT, new_deployment, sign

FORMAT = "forgetbox-prepared/3"
KERNEL_FILE = "kernel.safetensors"
COHORT_FILE = "cohort.safetensors"
MANIFEST_FILE = "prepared.json"


def save_prepared(
    state: ntk.PreparedKernel,
    folder: str | Path,
    extra: dict | None = None,
    *,
    deployment: str | None = None,
    key: bytes | None = None,
) -> str:
    """Write ``kernel.safetensors`` (immutable, with ``deployment`` in its metadata),
    ``cohort.safetensors`` (the requests answered so far) and the manifest ``prepared.json``
    with every file's SHA-256 (HMAC'd with ``key`` when given), each atomically, the manifest
    last (``extra``: more fields for the manifest). ``deployment``: the identifier the state
    and the ledger it serves share (default: a new one); returned."""
    deployment = deployment or new_deployment()
    if not DEPLOYMENT.fullmatch(deployment):
        raise ValueError("deployment must be 32 hexadecimal digits")
    folder = Path(folder)
    kpath = folder / KERNEL_FILE
    if kpath.exists():
        meta = read_metadata(kpath)
        if meta.get("hashes") != state.hashes or meta.get("deployment") != deployment:
            raise CheckpointError(f"{kpath} holds the kernel of another model, data or deployment")
    else:
        meta = {"format": FORMAT, "deployment": deployment, **state.describe()}
        save_large(kpath, state.kernel_tensors(), meta)
    files = {KERNEL_FILE: sha256_file(kpath), COHORT_FILE: save_cohort(state, folder)}
    manifest = {
        **(extra or {}),
        "format": FORMAT,
        "deployment": deployment,
        "files": files,
        "hashes": state.hashes,
        "authenticated": key is not None,
    }
    if key is not None:
        manifest["hmac"] = sign(key, canonical_json(manifest).encode())
    atomic_write_json(folder / MANIFEST_FILE, manifest)
    return deployment


def save_cohort(state: ntk.PreparedKernel, folder: str | Path, name: str = COHORT_FILE) -> str:
    """Write the requests ``state`` answered so far to ``folder/name``, atomically; its
    SHA-256."""
    path = Path(folder) / name
    meta = {"format": FORMAT, "kernel_hashes": state.hashes, "space": state.space}
    save_large(path, state.cohort_tensors(), meta)
    return sha256_file(path)


def read_manifest(folder: Path, key: bytes | None = None) -> dict:
    """``prepared.json``: the files of a prepared state and their SHA-256, its deployment and
    binding hashes, every field checked; an authenticated manifest needs its ``key``."""
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        raise CheckpointError(
            f"{folder}: no {MANIFEST_FILE} (an incomplete prepared state, or one written by an "
            "earlier forgetbox): run `forgetbox prepare` again"
        )
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a forgetbox {FORMAT} manifest")
    files, hashes = doc.get("files"), doc.get("hashes")
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
    if not isinstance(hashes, dict) or not isinstance(hashes.get("weights_sha256"), str):
        raise CheckpointError(f"{path}: field 'hashes' must hold the state's binding hashes")
    if not isinstance(doc.get("deployment"), str) or not DEPLOYMENT.fullmatch(doc["deployment"]):
        raise CheckpointError(f"{path}: field 'deployment' must be 32 hexadecimal digits")
    _check_manifest_hmac(doc, key, path)
    return doc


def _check_manifest_hmac(doc: dict, key: bytes | None, path: Path) -> None:
    if doc.get("authenticated") is True:
        if key is None:
            raise CheckpointError(f"{path}: the manifest is authenticated; give its key")
        body = {k: v for k, v in doc.items() if k != "hmac"}
        if not hmac.compare_digest(
            str(doc.get("hmac", "")), sign(key, canonical_json(body).encode())
        ):
            raise CheckpointError(
                f"{path}: the manifest's HMAC does not verify with this key (it was edited, or "
                "prepared with another key)"
            )
    elif key is not None:
        raise CheckpointError(f"{path}: the manifest was written without a key; drop the key")


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
    key: bytes | None = None,
) -> ntk.PreparedKernel:
    """Read a prepared state written by :func:`save_prepared`; every file is checked against
    its recorded SHA-256, the manifest against the kernel's metadata (and its HMAC with
    ``key``), and shapes and hashes against each other. ``cohort``: ``(file name, SHA-256)``
    of the cohort to load (the deletion ledger records one per request); default: the one the
    manifest lists."""
    folder = Path(folder)
    kpath = folder / KERNEL_FILE
    if not kpath.exists():
        raise CheckpointError(f"{folder}: no {KERNEL_FILE} (run `forgetbox prepare` first)")
    meta = read_metadata(kpath)
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{kpath}: not a forgetbox prepared kernel ({meta.get('format')})")
    manifest = read_manifest(folder, key)
    verify_file(kpath, manifest["files"].get(KERNEL_FILE))
    for field in ("deployment", "hashes"):
        if manifest[field] != meta.get(field):
            raise CheckpointError(
                f"{folder / MANIFEST_FILE}: field {field!r} is not the kernel's (the manifest "
                "was edited or belongs to another state)"
            )
    kinds = {k.space: k for k in (ntk.PreparedKernel, ntk.PreparedParams, CertifiedState)}
    space = meta.get("space", ntk.PreparedKernel.space)
    cls = kinds.get(space)
    if cls is None:
        raise CheckpointError(f"{kpath}: a prepared state of unknown kind {space!r}")
    if manifest.get("space", space) != space:
        raise CheckpointError(
            f"{folder / MANIFEST_FILE}: field 'space' ({manifest.get('space')!r}) is not the "
            f"kernel's ({space!r}): the manifest was edited or belongs to another state"
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
