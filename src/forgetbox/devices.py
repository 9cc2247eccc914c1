"""Devices: refuse one this PyTorch cannot use before any work."""

from __future__ import annotations

import torch


def check_device(name: str) -> torch.device:
    """``torch.device(name)`` if it is the CPU or a CUDA device PyTorch can see."""
    if not isinstance(name, str) or name.split(":")[0] not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda[:N], got {name!r}")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError) as exc:
        raise ValueError(f"unknown device {name!r}: {exc}") from exc
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda[:N], got {name!r}")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {name!r} asked for, but this PyTorch sees no CUDA device")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"device {name!r}: only {torch.cuda.device_count()} CUDA devices")
    return device
