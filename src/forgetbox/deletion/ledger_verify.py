"""Verifying a deletion ledger (:mod:`forgetbox.deletion.ledger`): the structure, every
entry's digest (and HMAC), the chain from the deployment's genesis, the cohorts and their data,
the chain of weights, the running totals and mu, and the head; each failure names the entry
and the field."""

from __future__ import annotations

import hashlib
import hmac
import json
import math
from pathlib import Path

from ..hashing import sha256_indices
from ..privacy import compose
from .ledger import (
    DEPLOYMENT,
    INPUTS,
    LEDGER_FORMAT,
    MEASURED,
    OLD_FORMATS,
    REFERENCES,
    Ledger,
    LedgerError,
    digest_input,
    genesis,
    head_of,
    sign,
)


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
    "mu_total": (int, float),
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
    data = digest_input(e)
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


def _check_mu(e: dict, k: int, entries: list[dict], where: str) -> None:
    """The running mu is the composition of the certified entries' mu so far."""
    mu = e.get("certified_mu")
    if mu is not None and (isinstance(mu, bool) or not isinstance(mu, int | float) or mu < 0):
        raise LedgerError(f"{where}: entry {k}, field 'certified_mu' must be a number >= 0")
    before = entries[k - 2]["mu_total"] if k > 1 else 0.0
    if not math.isclose(e["mu_total"], compose([before, mu or 0.0]), rel_tol=1e-9, abs_tol=1e-15):
        raise LedgerError(f"{where}: entry {k}, field 'mu_total' is not the entries' composition")


def _check_totals(e: dict, k: int, totals: list[float], where: str) -> None:
    if e["bounds_reference"] not in REFERENCES:
        raise LedgerError(f"{where}: entry {k}, field 'bounds_reference' is unknown")
    white = e["white_box_nats"]
    totals[0] += white if e["bounds_reference"] in MEASURED else 0.0
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
        _check_mu(e, k, entries, where)
        previous = e["entry_sha256"]
    _check_head(doc, entries, key, where)
    return Ledger(doc["deployment"], entries)
