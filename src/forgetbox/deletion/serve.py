"""Deletion requests served from files (``forgetbox scrub`` and ``forgetbox prepare``).

Every input is read and checked, and the whole scrub computed, before anything is written:
paths (:mod:`.preflight`), the data, the verified ledger, the cohort, the checkpoints, the chain
of weights (request k starts from request k-1's scrubbed weights, or from the original ones,
said and recorded), the prepared state's file hashes. Outputs are request-numbered and never
overwrite an input; each file is written atomically, the ledger (the request's commit) last,
then the stable names ``scrubbed.safetensors`` (a link), ``certificate.json``, ``summary.txt``.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from .. import data, ntk, parallel
from .. import paths as preflight
from ..atomic import atomic_path, atomic_write_json, atomic_write_text, strict_json
from ..checkpoints import CheckpointError, load_into, load_state, save_state
from ..cohort import Cohort
from ..devices import check_device
from ..hashing import sha256_file, state_sha256
from ..inputs import as_tensors
from ..methods import ForgetConfig
from ..training import finetune
from ..versions import versions
from .files import load_data, load_models
from .ledger import (
    forgotten_in_order,
    forgotten_so_far,
    ledger_document,
    new_entry,
    read_key,
    read_ledger,
)
from .prepare import adopt_prepared, check_binding, prepare
from .prepared_files import (
    KERNEL_FILE,
    MANIFEST_FILE,
    load_prepared,
    read_manifest,
    save_cohort,
    save_prepared,
)
from .requests import PrepareRequest, ScrubRequest, summary_text
from .scrub import scrub

LEDGER = "ledger.json"


@dataclass
class _Plan:
    """A checked request: everything it needs, nothing written yet."""

    req: ScrubRequest
    config: ForgetConfig
    key: bytes | None
    entries: list[dict]
    x: torch.Tensor
    y: torch.Tensor
    test: tuple | None
    cohort: Cohort
    model: nn.Module
    w0: nn.Module
    build: Callable[[], nn.Module]
    input_weights: str
    prepared: ntk.PreparedKernel | None

    @property
    def number(self) -> int:
        return len(self.entries) + 1

    def path(self, stem: str, suffix: str) -> Path:
        return Path(self.req.out) / f"{stem}-{self.number:04d}{suffix}"


def _outputs(req: ScrubRequest, number: int) -> list[Path]:
    out = Path(req.out)
    numbered = [f"scrubbed-{number:04d}.safetensors", f"certificate-{number:04d}.json"]
    numbered.append(f"summary-{number:04d}.txt")
    stable = ["scrubbed.safetensors", "certificate.json", "summary.txt", LEDGER]
    outs = [out / n for n in numbered + stable]
    if req.prepared is not None:
        outs.append(Path(req.prepared) / f"cohort-{number:04d}.safetensors")
    return outs


def _check_paths(req: ScrubRequest) -> None:
    preflight.output_dir(req.out)
    for flag, path in (
        ("--weights", req.files.weights),
        ("--pretrained", req.files.pretrained),
        ("--reference", req.reference),
        ("--forget", req.forget),
        ("--ledger-key-file", req.ledger_key_file),
    ):
        preflight.input_file(path, flag)
    preflight.data_path(req.data)
    preflight.input_dir(req.prepared, "--prepared")
    if req.retrain_threshold_nats is not None and not math.isfinite(req.retrain_threshold_nats):
        raise ValueError(
            f"--retrain-threshold-nats must be finite; got {req.retrain_threshold_nats}"
        )
    if req.forget is None and req.forget_class is None:
        raise ValueError("give --forget FILE or --forget-class K")
    if req.forget is not None and req.forget_class is not None:
        raise ValueError("give either --forget FILE or --forget-class K, not both")


def _cohort(req: ScrubRequest, y: torch.Tensor, entries: list[dict]) -> Cohort:
    """The request's new cohort (indices into D), checked once against the ledger's earlier
    cohorts (:meth:`Cohort.check`), in index order."""
    already = forgotten_in_order(entries)
    if req.forget is not None:
        return data.read_cohort(req.forget, len(y), already).sorted()
    pool_mask = torch.ones(len(y), dtype=torch.bool)
    pool_mask[already] = False
    masked = torch.where(pool_mask, y, torch.full_like(y, -1))
    idx = data.select_forget(
        masked, forget_class=req.forget_class, num_to_forget=req.num_to_forget, seed=req.seed
    )
    return Cohort.check(idx, len(y), already, what=f"--forget-class {req.forget_class}")


def _input_weights(req: ScrubRequest, model: nn.Module, entries: list[dict]) -> str:
    """``original`` or ``previous``: where this request starts, checked against the ledger."""
    if not entries:
        return "original"
    have = state_sha256(model)
    if req.prepared is not None or req.restart_from_original:
        why = (
            "a prepared state answers every request" if req.prepared else "--restart-from-original"
        )
        if have != entries[0]["weights_sha256"]:
            raise CheckpointError(
                f"--weights {req.files.weights}: {why} from the original weights, but these "
                "are not the weights of request 1 in the ledger (SHA-256 mismatch)"
            )
        return "original"
    last = entries[-1]
    if have != last["scrubbed_sha256"]:
        name = last.get("scrubbed_file", "its scrubbed weights")
        raise CheckpointError(
            f"--weights {req.files.weights}: not the scrubbed weights of request "
            f"{last['request']} in the ledger (SHA-256 mismatch); pass {Path(req.out) / name}, "
            "or the original weights with --restart-from-original"
        )
    return "previous"


def _prepared(req: ScrubRequest, entries: list[dict], model, xy) -> ntk.PreparedKernel | None:
    if req.prepared is None:
        return None
    folder = Path(req.prepared)
    if any("prepared_cohort_file" not in e for e in entries):
        raise ValueError(
            f"--prepared {folder}: the ledger in {req.out} has requests served without it; use "
            "a new --out for the prepared state"
        )
    last = entries[-1] if entries else None
    cohort = (last["prepared_cohort_file"], last["prepared_cohort_sha256"]) if last else None
    prep = load_prepared(folder, cohort=cohort)  # every file checked against its SHA-256
    check_binding(prep, model, xy)  # the prepared weights and data
    manifest = read_manifest(folder)
    if last and last["prepared_kernel_sha256"] != manifest["files"].get(KERNEL_FILE):
        raise CheckpointError(
            f"--prepared {folder}: its kernel is not the one the ledger's requests used"
        )
    owner, here = manifest.get("serves"), str(Path(req.out).resolve())
    if owner is not None and owner != here:
        raise ValueError(
            f"--prepared {folder} serves the ledger in {owner}: use that --out (a new one would "
            "answer from the original weights as if nothing had been forgotten)"
        )
    if prep.forgotten.tolist() != forgotten_in_order(entries):
        raise ValueError(
            f"--prepared {folder} has answered {len(prep.forgotten)} forgotten samples but the "
            f"ledger in {req.out} lists {len(forgotten_so_far(entries))}: use the --out that "
            "goes with it"
        )
    return prep


def plan_scrub(req: ScrubRequest) -> _Plan:
    """Read and check everything a request needs (nothing is written)."""
    _check_paths(req)
    check_device(req.device)
    key = read_key(req.ledger_key_file)
    x, y, xt, yt = load_data(req.data)
    entries = read_ledger(Path(req.out) / LEDGER, key=key, n_train=len(y))
    inputs = {
        "--weights": req.files.weights,
        "--pretrained": req.files.pretrained,
        "--reference": req.reference,
        "--data": req.data,
        "--forget": req.forget,
        "--ledger-key-file": req.ledger_key_file,
    }
    preflight.not_overwritten(_outputs(req, len(entries) + 1), inputs)
    cohort = _cohort(req, y, entries)
    model, w0, build = load_models(req.files, x, y)
    input_weights = _input_weights(req, model, entries)
    prep = _prepared(req, entries, model, (x, y))
    config = req.config
    if prep is not None:  # its linearization and kernel, unless stated otherwise (refused)
        config = adopt_prepared(config, prep, req.method, req.stated)
    test = (xt, yt) if xt is not None else None
    return _Plan(
        req, config, key, entries, x, y, test, cohort, model, w0, build, input_weights, prep
    )


def _reference(plan: _Plan, retain):
    req = plan.req
    if req.reference is not None:
        reference = plan.build()
        load_into(reference, load_state(req.reference), f"--reference {req.reference}")
        return reference
    if req.verify_retrain:  # the retraining recipe of the configuration (its lambda)
        w0, recipe = plan.w0, plan.config.train
        return finetune(w0, *retain, recipe, seed=req.seed, anchor=w0, desc="verify: retrain").model
    return None


def _scrub(plan: _Plan):
    req, x, y, cohort = plan.req, plan.x, plan.y, plan.cohort
    keep = cohort.retained()
    retain = (x[keep], y[keep])
    if plan.prepared is not None:
        split = dict(data=(x, y), prepared=plan.prepared, forget_indices=cohort)
    else:
        # from the original weights the scrub forgets every cohort so far; from the previous
        # request's weights, the new one (the earlier ones are already gone from D_r)
        every = plan.input_weights == "original"
        forgotten = cohort.all.sort().values if every else cohort.new
        split = dict(retain=retain, forget=(x[forgotten], y[forgotten]))
        split["forget_indices"] = cohort.new
    device = torch.device(req.device)
    return scrub(
        plan.model.to(device),
        pretrained=plan.w0.to(device),
        **split,
        method=req.method,
        config=plan.config,
        reference=_reference(plan, retain),
        seed=req.seed,
        test=plan.test,
        recompute_batchnorm=req.recompute_batchnorm,
        trainable=req.trainable,
    )


def _claim(folder: Path, out: Path) -> None:
    """Record in the prepared state's manifest the ledger it serves (its first request)."""
    manifest = read_manifest(folder)
    if manifest.get("serves") is None:
        atomic_write_json(folder / MANIFEST_FILE, {**manifest, "serves": str(out.resolve())})


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


def _write(plan: _Plan, result, log: Callable[[str], None]) -> dict:
    req, out = plan.req, Path(plan.req.out)
    cert = result.certificate
    cert["request"] = plan.number
    cert["hashes"]["weights_file_sha256"] = sha256_file(req.files.weights)
    cert["hashes"]["pretrained_file_sha256"] = sha256_file(req.files.pretrained)
    cert["inputs"] = {
        "weights": str(req.files.weights),
        "pretrained": str(req.files.pretrained),
        "data": str(req.data),
        "previously_forgotten": len(plan.cohort.earlier),
        "input_weights": plan.input_weights,
    }
    out.mkdir(parents=True, exist_ok=True)
    scrubbed = plan.path("scrubbed", ".safetensors")
    save_state(
        scrubbed, result.model.state_dict(), {"method": result.method, "request": plan.number}
    )
    certificate = plan.path("certificate", ".json")
    atomic_write_json(certificate, cert)
    files = {
        "scrubbed_file": scrubbed.name,
        "scrubbed_file_sha256": sha256_file(scrubbed),
        "certificate_file": certificate.name,
    }
    if plan.prepared is not None:
        _claim(Path(req.prepared), out)
        name = f"cohort-{plan.number:04d}.safetensors"
        files["prepared_cohort_file"] = name
        files["prepared_cohort_sha256"] = save_cohort(plan.prepared, req.prepared, name)
        kernel = read_manifest(Path(req.prepared))["files"][KERNEL_FILE]
        files["prepared_kernel_sha256"] = kernel
    entry = new_entry(
        plan.entries,
        cert,
        plan.cohort.new.tolist(),
        input_weights=plan.input_weights,
        files=files,
        threshold_nats=req.retrain_threshold_nats,
        key=plan.key,
    )
    summary = summary_text(cert, entry)
    atomic_write_text(plan.path("summary", ".txt"), summary)
    atomic_write_json(out / LEDGER, ledger_document([*plan.entries, entry], plan.key))
    _link(out / "scrubbed.safetensors", scrubbed.name)
    atomic_write_text(out / "certificate.json", strict_json(cert))
    atomic_write_text(out / "summary.txt", summary)
    log(summary)
    return cert


def serve_scrub(req: ScrubRequest, log: Callable[[str], None] = print) -> dict:
    """Serve one deletion request; returns the certificate written to ``req.out``. In a
    process group every rank computes its share; once all have finished, rank 0 writes."""
    plan = plan_scrub(req)
    result = _scrub(plan)
    parallel.barrier()  # every rank succeeded: only now is anything written
    if not parallel.is_main():
        return result.certificate
    return _write(plan, result, log)


def serve_prepare(req: PrepareRequest, log: Callable[[str], None] = print) -> dict:
    """Factor the kernel of the training set once, for later requests; returns the manifest
    written to ``prepared.json``."""
    opts = req.config.ntk
    if opts.solver is ntk.Solver.PARAM and opts.kernel is ntk.Kernel.PSEUDO:
        raise ValueError("--solver param works with the exact kernel's J^T J; drop --kernel pseudo")
    out = preflight.output_dir(req.out)
    if (out / KERNEL_FILE).exists() or (out / MANIFEST_FILE).exists():
        raise ValueError(f"{out} already holds a prepared kernel; choose another --out")
    for flag, path in (("--weights", req.files.weights), ("--pretrained", req.files.pretrained)):
        preflight.input_file(path, flag)
    preflight.data_path(req.data)
    device = check_device(req.device)
    x, y, _, _ = load_data(req.data)
    x, y = as_tensors((x, y), "data")
    model, w0, _ = load_models(req.files, x, y)
    t = time.perf_counter()
    prep = prepare(
        model.to(device),
        (x, y),
        pretrained=w0.to(device),
        config=req.config,
        trainable=req.trainable,
    )
    seconds = time.perf_counter() - t
    parallel.barrier()
    if not parallel.is_main():
        return {}
    summary = {
        "kernel": prep.kernel,
        "space": prep.space,
        "n": prep.n,
        "classes": prep.c,
        "weight_decay": prep.weight_decay,
        "loss": prep.loss,
        "seconds": seconds,
        "kernel_bytes": prep.chol.numel() * 8,
        "inputs": {"weights": str(req.files.weights), "data": str(req.data)},
        "versions": versions(),
    }
    save_prepared(prep, out, extra=summary)
    what = (
        f"parameter-space system of {prep.chol.shape[0]} trained parameters"
        if prep.space == ntk.PreparedParams.space
        else f"{prep.kernel} kernel ({prep.chol.shape[0]} rows)"
    )
    log(
        f"forgetbox prepare: {what} for {prep.n} samples x {prep.c} classes, "
        f"{prep.chol.numel() * 8 / 2**20:.0f} MiB, in {seconds:.1f} s -> {out}"
    )
    return read_manifest(out)
