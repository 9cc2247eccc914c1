"""The deletion ledger: one entry per request, hash-chained so that an edit is detected.

``ledger.json`` is ``{"format": "forgetbox-ledger/3", "deployment": id, "authenticated": bool,
"entries": [...], "head": {...}}``. ``deployment`` is a random identifier fixed by the first
request (or by the prepared state it serves); the chain starts from ``genesis(deployment)``, so
entries cannot be moved to another deployment's ledger. Each entry holds what the request did
(cohort, the data it was served against, input and scrubbed weights, its certificate's SHA-256,
bounds, running totals) plus ``previous_entry_sha256`` and ``entry_sha256``, the SHA-256 of the
entry's canonical JSON (sorted keys, every field but the digests); with a key, also
``entry_hmac`` (HMAC-SHA256 over the same bytes). The ``head`` records the number of entries and
the last entry's digest, HMAC-authenticated with the key: a truncated chain then no longer
matches its head. :func:`verify_ledger` recomputes every digest, the head, the index hashes, the
weight chain (each request starts from the previous one's scrubbed weights, or from the
original weights when it says so) and the running totals, and names the entry and the field of
the first mismatch.

A hash chain detects an edit of any entry, not a rewrite of the whole chain by someone who can
write the file: against that, give a key (``--ledger-key-file``) kept away from the ledger;
without one, truncation shows in the request-numbered files left beyond the last entry
(:mod:`forgetbox.deletion.layout`) and in the receipts held by data subjects
(:mod:`forgetbox.deletion.receipts`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import strict_json
from ..hashing import canonical_json, sha256_indices

LEDGER_FORMAT = "forgetbox-ledger/3"
OLD_FORMATS = ("forgetbox-ledger/2",)
HEAD_FORMAT = "forgetbox-ledger-head/1"
INPUTS = ("original", "previous")
DEPLOYMENT = re.compile(r"[0-9a-f]{32}")
DIGESTS = ("entry_sha256", "entry_hmac")
# what a bound was measured against; only measurements against a model trained on D_r count
# towards the information budget
REFERENCES = ("retrained", "estimate", "self")


class LedgerError(ValueError):
    """The ledger is malformed or does not verify (names the entry and the field)."""


def read_key(path: str | Path | None) -> bytes | None:
    """The HMAC key from a file (its bytes, surrounding whitespace removed), or None."""
    if path is None:
        return None
    path = Path(path)
    if not path.is_file():
        raise LedgerError(f"--ledger-key-file {path}: no such file")
    key = path.read_bytes().strip()
    if len(key) < 16:
        raise LedgerError(f"--ledger-key-file {path}: the key must have at least 16 bytes")
    return key


@dataclass(frozen=True)
class Ledger:
    """A verified ledger: its deployment (None before the first request) and entries."""

    deployment: str | None = None
    entries: list[dict] = field(default_factory=list)


def new_deployment() -> str:
    """A random deployment identifier (128 bits, hex)."""
    return secrets.token_hex(16)


def genesis(deployment: str) -> str:
    """The digest entry 1 chains to: bound to the deployment."""
    return hashlib.sha256(f"{LEDGER_FORMAT}|{deployment}".encode()).hexdigest()


def sign(key: bytes, data: bytes) -> str:
    """HMAC-SHA256 of ``data`` under ``key`` (hex)."""
    return hmac.new(key, data, hashlib.sha256).hexdigest()


def _head_input(deployment: str, count: int, last: str) -> bytes:
    body = {"format": HEAD_FORMAT, "deployment": deployment, "entries": count, "last": last}
    return canonical_json(body).encode()


def head_of(deployment: str, entries: list[dict], key: bytes | None) -> dict:
    """The ledger's head: entry count and last digest (HMAC'd with the key when given)."""
    last = entries[-1]["entry_sha256"] if entries else genesis(deployment)
    head = {"entries": len(entries), "entry_sha256": last}
    if key is not None:
        head["hmac"] = sign(key, _head_input(deployment, len(entries), last))
    return head


def _digest_input(entry: dict) -> bytes:
    body = {k: v for k, v in entry.items() if k not in DIGESTS}
    return canonical_json(json.loads(strict_json(body))).encode()


def _sign(entry: dict, key: bytes | None) -> dict:
    data = _digest_input(entry)
    out = {k: v for k, v in entry.items() if k not in DIGESTS}
    out["entry_sha256"] = hashlib.sha256(data).hexdigest()
    if key is not None:
        out["entry_hmac"] = sign(key, data)
    return json.loads(strict_json(out))


def new_entry(
    ledger: Ledger,
    cert: dict,
    forget_indices: list[int],
    *,
    input_weights: str,
    files: dict,
    data: dict,
    threshold_nats: float | None,
    key: bytes | None,
) -> dict:
    """The next entry of ``ledger`` for a served request (signed, chained). ``files``: the
    request's files and their SHA-256 (the certificate's included); ``data``: the data it was
    served against (``data_sha256``, ``data_set_sha256``, ``n_train`` and, when samples were
    appended, ``data_appended_from``)."""
    entries = ledger.entries
    reference = cert["bounds"]["reference"]
    white = cert["bounds"]["white_box_nats"]
    last = entries[-1] if entries else None
    measured = (last["running_total_measured_nats"] if last else 0.0) + (
        white if reference == "retrained" else 0.0
    )
    estimated = (last["running_total_estimated_nats"] if last else 0.0) + (
        white if reference == "estimate" else 0.0
    )
    entry = {
        "request": len(entries) + 1,
        "created": cert["created"],
        "method": cert["method"],
        "input": input_weights,
        "n_forget": len(forget_indices),
        "forget_indices": sorted(int(i) for i in forget_indices),
        "forget_indices_sha256": sha256_indices(forget_indices),
        "weights_sha256": cert["hashes"]["weights_sha256"],
        "scrubbed_sha256": cert["hashes"]["scrubbed_sha256"],
        **data,
        **files,
        "white_box_nats": white,
        "black_box_forget_nats_per_query": cert["bounds"]["black_box"]["forget"]["nats_per_query"],
        "bounds_reference": reference,
        "running_total_measured_nats": measured,
        "running_total_estimated_nats": estimated,
        "retrain_threshold_nats": threshold_nats,
        "retrain_due": threshold_nats is not None and measured > threshold_nats,
        "previous_entry_sha256": last["entry_sha256"] if last else genesis(ledger.deployment),
    }
    return _sign(entry, key)


def ledger_document(ledger: Ledger, key: bytes | None) -> dict:
    """The ``ledger.json`` document of ``ledger`` with its head (authenticated when a key is
    given)."""
    return {
        "format": LEDGER_FORMAT,
        "deployment": ledger.deployment,
        "authenticated": key is not None,
        "entries": ledger.entries,
        "head": head_of(ledger.deployment, ledger.entries, key),
    }


def read_ledger(path: Path, *, key: bytes | None = None, n_train: int | None = None) -> Ledger:
    """The verified ledger at ``path`` (empty, with no deployment, when there is none yet)."""
    path = Path(path)
    if not path.exists():
        return Ledger()
    if path.is_dir():
        raise LedgerError(f"{path}: a folder where the ledger file belongs")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LedgerError(f"{path}: the ledger is not valid JSON ({exc})") from exc
    return verify_ledger(doc, key=key, n_train=n_train, where=str(path))


_FIELDS = {
    "request": int,
    "created": str,
    "method": str,
    "input": str,
    "n_forget": int,
    "forget_indices": list,
    "forget_indices_sha256": str,
    "weights_sha256": str,
    "scrubbed_sha256": str,
    "data_sha256": str,
    "data_set_sha256": str,
    "n_train": int,
    "certificate_file": str,
    "certificate_sha256": str,
    "white_box_nats": (int, float),
    "bounds_reference": str,
    "running_total_measured_nats": (int, float),
    "running_total_estimated_nats": (int, float),
    "retrain_due": bool,
    "previous_entry_sha256": str,
    "entry_sha256": str,
}


def _structure(doc, where: str, key: bytes | None) -> list[dict]:
    if isinstance(doc, list) or (isinstance(doc, dict) and doc.get("format") in OLD_FORMATS):
        raise LedgerError(
            f"{where}: a ledger of an earlier forgetbox (no deployment, head or data binding) "
            "cannot be verified to this standard; start a new --out folder (keep the old one as "
            "a record)"
        )
    if not isinstance(doc, dict) or doc.get("format") != LEDGER_FORMAT:
        raise LedgerError(f"{where}: not a forgetbox ledger (format {LEDGER_FORMAT!r} expected)")
    entries = doc.get("entries")
    if not isinstance(entries, list):
        raise LedgerError(f"{where}: 'entries' must be a list")
    if not isinstance(doc.get("deployment"), str) or not DEPLOYMENT.fullmatch(doc["deployment"]):
        raise LedgerError(f"{where}: 'deployment' must be 32 hexadecimal digits")
    if not isinstance(doc.get("head"), dict):
        raise LedgerError(f"{where}: the ledger has no head (entry count and last digest)")
    if doc.get("authenticated") and key is None:
        raise LedgerError(f"{where}: the ledger is authenticated; give its --ledger-key-file")
    if key is not None and entries and not doc.get("authenticated"):
        raise LedgerError(f"{where}: the ledger was written without a key; drop --ledger-key-file")
    for k, e in enumerate(entries, 1):
        if not isinstance(e, dict):
            raise LedgerError(f"{where}: entry {k} is not an object")
        for name, kind in _FIELDS.items():
            if name not in e:
                raise LedgerError(f"{where}: entry {k} lacks the field {name!r}")
            if not isinstance(e[name], kind) or (kind is int and isinstance(e[name], bool)):
                raise LedgerError(f"{where}: entry {k}, field {name!r} has the wrong type")
    return entries


def _check_head(doc: dict, entries: list[dict], key: bytes | None, where: str) -> None:
    """The head names the last entry and the count; with a key, its HMAC verifies."""
    head, deployment = doc["head"], doc["deployment"]
    want = head_of(deployment, entries, key)
    if head.get("entries") != want["entries"] or head.get("entry_sha256") != want["entry_sha256"]:
        raise LedgerError(
            f"{where}: the head records {head.get('entries')} entries but the chain has "
            f"{len(entries)} (entries were removed or the chain rewritten)"
        )
    if key is not None and not hmac.compare_digest(str(head.get("hmac", "")), want["hmac"]):
        raise LedgerError(
            f"{where}: the head's HMAC does not verify with this key (the ledger was truncated "
            "or rewritten without the key)"
        )


def _check_digests(e: dict, k: int, previous: str, key: bytes | None, where: str) -> None:
    if e["previous_entry_sha256"] != previous:
        raise LedgerError(
            f"{where}: entry {k}, field 'previous_entry_sha256' does not match entry {k - 1} "
            "(an entry was removed, reordered or edited)"
        )
    data = _digest_input(e)
    if not hmac.compare_digest(e["entry_sha256"], hashlib.sha256(data).hexdigest()):
        changed = "its content was edited after it was written"
        raise LedgerError(f"{where}: entry {k}, field 'entry_sha256' does not verify ({changed})")
    if key is not None:
        want = sign(key, data)
        if not hmac.compare_digest(str(e.get("entry_hmac", "")), want):
            raise LedgerError(
                f"{where}: entry {k}, field 'entry_hmac' does not verify with this key"
            )


def _check_cohort(e: dict, k: int, seen: set[int], n_train: int | None, where: str) -> None:
    idx = e["forget_indices"]
    if not all(isinstance(i, int) and not isinstance(i, bool) for i in idx):
        raise LedgerError(f"{where}: entry {k}, field 'forget_indices' holds non-integers")
    if idx != sorted(set(idx)):
        raise LedgerError(f"{where}: entry {k}, field 'forget_indices' is not sorted and unique")
    if e["n_forget"] != len(idx):
        raise LedgerError(f"{where}: entry {k}, field 'n_forget' is not len(forget_indices)")
    if sha256_indices(idx) != e["forget_indices_sha256"]:
        raise LedgerError(
            f"{where}: entry {k}, field 'forget_indices' does not match forget_indices_sha256"
        )
    if n_train is not None and idx and (idx[0] < 0 or idx[-1] >= n_train):
        raise LedgerError(
            f"{where}: entry {k}, field 'forget_indices' lies outside the {n_train} training "
            "samples of --data (another data set?)"
        )
    again = seen & set(idx)
    if again:
        raise LedgerError(
            f"{where}: entry {k}, field 'forget_indices' repeats indices of an earlier entry "
            f"({sorted(again)[:5]})"
        )
    seen |= set(idx)


def _check_data(e: dict, k: int, entries: list[dict], where: str) -> None:
    """Each entry's cohort lies in its data; the data changes only by an explicit append."""
    idx = e["forget_indices"]
    if e["n_train"] < 2 or (idx and idx[-1] >= e["n_train"]):
        raise LedgerError(f"{where}: entry {k}, field 'n_train' does not hold its cohort")
    if k == 1:
        return
    prev = entries[k - 2]
    if e["data_sha256"] == prev["data_sha256"]:
        return
    if e.get("data_appended_from") != prev["n_train"] or e["n_train"] <= prev["n_train"]:
        raise LedgerError(
            f"{where}: entry {k}, field 'data_sha256' differs from entry {k - 1}'s without a "
            "recorded append (the data set was replaced or reordered)"
        )


def _check_weights(e: dict, k: int, entries: list[dict], where: str) -> None:
    if e["input"] not in INPUTS:
        raise LedgerError(f"{where}: entry {k}, field 'input' must be one of {INPUTS}")
    if k == 1:
        if e["input"] != "original":
            raise LedgerError(f"{where}: entry 1, field 'input' must be 'original'")
        return
    if e["input"] == "original":
        want, what = entries[0]["weights_sha256"], "the original weights (entry 1's)"
    else:
        want, what = entries[k - 2]["scrubbed_sha256"], f"entry {k - 1}'s scrubbed weights"
    if e["weights_sha256"] != want:
        raise LedgerError(f"{where}: entry {k}, field 'weights_sha256' is not {what}")


def _check_totals(e: dict, k: int, totals: list[float], where: str) -> None:
    if e["bounds_reference"] not in REFERENCES:
        raise LedgerError(f"{where}: entry {k}, field 'bounds_reference' is unknown")
    white = e["white_box_nats"]
    totals[0] += white if e["bounds_reference"] == "retrained" else 0.0
    totals[1] += white if e["bounds_reference"] == "estimate" else 0.0
    for name, total in zip(
        ("running_total_measured_nats", "running_total_estimated_nats"), totals, strict=True
    ):
        if not math.isclose(e[name], total, rel_tol=1e-9, abs_tol=1e-12):
            raise LedgerError(f"{where}: entry {k}, field {name!r} is not the sum of the entries")


def verify_ledger(
    doc, *, key: bytes | None = None, n_train: int | None = None, where: str = "ledger"
) -> Ledger:
    """Check a ledger document entry by entry, and its head (see the module docstring)."""
    entries = _structure(doc, where, key)
    previous, seen, totals = genesis(doc["deployment"]), set(), [0.0, 0.0]
    for k, e in enumerate(entries, 1):
        if e["request"] != k:
            raise LedgerError(f"{where}: entry {k}, field 'request' is {e['request']}, not {k}")
        _check_digests(e, k, previous, key, where)
        _check_cohort(e, k, seen, n_train, where)
        _check_data(e, k, entries, where)
        _check_weights(e, k, entries, where)
        _check_totals(e, k, totals, where)
        previous = e["entry_sha256"]
    _check_head(doc, entries, key, where)
    return Ledger(doc["deployment"], entries)


def forgotten_so_far(entries: list[dict]) -> list[int]:
    """Every index forgotten by the ledger's requests, sorted."""
    return sorted({i for e in entries for i in e["forget_indices"]})


def forgotten_in_order(entries: list[dict]) -> list[int]:
    """Every index forgotten, in request order (the order a prepared state answered them)."""
    return [i for e in entries for i in e["forget_indices"]]
