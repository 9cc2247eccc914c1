"""Checks of paths before any work: inputs that exist and are of the right kind, an output
folder that can be written, and no output that would overwrite an input."""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path


class PathError(ValueError):
    """A path given on the command line (or to the API) cannot serve its purpose."""


def input_file(path: str | Path | None, flag: str) -> Path | None:
    """``path`` if it is an existing file (None passes through)."""
    if path is None:
        return None
    path = Path(path)
    if path.is_dir():
        raise PathError(f"{flag} {path}: a folder where a file belongs")
    if not path.exists():
        raise PathError(f"{flag} {path}: no such file")
    return path


def input_dir(path: str | Path | None, flag: str) -> Path | None:
    """``path`` if it is an existing folder (None passes through)."""
    if path is None:
        return None
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise PathError(f"{flag} {path}: a file where a folder belongs")
    if not path.exists():
        raise PathError(f"{flag} {path}: no such folder")
    return path


def data_path(path: str | Path, flag: str = "--data") -> Path:
    """An ``.npz`` file or an image folder."""
    path = Path(path)
    if not path.exists():
        raise PathError(f"{flag} {path}: no such file or folder")
    if path.is_dir() or path.suffix == ".npz":
        return path
    raise PathError(f"{flag} {path}: must be an .npz file of arrays or an image folder")


def _nearest_existing(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path(".")


def output_dir(path: str | Path, flag: str = "--out") -> Path:
    """A folder forgetbox may create or write into: not a file, not a dangling link, on a
    writable file system. Nothing is created here."""
    path = Path(path)
    if path.is_symlink() and not path.exists():
        raise PathError(f"{flag} {path}: a dangling symbolic link; remove it or choose another")
    if path.exists() and not path.is_dir():
        raise PathError(f"{flag} {path}: an existing file, not a folder; choose another {flag}")
    base = _nearest_existing(path)
    if not base.is_dir():
        raise PathError(f"{flag} {path}: {base} is a file, so the folder cannot be created")
    if not os.access(base, os.W_OK | os.X_OK):
        raise PathError(
            f"{flag} {path}: {base} is not writable (permissions or a read-only file system)"
        )
    return path


def not_overwritten(outputs: Iterable[Path], inputs: dict[str, Path | None]) -> None:
    """Refuse when a file to be written is one of the inputs. Inputs are compared after
    following links; an output path is replaced, not written through, so its own link (if it
    is one) is not followed."""
    given = {flag: Path(p).resolve() for flag, p in inputs.items() if p is not None}
    for out in outputs:
        target = Path(out).parent.resolve() / Path(out).name
        for flag, path in given.items():
            if target == path:
                raise PathError(
                    f"{flag} {inputs[flag]} would be overwritten by this request's output "
                    f"{out}; copy it elsewhere or choose another --out"
                )
