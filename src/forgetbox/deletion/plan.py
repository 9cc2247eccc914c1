"""Planning a deletion request served from files: read and check everything it needs, write
nothing.

In order: paths, the device, the key, the data (and its content hash), the verified ledger
(chain, head, deployment), request-numbered files beyond the ledger's last entry (a truncated
ledger), staging folders left by an interrupted request, the outputs never overwriting an
input, the cohort (checked once), the checkpoints, the chain of weights (request k starts from
request k-1's scrubbed weights, or from the original ones, said and recorded), the data against
the ledger's, the prepared state's files, manifest, identity and cohort.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from .. import data, ntk
from .. import paths as preflight
from ..checkpoints import CheckpointError
from ..cohort import Cohort
from ..devices import check_device
from ..hashing import data_set_sha256, data_sha256, sha256_file, state_sha256
from ..methods import ForgetConfig
from . import layout
from .files import load_data, load_models
from .ledger import Ledger, forgotten_in_order, new_deployment, read_key
from .ledger_verify import read_ledger
from .prepare import adopt_prepared, check_binding
from .prepared_files import KERNEL_FILE, MANIFEST_FILE, load_prepared, read_manifest
from .requests import ScrubRequest
from .verify import entry_files


@dataclass
class Plan:
    """A checked request: everything it needs, nothing written yet."""

    req: ScrubRequest
    config: ForgetConfig
    key: bytes | None
    ledger: Ledger
    x: torch.Tensor
    y: torch.Tensor
    test: tuple | None
    cohort: Cohort
    model: nn.Module
    w0: nn.Module
    build: Callable[[], nn.Module]
    input_weights: str
    data: dict
    deployment: str
    prepared: ntk.PreparedKernel | None = None
    manifest_sha256: str | None = None
    recover: dict[int, list[Path]] = field(default_factory=dict)

    @property
    def number(self) -> int:
        """This request's number (1 + the ledger's entries)."""
        return len(self.ledger.entries) + 1


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


def _outputs(req: ScrubRequest, number: int) -> list[Path]:
    out = Path(req.out)
    outs = [out / layout.file_name(kind, number) for kind in layout.OUT_KINDS]
    outs += [out / n for n in ("scrubbed.safetensors", "certificate.json", "summary.txt")]
    outs.append(out / layout.LEDGER)
    if req.prepared is not None:
        outs.append(Path(req.prepared) / layout.file_name("cohort", number))
    return outs


def _cohort(req: ScrubRequest, y: torch.Tensor, ledger: Ledger) -> Cohort:
    """The request's new cohort (indices into D), checked once against the ledger's earlier
    cohorts (:meth:`Cohort.check`), in index order."""
    already = forgotten_in_order(ledger.entries)
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


def data_binding(req: ScrubRequest, x: torch.Tensor, y: torch.Tensor, ledger: Ledger) -> dict:
    """The data's hashes for the next entry, refused when they differ from the data of the
    ledger's last entry (naming it and what differs), unless samples were appended and the
    request says so (``--data-appended``): then the first ones hash as recorded."""
    here = {"data_sha256": data_sha256(x, y), "data_set_sha256": data_set_sha256(x, y)}
    here["n_train"] = len(y)
    if not ledger.entries:
        if req.data_appended:
            raise ValueError("--data-appended: the ledger has no request yet to append to")
        return here
    last = ledger.entries[-1]
    if here["data_sha256"] == last["data_sha256"]:
        if req.data_appended:
            raise ValueError("--data-appended: --data is the data of the last request, unchanged")
        return here
    n_old, where = last["n_train"], f"request {last['request']} in the ledger"
    if req.data_appended:
        if len(y) > n_old and data_sha256(x[:n_old], y[:n_old]) == last["data_sha256"]:
            return {**here, "data_appended_from": n_old}
        raise ValueError(
            f"--data-appended: the first {n_old} samples of --data {req.data} are not the data "
            f"of {where}: samples may only be added after the recorded ones"
        )
    if len(y) != n_old:
        what = f"has {len(y)} samples, {where} was served against {n_old}"
        hint = " (if samples were added after the others, say so with --data-appended)"
        raise ValueError(f"--data {req.data} {what}{hint}")
    if here["data_set_sha256"] == last["data_set_sha256"]:
        raise ValueError(
            f"--data {req.data} holds the samples of {where} in another order: the ledger's "
            "indices would name other samples (pass the data in its recorded order)"
        )
    raise ValueError(
        f"--data {req.data} is not the data {where} was served against (other samples or "
        "labels, same count): the ledger's indices would name other samples"
    )


def _prepared(req: ScrubRequest, ledger: Ledger, model, xy, key) -> tuple:
    """The prepared state for this request, its manifest's SHA-256 and its deployment, every
    binding checked: files, manifest (HMAC with the key), the ledger's identity, its kernel and
    cohort."""
    if req.prepared is None:
        return None, None, None
    folder, entries = Path(req.prepared), ledger.entries
    if any("prepared_cohort_file" not in e for e in entries):
        raise ValueError(
            f"--prepared {folder}: the ledger in {req.out} has requests served without it; use "
            "a new --out for the prepared state"
        )
    manifest = read_manifest(folder, key)
    if ledger.deployment is not None and manifest["deployment"] != ledger.deployment:
        raise ValueError(
            f"--prepared {folder} belongs to deployment {manifest['deployment']}, the ledger in "
            f"{req.out} to {ledger.deployment}: use the --out that goes with it"
        )
    last = entries[-1] if entries else None
    cohort = (last["prepared_cohort_file"], last["prepared_cohort_sha256"]) if last else None
    prep = load_prepared(folder, cohort=cohort, key=key)  # every file checked
    check_binding(prep, model, xy)  # the prepared weights and data
    manifest_sha = sha256_file(folder / MANIFEST_FILE)
    if last and last["prepared_kernel_sha256"] != manifest["files"].get(KERNEL_FILE):
        raise CheckpointError(f"--prepared {folder}: its kernel is not the one the ledger used")
    if last and last["prepared_manifest_sha256"] != manifest_sha:
        raise CheckpointError(
            f"--prepared {folder}: {MANIFEST_FILE} is not the manifest the ledger's requests used "
            "(it was edited)"
        )
    if prep.forgotten.tolist() != forgotten_in_order(entries):
        raise ValueError(
            f"--prepared {folder} has answered {len(prep.forgotten)} forgotten samples but the "
            f"ledger in {req.out} lists {len(forgotten_in_order(entries))}: use the --out that "
            "goes with it"
        )
    return prep, manifest_sha, manifest["deployment"]


def _no_rollback(req: ScrubRequest, ledger: Ledger) -> dict[int, list[Path]]:
    """Refuse request-numbered files beyond the ledger's last entry (entries were removed);
    the staging folders of committed entries, to be moved into place first."""
    count, prepared = len(ledger.entries), req.prepared
    left = layout.beyond(Path(req.out), Path(prepared) if prepared else None, count)
    if left:
        names = ", ".join(p.name for p in left[:6]) + (
            f" (+{len(left) - 6})" if len(left) > 6 else ""
        )
        raise ValueError(
            f"{req.out}: files of requests after the ledger's last entry ({count}) remain "
            f"({names}): entries were removed from {layout.LEDGER} (a rollback); restore it, or "
            "run `forgetbox verify` to see what does not verify"
        )
    folders = [Path(req.out)] + ([Path(prepared)] if prepared else [])
    return {n: ps for n, ps in layout.staged(folders).items() if n <= count}


def _files_verify(req: ScrubRequest, ledger: Ledger, key, recover: dict) -> None:
    """Refuse when an earlier request's files were edited or removed (the certificate and the
    scrubbed weights against their recorded SHA-256; the summary and receipt recomputed)."""
    if recover:  # files still staged: moved into place (and so checked) by the next commit
        return
    bad = [f.text for f in entry_files(Path(req.out), ledger, key) if not f.ok]
    if bad:
        more = f" (and {len(bad) - 2} more)" if len(bad) > 2 else ""
        raise ValueError("; ".join(bad[:2]) + more + ": `forgetbox verify` lists every finding")


def plan_scrub(req: ScrubRequest) -> Plan:
    """Read and check everything a request needs (nothing is written)."""
    _check_paths(req)
    check_device(req.device)
    key = read_key(req.ledger_key_file)
    x, y, xt, yt = load_data(req.data)
    ledger = read_ledger(Path(req.out) / layout.LEDGER, key=key, n_train=len(y))
    recover = _no_rollback(req, ledger)
    _files_verify(req, ledger, key, recover)
    inputs = {
        "--weights": req.files.weights,
        "--pretrained": req.files.pretrained,
        "--reference": req.reference,
        "--data": req.data,
        "--forget": req.forget,
        "--ledger-key-file": req.ledger_key_file,
    }
    preflight.not_overwritten(_outputs(req, len(ledger.entries) + 1), inputs)
    cohort = _cohort(req, y, ledger)
    model, w0, build = load_models(req.files, x, y)
    input_weights = _input_weights(req, model, ledger.entries)
    binding = data_binding(req, x, y, ledger)
    prep, manifest_sha, prepared_deployment = _prepared(req, ledger, model, (x, y), key)
    deployment = ledger.deployment or prepared_deployment or new_deployment()
    config = req.config
    if prep is not None:  # its linearization and kernel, unless stated otherwise (refused)
        config = adopt_prepared(config, prep, req.method, req.stated)
    test = (xt, yt) if xt is not None else None
    return Plan(
        req,
        config,
        key,
        ledger,
        x,
        y,
        test,
        cohort,
        model,
        w0,
        build,
        input_weights,
        binding,
        deployment,
        prep,
        manifest_sha,
        recover,
    )
