"""forgetbox: one-shot forgetting for deep networks.

Implements "Forgetting Outside the Box" (Golatkar, Achille, Soatto, ECCV 2020): NTK scrubbing
(Prop. 2, eq. 10) with Fisher noise (eq. 11), the baselines, and the white-box (eq. 6) and
black-box (eq. 7) information bounds.
"""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("forgetbox")
except PackageNotFoundError:  # running from a source tree
    __version__ = "0.0.0+local"

__all__ = ["__version__", "scrub", "ScrubResult", "prepare", "load_prepared", "PreparedKernel"]


def __getattr__(name: str):
    # lazy, so `import forgetbox` stays light
    if name in ("scrub", "ScrubResult"):
        from . import api

        return getattr(api, name)
    if name in ("prepare", "load_prepared", "PreparedKernel"):
        from . import prepared

        return getattr(prepared, name)
    raise AttributeError(f"module 'forgetbox' has no attribute {name!r}")
