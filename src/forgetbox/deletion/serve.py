"""Deletion requests served from files (``forgetbox scrub`` and ``forgetbox prepare``).

A request is planned (:mod:`.plan`: every input read and checked, nothing written), computed
(the whole scrub, on every rank of a process group), and only then written (:mod:`.commit`:
request-numbered files staged, the ledger as the commit, the files moved into place, the
receipt printed). Outputs are request-numbered and never overwrite an input.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch

from .. import ntk, parallel
from .. import paths as preflight
from ..checkpoints import load_into, load_state
from ..devices import check_device
from ..inputs import as_tensors
from ..training import finetune
from ..versions import versions
from .commit import commit, recover
from .files import load_data, load_models
from .ledger import read_key
from .plan import Plan, plan_scrub
from .prepare import prepare
from .prepared_files import KERNEL_FILE, MANIFEST_FILE, read_manifest, save_prepared
from .requests import PrepareRequest, ScrubRequest
from .scrub import scrub

__all__ = ["plan_scrub", "serve_prepare", "serve_scrub"]


def _reference(plan: Plan, retain):
    req = plan.req
    if req.reference is not None:
        reference = plan.build()
        load_into(reference, load_state(req.reference), f"--reference {req.reference}")
        return reference
    if req.verify_retrain:  # the retraining recipe of the configuration (its lambda)
        w0, recipe = plan.w0, plan.config.train
        return finetune(w0, *retain, recipe, seed=req.seed, anchor=w0, desc="verify: retrain").model
    return None


def _scrub(plan: Plan):
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


def serve_scrub(req: ScrubRequest, log: Callable[[str], None] = print) -> dict:
    """Serve one deletion request; returns the certificate written to ``req.out``. In a
    process group every rank computes its share; once all have finished, rank 0 writes."""
    plan = plan_scrub(req)
    result = _scrub(plan)
    parallel.barrier()  # every rank succeeded: only now is anything written
    if not parallel.is_main():
        return result.certificate
    recover(plan, log)
    return commit(plan, result, log)


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
    key = read_key(req.ledger_key_file)
    prep = prepare(
        model.to(device),
        (x, y),
        pretrained=w0.to(device),
        config=req.config,
        trainable=req.trainable,
        certified=req.certified,
    )
    seconds = time.perf_counter() - t
    parallel.barrier()
    if not parallel.is_main():
        return {}
    summary = {
        **prep.manifest_summary(),
        "seconds": seconds,
        "inputs": {"weights": str(req.files.weights), "data": str(req.data)},
        "versions": versions(),
    }
    deployment = save_prepared(prep, out, extra=summary, key=key)
    log(
        f"forgetbox prepare: {prep.in_words()} for {prep.n} samples x {prep.c} classes, "
        f"{summary['kernel_bytes'] / 2**20:.0f} MiB, in {seconds:.1f} s -> {out} "
        f"(deployment {deployment})"
    )
    return read_manifest(out, key)
