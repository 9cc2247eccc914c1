"""The package version, and the versions recorded with every result, certificate and prepared
state."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    """forgetbox's version (installed metadata, or the source's pyproject)."""
    try:
        return version("forgetbox")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0+local"


def versions() -> dict:
    """Versions of forgetbox and the libraries its numbers depend on."""
    import torch

    return {
        "forgetbox": package_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def source_commit() -> dict | None:
    """The git commit of the source tree forgetbox runs from (and whether it has uncommitted
    changes), or None outside a git checkout."""
    import subprocess
    from pathlib import Path

    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10
        )
        if head.returncode != 0:
            return None
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return {"commit": head.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def hardware(device: str = "cpu") -> dict:
    """The machine a run used: processor, cores, PyTorch threads, memory, the GPU, and the
    load average over the last 15 minutes when the record was made (a load well above the
    run's own threads means other jobs shared the cores, and its seconds are not an idle
    machine's)."""
    import os

    import torch

    info = {
        "platform": platform.platform(),
        "processor": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "memory_gib": _memory_gib(),
        "device": device,
    }
    if hasattr(os, "getloadavg"):
        info["load_average_15min"] = round(os.getloadavg()[2], 2)
    if torch.device(device).type == "cuda" and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(torch.device(device))
    return info


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _memory_gib() -> float | None:
    import os

    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None
