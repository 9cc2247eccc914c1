"""The package version, and the versions recorded with every result, certificate and prepared
state."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version


def package_version() -> str:
    try:
        return version("forgetbox")
    except PackageNotFoundError:  # running from a source tree
        return "0.0.0+local"


def versions() -> dict:
    import torch

    return {
        "forgetbox": package_version(),
        "torch": torch.__version__,
        "python": platform.python_version(),
    }
