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
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from ..atomic import strict_json
from ..hashing import canonical_json, sha256_indices
from ..privacy import compose

LEDGER_FORMAT = "forgetbox-ledger/3"
OLD_FORMATS = ("forgetbox-ledger/2",)
HEAD_FORMAT = "forgetbox-ledger-head/1"
INPUTS = ("original", "previous")
DEPLOYMENT = re.compile(r"[0-9a-f]{32}")
DIGESTS = ("entry_sha256", "entry_hmac")
# what a bound was measured against; only measurements against a model trained on D_r count
# towards the information budget
# ("certified": an upper bound against exact retraining, from the certified method's guarantee)
REFERENCES = ("retrained", "estimate", "self", "certified")
MEASURED = ("retrained", "certified")


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


def digest_input(entry: dict) -> bytes:
    """The bytes an entry's digest and HMAC cover (every field but the digests)."""
    body = {k: v for k, v in entry.items() if k not in DIGESTS}
    return canonical_json(json.loads(strict_json(body))).encode()


def _sign(entry: dict, key: bytes | None) -> dict:
    data = digest_input(entry)
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
    mu_budget: float | None = None,
) -> dict:
    """The next entry of ``ledger`` for a served request (signed, chained). ``files``: the
    request's files and their SHA-256 (the certificate's included); ``data``: the data it was
    served against (``data_sha256``, ``data_set_sha256``, ``n_train`` and, when samples were
    appended, ``data_appended_from``). A certified request's mu composes with the earlier
    ones' (``mu_total = sqrt(sum mu_k^2)``, every release an adversary may have seen); the
    entry is ``retrain_due`` past ``threshold_nats`` measured or ``mu_budget``."""
    entries = ledger.entries
    reference = cert["bounds"]["reference"]
    white = cert["bounds"]["white_box_nats"]
    last = entries[-1] if entries else None
    measured = (last["running_total_measured_nats"] if last else 0.0) + (
        white if reference in MEASURED else 0.0
    )
    estimated = (last["running_total_estimated_nats"] if last else 0.0) + (
        white if reference == "estimate" else 0.0
    )
    mu = (cert.get("certified") or {}).get("mu")
    mu_total = compose([last["mu_total"] if last else 0.0, mu or 0.0])
    due = (threshold_nats is not None and measured > threshold_nats) or (
        mu_budget is not None and mu_total > mu_budget
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
        "certified_mu": mu,
        "mu_total": mu_total,
        "mu_budget": mu_budget,
        "retrain_due": due,
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


def forgotten_so_far(entries: list[dict]) -> list[int]:
    """Every index forgotten by the ledger's requests, sorted."""
    return sorted({i for e in entries for i in e["forget_indices"]})


def forgotten_in_order(entries: list[dict]) -> list[int]:
    """Every index forgotten, in request order (the order a prepared state answered them)."""
    return [i for e in entries for i in e["forget_indices"]]
