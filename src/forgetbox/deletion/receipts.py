"""Deletion receipts: what a data subject keeps to check later that their request is still in
the ledger.

A receipt (``receipt-NNNN.json``, printed when the request is served) names the deployment, the
request number, the cohort's hash and size, the data it was served against, the scrubbed
weights and the ledger entry's digest; with a ledger key it carries an HMAC over all of them.
:func:`check_receipt` compares it with a verified ledger: a ledger rolled back to before the
request, or rewritten without it, no longer holds an entry with that digest at that number. A
receipt is a function of its entry (and the key): the copy in the deletions folder is checked
by recomputing it, so it needs no hash of its own.
"""

from __future__ import annotations

import hmac
import json
from pathlib import Path

from ..atomic import strict_json
from ..hashing import canonical_json
from .ledger import Ledger, LedgerError, sign

RECEIPT_FORMAT = "forgetbox-receipt/1"
FIELDS = (
    "request",
    "created",
    "n_forget",
    "forget_indices_sha256",
    "data_sha256",
    "scrubbed_sha256",
    "entry_sha256",
)


def receipt_of(deployment: str, entry: dict, key: bytes | None) -> dict:
    """The receipt of a ledger entry (HMAC'd with the ledger's key when given)."""
    body = {"format": RECEIPT_FORMAT, "deployment": deployment, **{k: entry[k] for k in FIELDS}}
    body["authenticated"] = key is not None
    if key is not None:
        body["hmac"] = sign(key, canonical_json(body).encode())
    return body


def receipt_text(receipt: dict) -> str:
    """The receipt as written to ``receipt-NNNN.json`` (deterministic)."""
    return strict_json(receipt) + "\n"


def read_receipt(path: str | Path) -> dict:
    """A receipt file, its structure checked (``LedgerError`` naming the file otherwise)."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise LedgerError(f"{path}: not a readable receipt ({exc})") from exc
    if not isinstance(doc, dict) or doc.get("format") != RECEIPT_FORMAT:
        raise LedgerError(f"{path}: not a forgetbox receipt ({RECEIPT_FORMAT})")
    missing = [k for k in ("deployment", *FIELDS) if k not in doc]
    if missing:
        raise LedgerError(f"{path}: the receipt lacks {missing}")
    return doc


def check_receipt(receipt: dict, ledger: Ledger, key: bytes | None, where: str = "receipt") -> str:
    """Refuse (``LedgerError``) a receipt whose request the verified ``ledger`` no longer holds,
    or whose HMAC does not verify with the key; a line saying what was proved otherwise."""
    number = receipt["request"]
    if receipt["deployment"] != ledger.deployment:
        raise LedgerError(f"{where}: issued by deployment {receipt['deployment']}, not this one")
    if key is not None:
        body = {k: v for k, v in receipt.items() if k != "hmac"}
        want = sign(key, canonical_json(body).encode())
        if not hmac.compare_digest(str(receipt.get("hmac", "")), want):
            raise LedgerError(f"{where}: its HMAC does not verify with this key (not issued here)")
    if not isinstance(number, int) or not 1 <= number <= len(ledger.entries):
        raise LedgerError(
            f"{where}: request {number} is not in the ledger, which holds "
            f"{len(ledger.entries)} entries (the ledger was rolled back)"
        )
    entry = ledger.entries[number - 1]
    for name in FIELDS:
        if entry[name] != receipt[name]:
            raise LedgerError(
                f"{where}: request {number}'s {name} in the ledger is not the receipt's (the "
                "ledger was rewritten since the request was served)"
            )
    return f"request {number} is in the ledger as served ({receipt['n_forget']} samples)"
