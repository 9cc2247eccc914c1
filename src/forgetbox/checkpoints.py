"""Safe checkpoint I/O and atomic writes.

- Weights are written as safetensors; ``.pt``/``.pth`` files are read only with
  ``torch.load(weights_only=True)``, so a pickle that would execute code fails to load.
- Every write goes to a temporary file in the destination folder and is moved into place with
  ``os.replace``: a crash leaves either the old file or the new one, never a torn one.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save, save_file

from .functional import assert_finite


class CheckpointError(ValueError):
    """A checkpoint cannot be read safely or does not match the model."""


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual permissions
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: object) -> None:
    """Strict JSON (NaN and infinities become null), written atomically."""
    text = json.dumps(_finite(obj), indent=2, default=_json_default, allow_nan=False)
    atomic_write_text(path, text)


def _finite(obj):
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def _json_default(obj):
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def save_state(
    path: str | Path, state: Mapping[str, torch.Tensor], metadata: Mapping | None = None
) -> None:
    """Save tensors as safetensors, atomically; ``metadata`` is stored as JSON strings."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
    atomic_write_bytes(path, save(tensors, metadata=meta))


def save_large(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping | None = None
) -> None:
    """Like :func:`save_state` for large tensors: streamed to a temporary file in the
    destination folder (no in-memory copy of the whole file), then renamed into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        meta = {k: json.dumps(v) for k, v in (metadata or {}).items()}
        save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, tmp, meta)
        os.chmod(tmp, 0o666 & ~_umask())
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_metadata(path: str | Path) -> dict:
    """The JSON metadata :func:`save_state`/:func:`save_large` stored in a safetensors file."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            raw = fh.metadata() or {}
    except Exception as exc:
        raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc
    try:
        return {k: json.loads(v) for k, v in raw.items()}
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: metadata is not valid JSON ({exc})") from exc


def load_state(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict safely: safetensors, or ``torch.load(weights_only=True)`` for .pt."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no such checkpoint: {path}")
    if path.suffix == ".safetensors":
        try:
            return load_file(str(path))
        except Exception as exc:  # safetensors raises its own error types
            raise CheckpointError(f"{path}: not a valid safetensors file ({exc})") from exc
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CheckpointError(
            f"{path}: refused to load ({type(exc).__name__}). Only plain tensors are accepted; "
            "a checkpoint that needs arbitrary code is never executed."
        ) from exc
    if isinstance(obj, Mapping) and "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise CheckpointError(f"{path}: expected a mapping of names to tensors")
    return dict(obj)


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], what: str) -> None:
    """Load ``state`` into ``model`` strictly, with specific errors; the model is unchanged on
    error (names, shapes and finiteness are checked before anything is copied)."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    if missing or extra:
        raise CheckpointError(
            f"{what}: parameter names do not match the model "
            f"(missing: {missing[:5]}{'...' if len(missing) > 5 else ''}; "
            f"unexpected: {extra[:5]}{'...' if len(extra) > 5 else ''})"
        )
    for name, t in own.items():
        if tuple(state[name].shape) != tuple(t.shape):
            raise CheckpointError(
                f"{what}: {name!r} has shape {tuple(state[name].shape)}, "
                f"the model expects {tuple(t.shape)}"
            )
    try:
        assert_finite(state, what)
    except ValueError as exc:
        raise CheckpointError(str(exc)) from exc
    model.load_state_dict({k: v.to(own[k].dtype) for k, v in state.items()})


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def tensors_sha256(*tensors: torch.Tensor) -> str:
    """SHA-256 over tensors' shapes, dtypes and bytes (in the order given)."""
    h = hashlib.sha256()
    for t in tensors:
        t = t.detach().cpu().contiguous()
        h.update(str(tuple(t.shape)).encode() + str(t.dtype).encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def state_sha256(model: torch.nn.Module) -> str:
    """SHA-256 over the model's tensors (names, shapes, dtypes and bytes, in name order)."""
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensors_sha256(t).encode())
    return h.hexdigest()


def sha256_indices(indices) -> str:
    """SHA-256 of the sorted indices written as comma-separated decimal text."""
    text = ",".join(str(int(i)) for i in sorted(int(i) for i in indices))
    return hashlib.sha256(text.encode()).hexdigest()


def config_hash(obj: object) -> str:
    """Short stable hash of a JSON-serialisable configuration (cache keys)."""
    blob = json.dumps(obj, sort_keys=True, default=_json_default).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
