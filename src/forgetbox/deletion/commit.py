"""Writing a served request: its files into staging folders, the ledger (the commit), then the
files under their names and the stable names (:mod:`forgetbox.deletion.layout`).

The entry records the SHA-256 of the scrubbed weights, the certificate and (with a prepared
state) the cohort file, kernel and manifest, and the data's hashes; the summary and the receipt
are functions of the certificate and the entry, so they are checked by recomputing them.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path

from ..atomic import atomic_path, atomic_write_json, atomic_write_text, strict_json
from ..checkpoints import save_state
from ..hashing import sha256_file
from . import layout
from .ledger import Ledger, ledger_document, new_entry
from .plan import Plan
from .prepared_files import KERNEL_FILE, read_manifest, save_cohort
from .receipts import receipt_of, receipt_text
from .requests import summary_text


def recover(plan: Plan, log: Callable[[str], None]) -> None:
    """Finish what an interrupted request left: move the staged files of committed entries
    into place; discard the staging folders of requests never committed."""
    for number, stages in plan.recover.items():
        for stage in stages:
            names = layout.move_into_place(stage)
            log(f"request {number} was committed but its files were not in place: moved {names}")
    folders = [Path(plan.req.out)] + ([Path(plan.req.prepared)] if plan.req.prepared else [])
    for number, stages in layout.staged(folders).items():
        if number > len(plan.ledger.entries):
            for stage in stages:
                layout.discard(stage)
            log(f"discarded the files of request {number}, interrupted before its commit")


def _link(path: Path, target: str) -> None:
    """``path`` -> ``target`` (a name in the same folder) as a symbolic link, atomically; a
    copy where links cannot be made."""
    tmp = path.with_name(f".{path.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target, tmp)
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)
        with atomic_path(path) as out:
            out.write_bytes((path.parent / target).read_bytes())


def _certificate(plan: Plan, result) -> dict:
    req, cert = plan.req, result.certificate
    cert["request"] = plan.number
    cert["deployment"] = plan.deployment
    cert["hashes"]["weights_file_sha256"] = sha256_file(req.files.weights)
    cert["hashes"]["pretrained_file_sha256"] = sha256_file(req.files.pretrained)
    cert["hashes"]["data_sha256"] = plan.data["data_sha256"]
    cert["inputs"] = {
        "weights": str(req.files.weights),
        "pretrained": str(req.files.pretrained),
        "data": str(req.data),
        "previously_forgotten": len(plan.cohort.earlier),
        "input_weights": plan.input_weights,
    }
    return cert


def _stage_files(plan: Plan, result, cert: dict) -> tuple[Path, Path | None, dict]:
    """Write the scrubbed weights, the certificate and the prepared cohort into staging
    folders; the entry's file fields."""
    out, n = Path(plan.req.out), plan.number
    stage = layout.staging(out, n)
    stage.mkdir(parents=True, exist_ok=True)
    scrubbed, certificate = layout.file_name("scrubbed", n), layout.file_name("certificate", n)
    save_state(stage / scrubbed, result.model.state_dict(), {"method": result.method, "request": n})
    atomic_write_json(stage / certificate, cert)
    files = {
        "scrubbed_file": scrubbed,
        "scrubbed_file_sha256": sha256_file(stage / scrubbed),
        "certificate_file": certificate,
        "certificate_sha256": sha256_file(stage / certificate),
    }
    prepared_stage = None
    if plan.prepared is not None:
        folder = Path(plan.req.prepared)
        prepared_stage = layout.staging(folder, n)
        prepared_stage.mkdir(parents=True, exist_ok=True)
        name = layout.file_name("cohort", n)
        save_cohort(plan.prepared, prepared_stage, name)
        files["prepared_cohort_file"] = name
        files["prepared_cohort_sha256"] = sha256_file(prepared_stage / name)
        files["prepared_kernel_sha256"] = read_manifest(folder, plan.key)["files"][KERNEL_FILE]
        files["prepared_manifest_sha256"] = plan.manifest_sha256
    return stage, prepared_stage, files


def commit(plan: Plan, result, log: Callable[[str], None]) -> dict:
    """Write a served request (see the module docstring); its certificate. Prints the summary
    and the receipt."""
    req, out = plan.req, Path(plan.req.out)
    cert = _certificate(plan, result)
    stage, prepared_stage, files = _stage_files(plan, result, cert)
    ledger = Ledger(plan.deployment, plan.ledger.entries)
    entry = new_entry(
        ledger,
        cert,
        plan.cohort.new.tolist(),
        input_weights=plan.input_weights,
        files=files,
        data=plan.data,
        threshold_nats=req.retrain_threshold_nats,
        key=plan.key,
        mu_budget=req.mu_budget,
    )
    summary = summary_text(json.loads(strict_json(cert)), entry)  # of the certificate as written
    receipt = receipt_text(receipt_of(plan.deployment, entry, plan.key))
    atomic_write_text(stage / layout.file_name("summary", plan.number), summary)
    atomic_write_text(stage / layout.file_name("receipt", plan.number), receipt)
    committed = Ledger(plan.deployment, [*plan.ledger.entries, entry])
    atomic_write_json(out / layout.LEDGER, ledger_document(committed, plan.key))  # the commit
    layout.move_into_place(stage)
    if prepared_stage is not None:
        layout.move_into_place(prepared_stage)
    _link(out / "scrubbed.safetensors", files["scrubbed_file"])
    atomic_write_text(out / "certificate.json", strict_json(cert))
    atomic_write_text(out / "summary.txt", summary)
    log(summary)
    log(f"receipt {out / layout.file_name('receipt', plan.number)}:\n{receipt}")
    return cert
