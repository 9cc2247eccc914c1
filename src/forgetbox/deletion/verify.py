"""``forgetbox verify``: the auditor's check of a deletions folder.

Every finding is one line, ``ok`` or ``FAIL``: the ledger (chain, head, deployment; with the
key, every HMAC), request-numbered files beyond its last entry or left staged, each entry's
files (the scrubbed weights and the certificate against their recorded SHA-256, the summary
and the receipt recomputed), the data against the entries' hashes (``--data``), the prepared
state against the entries (``--prepared``: manifest, identity, kernel, every cohort file), and
receipts held by data subjects (``--receipt``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from ..checkpoints import CheckpointError
from ..hashing import data_sha256, sha256_file
from . import layout
from .files import load_data
from .ledger import Ledger, LedgerError
from .ledger_verify import read_ledger
from .prepared_files import KERNEL_FILE, MANIFEST_FILE, read_manifest
from .receipts import check_receipt, read_receipt, receipt_of, receipt_text
from .requests import summary_text


@dataclass(frozen=True)
class Finding:
    """One check's outcome."""

    ok: bool
    text: str

    def line(self) -> str:
        """``ok    text`` or ``FAIL  text``."""
        return ("ok    " if self.ok else "FAIL  ") + self.text


def _file(path: Path, want: str, what: str) -> Finding:
    if not path.is_file():
        return Finding(False, f"{what}: {path} is missing")
    if sha256_file(path) != want:
        return Finding(False, f"{what}: {path} does not match its recorded SHA-256 (edited)")
    return Finding(True, f"{what}: {path.name} verified")


def _derived(path: Path, text: str, what: str) -> Finding:
    if not path.is_file():
        return Finding(False, f"{what}: {path} is missing")
    if path.read_text() != text:
        return Finding(False, f"{what}: {path} is not what its entry gives (edited)")
    return Finding(True, f"{what}: {path.name} verified")


def entry_files(out: Path, ledger: Ledger, key: bytes | None) -> list[Finding]:
    """Every entry's files: the scrubbed weights and the certificate against their recorded
    SHA-256, the summary and the receipt against what the entry gives."""
    found = []
    for e in ledger.entries:
        n, what = e["request"], f"request {e['request']}"
        found.append(_file(out / e["scrubbed_file"], e["scrubbed_file_sha256"], what))
        cert_path = out / e["certificate_file"]
        cert = _file(cert_path, e["certificate_sha256"], what)
        found.append(cert)
        if cert.ok:
            summary = summary_text(json.loads(cert_path.read_text()), e)
            found.append(_derived(out / layout.file_name("summary", n), summary, what))
        receipt = receipt_text(receipt_of(ledger.deployment, e, key))
        found.append(_derived(out / layout.file_name("receipt", n), receipt, what))
    return found


def _leftovers(out: Path, prepared: Path | None, count: int) -> list[Finding]:
    found = [
        Finding(
            False,
            f"{p}: a file of a request after the ledger's last entry ({count}): "
            "entries were removed (a rollback)",
        )
        for p in layout.beyond(out, prepared, count)
    ]
    folders = [out] + ([prepared] if prepared else [])
    for number, stages in layout.staged(folders).items():
        state = "committed, files not moved into place" if number <= count else "never committed"
        found += [
            Finding(False, f"{s}: request {number} was interrupted ({state})") for s in stages
        ]
    return found


def _data(path: Path, ledger: Ledger) -> list[Finding]:
    x, y, _, _ = load_data(path)
    found = []
    for e in ledger.entries:
        n = e["n_train"]
        ok = len(y) >= n and data_sha256(x[:n], y[:n]) == e["data_sha256"]
        text = f"request {e['request']}: --data {path} " + (
            "holds the data it was served against"
            if ok
            else "is not the data it was served against"
        )
        found.append(Finding(ok, text))
    return found


def _prepared(folder: Path, ledger: Ledger, key: bytes | None) -> list[Finding]:
    try:
        manifest = read_manifest(folder, key)
    except CheckpointError as exc:
        return [Finding(False, str(exc))]
    found = [Finding(True, f"{folder / MANIFEST_FILE}: verified" + (" (HMAC)" if key else ""))]
    if ledger.deployment is not None and manifest["deployment"] != ledger.deployment:
        found.append(Finding(False, f"{folder}: belongs to deployment {manifest['deployment']}"))
    kernel = manifest["files"].get(KERNEL_FILE, "")
    found.append(_file(folder / KERNEL_FILE, kernel, f"{folder}"))
    manifest_sha = sha256_file(folder / MANIFEST_FILE)
    for e in ledger.entries:
        what = f"request {e['request']} (prepared)"
        if "prepared_cohort_file" not in e:
            found.append(Finding(False, f"{what}: served without the prepared state"))
            continue
        same = (
            e["prepared_kernel_sha256"] == kernel and e["prepared_manifest_sha256"] == manifest_sha
        )
        found.append(
            Finding(
                same,
                f"{what}: kernel and manifest " + ("as used" if same else "differ from those used"),
            )
        )
        found.append(_file(folder / e["prepared_cohort_file"], e["prepared_cohort_sha256"], what))
    return found


def verify_folder(
    out: str | Path,
    *,
    key: bytes | None = None,
    data: str | Path | None = None,
    prepared: str | Path | None = None,
    receipts: tuple = (),
) -> list[Finding]:
    """Every finding about the deletions folder ``out`` (see the module docstring)."""
    out = Path(out)
    prepared = Path(prepared) if prepared is not None else None
    if not (out / layout.LEDGER).is_file():
        return [Finding(False, f"{out}: no {layout.LEDGER} (not a deletions folder)")]
    try:
        ledger = read_ledger(out / layout.LEDGER, key=key)
    except LedgerError as exc:
        return [Finding(False, str(exc))]
    how = (
        "with the key (HMAC)"
        if key
        else "without a key: a rewrite of the whole chain is not detectable"
    )
    found = [
        Finding(
            True,
            f"{out / layout.LEDGER}: {len(ledger.entries)} entries, chain and head verified {how}",
        )
    ]
    found += _leftovers(out, prepared, len(ledger.entries))
    found += entry_files(out, ledger, key)
    if data is not None:
        found += _data(Path(data), ledger)
    if prepared is not None:
        found += _prepared(prepared, ledger, key)
    for path in receipts:
        try:
            found.append(
                Finding(
                    True, f"{path}: " + check_receipt(read_receipt(path), ledger, key, str(path))
                )
            )
        except LedgerError as exc:
            found.append(Finding(False, str(exc)))
    return found
