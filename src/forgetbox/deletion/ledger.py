"""The deletion ledger: one entry per request, with the running information total."""

from __future__ import annotations

import json
from pathlib import Path


def ledger_append(
    ledger: list[dict], cert: dict, forget_indices: list[int], threshold_nats: float | None
) -> list[dict]:
    """New ledger with one more entry: the cohort, its bounds and the running total."""
    total = (ledger[-1]["running_total_white_box_nats"] if ledger else 0.0) + cert["bounds"][
        "white_box_nats"
    ]
    entry = {
        "request": len(ledger) + 1,
        "created": cert["created"],
        "method": cert["method"],
        "n_forget": len(forget_indices),
        "forget_indices": sorted(int(i) for i in forget_indices),
        "forget_indices_sha256": cert["hashes"]["forget_indices_sha256"],
        "weights_sha256": cert["hashes"]["weights_sha256"],
        "scrubbed_sha256": cert["hashes"]["scrubbed_sha256"],
        "white_box_nats": cert["bounds"]["white_box_nats"],
        "black_box_forget_nats_per_query": cert["bounds"]["black_box"]["forget"]["nats_per_query"],
        "bounds_are_estimates": cert["bounds"]["is_estimate"],
        "running_total_white_box_nats": total,
        "retrain_threshold_nats": threshold_nats,
        "retrain_due": threshold_nats is not None and total > threshold_nats,
    }
    return [*ledger, entry]


def read_ledger(path: Path) -> list[dict]:
    """The ledger at ``path`` (empty when there is none yet)."""
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the ledger is not valid JSON ({exc})") from exc
    if not isinstance(doc, list):
        raise ValueError(f"{path}: the ledger must be a JSON list")
    return doc


def forgotten_so_far(ledger: list[dict]) -> list[int]:
    """Every index forgotten by the ledger's requests, sorted."""
    return sorted({i for e in ledger for i in e["forget_indices"]})
