"""Deletion requests served from files (``forgetbox scrub`` and ``forgetbox prepare``).

Every input is read and validated, and the whole scrub computed, before anything is written;
each output file is then written atomically, the ledger last.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import data
from ..atomic import atomic_write_json, atomic_write_text
from ..checkpoints import load_into, load_state, save_state
from ..hashing import sha256_file
from ..inputs import as_tensors
from ..training import FinetuneConfig, finetune
from ..versions import versions
from .files import ModelFiles, load_data, load_models
from .ledger import forgotten_so_far, ledger_append, read_ledger
from .prepare import prepare
from .prepared_files import load_prepared
from .scrub import scrub


@dataclass(frozen=True)
class ScrubRequest:
    """One ``forgetbox scrub`` request (the command's flags, see ``forgetbox scrub --help``)."""

    files: ModelFiles
    data: Path
    out: Path
    forget: Path | None = None
    forget_class: int | None = None
    num_to_forget: int | None = None
    method: str = "ntk_fisher"
    alpha: float | None = None
    weight_decay: float = 0.1
    loss: str = "ce"
    solver: str = "auto"
    kernel: str = "exact"
    memory_budget_gb: float | None = None
    seed: int = 0
    reference: Path | None = None
    verify_retrain: bool = False
    retrain_threshold_nats: float | None = None
    prepared: Path | None = None

    @property
    def memory_budget(self) -> int | None:
        return int(self.memory_budget_gb * 2**30) if self.memory_budget_gb else None


@dataclass(frozen=True)
class PrepareRequest:
    """One ``forgetbox prepare`` request."""

    files: ModelFiles
    data: Path
    out: Path
    kernel: str = "exact"
    weight_decay: float = 0.1
    loss: str = "ce"
    memory_budget_gb: float | None = None
    device: str = "cpu"


def _cohort(req: ScrubRequest, y: torch.Tensor, already: list[int], ledger: Path) -> torch.Tensor:
    """The request's new cohort (indices into D), refusing indices forgotten before."""
    if req.forget is not None:
        idx = data.select_forget(y, indices=data.read_index_file(req.forget))
    elif req.forget_class is not None:
        pool_mask = torch.ones(len(y), dtype=torch.bool)
        pool_mask[already] = False
        masked = torch.where(pool_mask, y, torch.full_like(y, -1))
        idx = data.select_forget(
            masked, forget_class=req.forget_class, num_to_forget=req.num_to_forget, seed=req.seed
        )
    else:
        raise ValueError("give --forget FILE or --forget-class K")
    overlap = sorted(set(idx.tolist()) & set(already))
    if overlap:
        raise ValueError(f"indices {overlap[:5]} were already forgotten (see {ledger})")
    if len(idx) + len(already) >= len(y):
        raise data.DataError("the forget cohorts cover the whole training set")
    return idx


def _reference(req: ScrubRequest, build, w0, retain):
    if req.reference is not None:
        reference = build()
        load_into(reference, load_state(req.reference), f"--reference {req.reference}")
        return reference
    if req.verify_retrain:
        recipe = FinetuneConfig(weight_decay=req.weight_decay)
        return finetune(w0, *retain, recipe, seed=req.seed, anchor=w0, desc="verify: retrain").model
    return None


def serve_scrub(req: ScrubRequest, log: Callable[[str], None] = print) -> dict:
    """Serve one deletion request; returns the certificate written to ``req.out``."""
    x, y, xt, yt = load_data(req.data)
    out = Path(req.out)
    ledger_path = out / "ledger.json"
    ledger = read_ledger(ledger_path)
    already = forgotten_so_far(ledger)
    idx = _cohort(req, y, already, ledger_path)
    model, w0, build = load_models(req.files, x, y)
    prep = None
    if req.prepared is not None:
        prep = load_prepared(req.prepared)
        if sorted(prep.forgotten.tolist()) != already:
            raise ValueError(
                f"{req.prepared} has answered {len(prep.forgotten)} forgotten samples but the "
                f"ledger in {out} lists {len(already)}: use the --out that goes with it"
            )
        prep.check(model, (x, y))
    keep = data.retain_mask(len(y), torch.cat([idx, torch.tensor(already, dtype=torch.long)]))
    retain, forget = (x[keep], y[keep]), (x[idx], y[idx])
    split = (
        dict(data=(x, y), prepared=prep) if prep is not None else dict(retain=retain, forget=forget)
    )
    result = scrub(
        model,
        pretrained=w0,
        **split,
        kernel=req.kernel,
        method=req.method,
        alpha=req.alpha,
        weight_decay=req.weight_decay,
        loss=req.loss,
        solver=req.solver,
        reference=_reference(req, build, w0, retain),
        seed=req.seed,
        test=(xt, yt) if xt is not None else None,
        memory_budget=req.memory_budget,
        forget_indices=idx.tolist(),
    )
    cert = result.certificate
    cert["hashes"]["weights_file_sha256"] = sha256_file(req.files.weights)
    cert["hashes"]["pretrained_file_sha256"] = sha256_file(req.files.pretrained)
    cert["inputs"] = {
        "weights": str(req.files.weights),
        "pretrained": str(req.files.pretrained),
        "data": str(req.data),
        "previously_forgotten": len(already),
    }
    new_ledger = ledger_append(ledger, cert, idx.tolist(), req.retrain_threshold_nats)
    # everything is computed: now write, each file atomically, the ledger last
    out.mkdir(parents=True, exist_ok=True)
    save_state(
        out / "scrubbed.safetensors",
        result.model.state_dict(),
        {"method": result.method, "certificate_sha256": None},
    )
    atomic_write_json(out / "certificate.json", cert)
    summary = summary_text(cert, new_ledger[-1])
    atomic_write_text(out / "summary.txt", summary)
    if prep is not None:
        prep.save_cohort(req.prepared)
    atomic_write_json(ledger_path, new_ledger)
    log(summary)
    return cert


def serve_prepare(req: PrepareRequest, log: Callable[[str], None] = print) -> dict:
    """Factor the kernel of the training set once, for later requests; returns the summary
    written to ``prepared.json``."""
    out = Path(req.out)
    if (out / "kernel.safetensors").exists():
        raise ValueError(f"{out} already holds a prepared kernel; choose another --out")
    x, y, _, _ = load_data(req.data)
    x, y = as_tensors((x, y), "data")
    model, w0, _ = load_models(req.files, x, y)
    device = torch.device(req.device)
    budget = int(req.memory_budget_gb * 2**30) if req.memory_budget_gb else None
    t = time.perf_counter()
    prep = prepare(
        model.to(device),
        (x, y),
        weight_decay=req.weight_decay,
        pretrained=w0.to(device),
        loss=req.loss,
        kernel=req.kernel,
        memory_budget=budget,
    )
    seconds = time.perf_counter() - t
    prep.save(out)
    summary = {
        "format": "forgetbox-prepared/1",
        "kernel": prep.kernel,
        "n": prep.n,
        "classes": prep.c,
        "weight_decay": prep.weight_decay,
        "loss": prep.loss,
        "hashes": prep.hashes,
        "seconds": seconds,
        "kernel_bytes": prep.chol.numel() * 8,
        "inputs": {"weights": str(req.files.weights), "data": str(req.data)},
        "versions": versions(),
    }
    atomic_write_json(out / "prepared.json", summary)
    log(
        f"forgetbox prepare: {prep.kernel} kernel of {prep.n} samples x {prep.c} classes "
        f"({prep.chol.shape[0]} rows, {prep.chol.numel() * 8 / 2**20:.0f} MiB) in {seconds:.1f} s "
        f"-> {out}"
    )
    return summary


def summary_text(cert: dict, entry: dict) -> str:
    """The human-readable summary of one request (``summary.txt``)."""
    b = cert["bounds"]
    e = cert["errors"]
    lines = [
        f"forgetbox scrub: method {cert['method']}, {cert['cohort']['n_forget']} samples forgotten,"
        f" {cert['cohort']['n_retain']} retained",
        f"bounds against the {b['baseline']}:",
        f"  white box: {b['white_box_nats']:.4g} nats",
    ]
    for name, v in b["black_box"].items():
        lines.append(
            f"  black box, per query from {name}: {v['nats_per_query']:.4g} nats "
            f"(diagonal approx. {v['nats_per_query_diagonal']:.4g})"
        )
    for subset in e["before"]:
        lines.append(f"  error on {subset}: {e['before'][subset]:.3f} -> {e['after'][subset]:.3f}")
    lines.append(
        f"ledger: request {entry['request']}, running total "
        f"{entry['running_total_white_box_nats']:.4g} nats"
        + (" -- RETRAIN DUE" if entry["retrain_due"] else "")
    )
    return "\n".join(lines) + "\n"
