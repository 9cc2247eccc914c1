"""Atomic writes: every file forgetbox writes goes to a temporary file in the destination
folder, is flushed to disk and moved into place with ``os.replace``. A crash leaves either the
old file or the new one, never a torn one, and no temporary file behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .hashing import json_default


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; when the block succeeds the file written there
    is synced and renamed onto ``path``, when it fails (any exception) it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; use the usual permissions
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def strict_json(obj: object) -> str:
    """Strict JSON text (NaN and infinities become null), indented."""
    return json.dumps(_finite(obj), indent=2, default=json_default, allow_nan=False)


def atomic_write_json(path: str | Path, obj: object) -> None:
    """Strict JSON (see :func:`strict_json`), written atomically."""
    atomic_write_text(path, strict_json(obj))


def _finite(obj):
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


STAGE_PREFIX = ".outputs-"


@contextmanager
def staged_files(folder: str | Path, last: str | None = None) -> Iterator[Path]:
    """Yield a staging folder inside ``folder``: when the block succeeds, every file written
    there is moved into ``folder`` (``last`` after the others), each by one rename; when it
    fails (any exception), nothing is moved and ``folder`` is as it was. The staging folder is
    removed either way (and any left by a process killed before it could)."""
    folder = Path(folder)
    for stale in folder.glob(f"{STAGE_PREFIX}*"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(dir=folder, prefix=STAGE_PREFIX))
    try:
        yield stage
        for f in sorted(stage.iterdir(), key=lambda f: f.name == last):
            os.replace(f, folder / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
