"""Safe checkpoint I/O.

Weights are written as safetensors; ``.pt``/``.pth`` files are read only with
``torch.load(weights_only=True)``, so a pickle that would execute code fails to load. Every
write is atomic (:mod:`forgetbox.atomic`).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save, save_file

from .atomic import atomic_path, atomic_write_bytes
from .functional import assert_finite


class CheckpointError(ValueError):
    """A checkpoint cannot be read safely or does not match the model."""


def _metadata(metadata: Mapping | None) -> dict[str, str]:
    return {k: json.dumps(v) for k, v in (metadata or {}).items()}


def save_state(
    path: str | Path, state: Mapping[str, torch.Tensor], metadata: Mapping | None = None
) -> None:
    """Save tensors as safetensors, atomically; ``metadata`` is stored as JSON strings."""
    tensors = {k: v.detach().contiguous().cpu() for k, v in state.items()}
    atomic_write_bytes(path, save(tensors, metadata=_metadata(metadata)))


def save_large(
    path: str | Path, tensors: Mapping[str, torch.Tensor], metadata: Mapping | None = None
) -> None:
    """Like :func:`save_state` for large tensors: streamed to the temporary file (no in-memory
    copy of the whole file), then renamed into place."""
    with atomic_path(path) as tmp:
        cpu = {k: v.detach().contiguous().cpu() for k, v in tensors.items()}
        save_file(cpu, str(tmp), _metadata(metadata))


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
