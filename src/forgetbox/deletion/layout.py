"""The files of a deletions folder and how a request's files are committed.

A request numbered N writes ``scrubbed-NNNN.safetensors``, ``certificate-NNNN.json``,
``summary-NNNN.txt`` and ``receipt-NNNN.json`` into ``--out`` (and, with a prepared state,
``cohort-NNNN.safetensors`` into its folder). They are first written into hidden staging
folders (``.staging-NNNN``); the ledger, written next, is the request's commit; then they are
moved to their names. So:

- a request stopped before its commit leaves only staging folders, which the next request
  discards (:func:`staged`);
- one stopped after its commit leaves the staged files of a committed entry, which the next
  request moves into place before anything else;
- a request-numbered file beyond the ledger's last entry can only mean that entries were
  removed (a truncated or rolled-back ledger): it is refused, naming the files
  (:func:`beyond`).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

LEDGER = "ledger.json"
# the kinds of request-numbered files, by folder: out (the deletions folder) or prepared
OUT_KINDS = {
    "scrubbed": ".safetensors",
    "certificate": ".json",
    "summary": ".txt",
    "receipt": ".json",
}
PREPARED_KINDS = {"cohort": ".safetensors"}
STAGING = ".staging-"
_NUMBERED = re.compile(r"^(?P<kind>[a-z]+)-(?P<number>\d{4,})\.(safetensors|json|txt)$")


def file_name(kind: str, number: int) -> str:
    """The name of request ``number``'s file of ``kind`` (``scrubbed``, ``cohort``, ...)."""
    suffix = {**OUT_KINDS, **PREPARED_KINDS}[kind]
    return f"{kind}-{number:04d}{suffix}"


def numbered(folder: Path, kinds: dict) -> dict[int, list[Path]]:
    """The request-numbered files of ``kinds`` in ``folder``, by request number."""
    out: dict[int, list[Path]] = {}
    if not Path(folder).is_dir():
        return out
    for path in sorted(Path(folder).iterdir()):
        m = _NUMBERED.match(path.name)
        if m and m["kind"] in kinds and path.name == file_name(m["kind"], int(m["number"])):
            out.setdefault(int(m["number"]), []).append(path)
    return out


def beyond(out: Path, prepared: Path | None, count: int) -> list[Path]:
    """Request-numbered files in ``out`` (and the prepared folder) numbered above ``count``,
    the ledger's last entry: left by entries that were removed."""
    found = [p for n, ps in numbered(out, OUT_KINDS).items() if n > count for p in ps]
    if prepared is not None:
        found += [
            p for n, ps in numbered(prepared, PREPARED_KINDS).items() if n > count for p in ps
        ]
    return sorted(found)


def staging(folder: Path, number: int) -> Path:
    """The hidden folder a request's files are written into before its commit."""
    return Path(folder) / f"{STAGING}{number:04d}"


def staged(folders: list[Path]) -> dict[int, list[Path]]:
    """Staging folders present in ``folders``, by request number."""
    out: dict[int, list[Path]] = {}
    for folder in folders:
        if folder is None or not Path(folder).is_dir():
            continue
        for path in Path(folder).glob(f"{STAGING}*"):
            number = path.name[len(STAGING) :]
            if path.is_dir() and number.isdigit():
                out.setdefault(int(number), []).append(path)
    return out


def move_into_place(stage: Path) -> list[str]:
    """Move every file of a staging folder into its parent folder and remove the staging
    folder; the names moved."""
    names = []
    for path in sorted(stage.iterdir()):
        os.replace(path, stage.parent / path.name)
        names.append(path.name)
    stage.rmdir()
    return names


def discard(stage: Path) -> None:
    """Remove an uncommitted request's staging folder."""
    shutil.rmtree(stage, ignore_errors=True)
