"""Content hashes: SHA-256 of files, tensors, models, index sets and configurations.

Every hash forgetbox records (certificates, the ledger, prepared state, cache keys) comes from
here, so a value written by one part can be checked by another.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from pathlib import Path

import torch


def file_digest(path: str | Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB pieces (``algorithm``: any of hashlib's)."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 of a file's bytes (hex)."""
    return file_digest(path, "sha256")


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """SHA-256 over tensors' shapes, dtypes and bytes (in the order given)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


DATA_FORMAT = b"forgetbox-data/1"


def _canonical_rows(x, i: int, j: int) -> torch.Tensor:
    """Rows ``i:j`` of ``x`` (a tensor, or rows read from disk) as forgetbox computes on them:
    floating inputs as they are, integer inputs as float32; contiguous on the CPU."""
    rows = torch.as_tensor(x[i:j]).detach().cpu()
    return (rows if rows.is_floating_point() else rows.float()).contiguous()


def data_sha256(x, y: torch.Tensor, batch: int = 1024) -> str:
    """SHA-256 of a training set D = (inputs, labels) in its order: the input shape and dtype,
    then every sample's bytes, then the labels (int64). ``x`` may be a tensor or
    :class:`~forgetbox.inputs.Rows` read a batch at a time: the same data gives the same hash
    whichever way it is held (a deletion ledger records it per request)."""
    n = len(x)
    first = _canonical_rows(x, 0, 1)
    h = hashlib.sha256(DATA_FORMAT)
    h.update(f"{n}|{tuple(first.shape[1:])}|{first.dtype}".encode())
    for i in range(0, n, batch):
        h.update(_canonical_rows(x, i, min(n, i + batch)).reshape(-1).view(torch.uint8).numpy())
    h.update(torch.as_tensor(y).long().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def data_set_sha256(x, y: torch.Tensor, batch: int = 1024) -> str:
    """SHA-256 of D as a set: the sorted digests of its samples (input bytes and label), so the
    same samples in another order give the same value (tells a reordering from a change)."""
    labels = torch.as_tensor(y).long().cpu()
    digests = []
    for i in range(0, len(x), batch):
        part = labels[i : i + batch]
        rows = _canonical_rows(x, i, i + len(part)).reshape(len(part), -1).view(torch.uint8)
        for row, label in zip(rows.numpy(), part.tolist(), strict=True):
            digests.append(hashlib.sha256(row.tobytes() + str(label).encode()).digest())
    return hashlib.sha256(b"".join(sorted(digests))).hexdigest()


def state_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the model's tensors (names, shapes, dtypes and bytes, in name order)."""
    return named_tensors_sha256(model.state_dict())


def named_tensors_sha256(tensors) -> str:
    """SHA-256 over a mapping of named tensors (names, shapes, dtypes, bytes; name order)."""
    h = hashlib.sha256()
    for name, t in sorted(tensors.items()):
        h.update(name.encode())
        h.update(tensors_sha256(t).encode())
    return h.hexdigest()


def sha256_indices(indices: Iterable[int]) -> str:
    """SHA-256 of the sorted indices written as comma-separated decimal text."""
    text = ",".join(str(int(i)) for i in sorted(int(i) for i in indices))
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_text(text: str) -> str:
    """SHA-256 of ``text`` (UTF-8, hex)."""
    return hashlib.sha256(text.encode()).hexdigest()


def json_default(obj):
    """JSON form of the non-JSON values forgetbox writes (tensors, paths, dtypes, numpy)."""
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.dtype):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def canonical_json(obj: object) -> str:
    """Deterministic JSON text (sorted keys, no spaces) for hashing."""
    return json.dumps(obj, sort_keys=True, default=json_default, separators=(",", ":"))


def config_hash(obj: object) -> str:
    """Short stable hash of a JSON-serialisable configuration (cache keys)."""
    blob = json.dumps(obj, sort_keys=True, default=json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
