"""Scrub your own model: :func:`scrub`, the forgetting certificate, the deletion ledger and the
``forgetbox scrub`` command.

>>> result = forgetbox.scrub(model, pretrained=w0, retain=(x_r, y_r), forget=(x_f, y_f))
>>> result.model            # the scrubbed nn.Module
>>> result.certificate      # bounds (nats), errors before/after, hashes, timings

Nothing is written by :func:`scrub`; the command validates every input before it writes
anything, and writes each output file atomically.
"""

from __future__ import annotations

import argparse
import copy
import json
import resource
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch import Tensor, nn

from . import bounds, data, methods, models, readouts
from . import data as data_mod
from .checkpoints import (
    CheckpointError,
    atomic_write_json,
    atomic_write_text,
    load_into,
    load_state,
    save_state,
    sha256_file,
    sha256_indices,
    state_sha256,
)
from .data import as_tensors
from .experiment import versions
from .functional import assert_finite, flatten, parameters_of
from .methods import ForgetConfig, Method
from .prepared import PreparedKernel, load_prepared, prepare
from .training import FinetuneConfig, finetune, predict

CERTIFICATE_FORMAT = "forgetbox-certificate/1"


@dataclass(frozen=True)
class ScrubResult:
    """The scrubbed model and everything that produced it (see ``docs/certificate.md``)."""

    model: nn.Module
    method: str
    delta: Tensor | None
    noise_variance: Tensor | None
    scale: float | None
    seconds: dict[str, float]
    certificate: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------- inputs


def _check_model_accepts(model: nn.Module, x: Tensor, y: Tensor, name: str) -> int:
    try:
        with torch.no_grad():
            out = predict(model, x[:2])
    except RuntimeError as exc:
        raise ValueError(
            f"{name}: the model rejects inputs of shape {tuple(x.shape[1:])}: {exc}"
        ) from exc
    c = out.shape[-1]
    if len(y) and (y.min() < 0 or y.max() >= c):
        raise ValueError(f"{name}: labels must lie in [0, {c}) for a model with {c} outputs")
    return c


def _peak_rss_bytes() -> int:
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024


# ----------------------------------------------------------------------------- scrub


def scrub(
    model: nn.Module,
    *,
    pretrained: nn.Module,
    retain=None,
    forget=None,
    data=None,
    prepared: PreparedKernel | None = None,
    kernel: str = "exact",
    method: Method | str = Method.NTK_FISHER,
    alpha: float | None = None,
    weight_decay: float = 0.1,
    loss: str = "ce",
    solver: str = "auto",
    reference: nn.Module | None = None,
    generator: torch.Generator | None = None,
    seed: int = 0,
    test=None,
    memory_budget: int | None = None,
    forget_indices=None,
    queries_per_subset: int = 25,
    config: ForgetConfig | None = None,
) -> ScrubResult:
    """Scrub the cohort ``forget`` from ``model`` (fine-tuned from ``pretrained`` = w0).

    ``retain``/``forget``/``test``: ``(inputs, labels)`` tensors, datasets or data loaders.
    Or ``data`` (the whole training set D) with ``forget_indices``: then D_r is D without them.
    ``prepared``: a :class:`~forgetbox.prepared.PreparedKernel` of this model and ``data``; the
    NTK step is then answered from it (fast), for the cohort ``prepared.forgotten`` plus
    ``forget_indices`` (earlier requests stay forgotten; the state is updated in place).
    ``kernel``: ``"exact"`` NTK or ``"pseudo"``-NTK (see :class:`forgetbox.ntk.Kernel`).
    ``method``: one of :data:`forgetbox.methods.METHODS` (default ``ntk_fisher``, eq. 11).
    ``alpha``: noise scale (default: the method's, see :data:`methods.DEFAULT_ALPHA`).
    ``weight_decay``: the lambda of fine-tuning's (lambda/2)||w - w0||^2.
    ``reference``: a model trained on D_r alone; without it the bounds are measured against the
    NTK's linearized prediction of w(D_r) and labelled as an estimate.
    ``generator``/``seed``: the noise draw (a generator, when given, supplies the seed).
    The input model is not modified. BatchNorm is used in eval mode throughout.
    """
    t_start = time.perf_counter()
    method = Method(method)
    if data is not None:
        if forget_indices is None:
            raise ValueError("with `data`, give `forget_indices` (indices into data)")
        if retain is not None or forget is not None:
            raise ValueError("give either `data` with `forget_indices`, or `retain` and `forget`")
        retain, forget = _split_cohort(data, forget_indices, prepared)
    elif prepared is not None:
        raise ValueError("a prepared kernel needs `data` (the training set it was prepared on)")
    elif retain is None or forget is None:
        raise ValueError("give `retain` and `forget` (or `data` with `forget_indices`)")
    xr, yr = as_tensors(retain, "retain")
    xf, yf = as_tensors(forget, "forget")
    if len(xf) == 0:
        raise ValueError("forget: the cohort is empty")
    test_pair = as_tensors(test, "test") if test is not None else None
    assert_finite(parameters_of(model), "model weights")
    assert_finite(parameters_of(pretrained), "pre-trained weights")
    _same_architecture(model, pretrained)
    for name, (x, y) in (("retain", (xr, yr)), ("forget", (xf, yf))):
        _check_model_accepts(model, x, y, name)
    if generator is not None:
        seed = int(torch.randint(0, 2**62, (1,), generator=generator).item())
    base = config or ForgetConfig()
    cfg = ForgetConfig(
        **{
            **base.__dict__,
            "weight_decay": weight_decay,
            "alpha": alpha,
            "loss": loss,
            "solver": solver,
            "memory_budget": memory_budget,
            "kernel": kernel if prepared is None else prepared.kernel,
            "train": FinetuneConfig(**{**base.train.__dict__, "weight_decay": weight_decay}),
        }
    )
    direction = None
    if prepared is not None:
        _check_prepared(prepared, cfg, method, pretrained)
        direction = prepared.request(model, data, forget_indices)
    model = copy.deepcopy(model).eval()
    res = methods.forget(
        method, model, pretrained, (xr, yr), (xf, yf), cfg, seed=seed, direction=direction
    )
    scrubbed = res.model
    if not torch.isfinite(flatten(parameters_of(scrubbed))).all():
        raise ValueError(
            "scrubbing produced non-finite weights (ill-conditioned problem); "
            "increase weight_decay or use dtype float64"
        )
    t_method = time.perf_counter() - t_start
    t_cert = time.perf_counter()
    cert = certificate(
        model,
        scrubbed,
        res,
        pretrained=pretrained,
        retain=(xr, yr),
        forget=(xf, yf),
        test=test_pair,
        reference=reference,
        config=cfg,
        seed=seed,
        forget_indices=forget_indices,
        queries_per_subset=queries_per_subset,
    )
    seconds = {
        "method": t_method,
        "certificate": time.perf_counter() - t_cert,
        "total": time.perf_counter() - t_start,
    }
    cert["timings_seconds"] = seconds
    cert["peak_memory_bytes"] = _peak_rss_bytes()
    return ScrubResult(
        scrubbed, method.value, res.delta, res.noise_variance, res.scale, seconds, cert
    )


def _split_cohort(data, forget_indices, prepared: PreparedKernel | None):
    """``(retain, forget)`` of D for the cohort (plus a prepared state's earlier cohorts)."""
    x, y = as_tensors(data, "data")
    idx = torch.as_tensor(forget_indices, dtype=torch.long).reshape(-1)
    if len(idx) == 0:
        raise ValueError("forget: the cohort is empty")
    if idx.min() < 0 or idx.max() >= len(x):
        raise ValueError(f"forget_indices must lie in [0, {len(x)})")
    if prepared is not None:
        idx = torch.cat([prepared.forgotten, idx])
    keep = data_mod.retain_mask(len(x), idx)
    if not keep.any():
        raise ValueError("the cohorts cover the whole training set")
    return (x[keep], y[keep]), (x[idx], y[idx])


def _check_prepared(prep: PreparedKernel, cfg: ForgetConfig, method: Method, pretrained) -> None:
    if method not in (Method.NTK, Method.NTK_FISHER):
        raise ValueError(f"a prepared kernel answers the NTK methods, not {method.value!r}")
    mismatch = []
    if abs(prep.weight_decay - cfg.weight_decay) > 1e-12 * max(1.0, cfg.weight_decay):
        mismatch.append(f"weight_decay {prep.weight_decay} (asked {cfg.weight_decay})")
    if prep.loss != cfg.loss:
        mismatch.append(f"loss {prep.loss} (asked {cfg.loss})")
    if prep.anchored != cfg.anchored:
        mismatch.append(f"anchored={prep.anchored} (asked {cfg.anchored})")
    if cfg.around != "trained":
        mismatch.append("linearization at w(D) (asked w0)")
    if mismatch:
        raise ValueError("the prepared kernel was made with " + ", ".join(mismatch))
    prep.check_pretrained(pretrained)


def _same_architecture(model: nn.Module, pretrained: nn.Module) -> None:
    a = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    b = {k: tuple(v.shape) for k, v in pretrained.state_dict().items()}
    if a != b:
        diff = sorted(set(a) ^ set(b))[:3] or [k for k in a if a[k] != b.get(k)][:3]
        raise CheckpointError(
            f"pre-trained weights do not match the model's architecture (differs at {diff})"
        )


def certificate(
    original: nn.Module,
    scrubbed: nn.Module,
    res: methods.ForgetResult,
    *,
    pretrained: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget: tuple[Tensor, Tensor],
    test: tuple[Tensor, Tensor] | None,
    reference: nn.Module | None,
    config: ForgetConfig,
    seed: int,
    forget_indices=None,
    queries_per_subset: int = 25,
) -> dict:
    """The forgetting certificate (fields documented in ``docs/certificate.md``)."""
    alpha = res.info.get("alpha") or (
        config.alpha if config.alpha is not None else methods.DEFAULT_ALPHA[Method.NTK_FISHER]
    )
    mean = res.mean
    var = res.noise_variance
    if var is None:
        var = methods.variance_at(scrubbed, mean, retain[0], alpha, config)
    if reference is not None:
        mean0 = flatten(parameters_of(reference))
        baseline = "reference model trained on D_r"
        is_estimate = False
    else:
        # the NTK methods' mean is that prediction already: do not solve it twice
        ntk_made = res.method in (Method.NTK, Method.NTK_FISHER)
        mean0 = (
            res.mean
            if ntk_made
            else _linearized_retrain(original, pretrained, retain, forget, config)
        )
        baseline = "linearized NTK prediction of w(D_r) (estimate)"
        is_estimate = True
    var0 = methods.variance_at(scrubbed, mean0, retain[0], alpha, config)
    like = parameters_of(original)
    white = bounds.white_box(mean, var, mean0, var0, like)
    gen = torch.Generator().manual_seed(seed)
    subsets = {"forget": forget[0], "retain": retain[0]}
    if test is not None:
        subsets["test"] = test[0]
    black = {}
    for name, x in subsets.items():
        idx = torch.randperm(len(x), generator=gen)[:queries_per_subset]
        bb = bounds.black_box(original, mean, var, mean0, var0, x[idx])
        black[name] = {
            "nats_per_query": bb.mean,
            "nats_per_query_diagonal": bb.mean_diagonal,
            "queries": len(idx),
        }

    def errs(m: nn.Module) -> dict:
        out = {
            "retain": readouts.error_and_loss(m, *retain)[0],
            "forget": readouts.error_and_loss(m, *forget)[0],
        }
        if test is not None:
            out["test"] = readouts.error_and_loss(m, *test)[0]
        return out

    indices_hash = sha256_indices(forget_indices) if forget_indices is not None else None
    return {
        "format": CERTIFICATE_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": res.method,
        "config": {
            "alpha": alpha,
            "weight_decay": config.weight_decay,
            "loss": config.loss,
            "solver": config.solver,
            "linearized_at": config.around,
            "trapezium": config.use_trapezium,
            "trapezium_leg": config.trapezium_leg,
            "seed": seed,
            "trapezium_scale": res.scale,
        },
        "versions": versions(),
        "hashes": {
            "weights_sha256": state_sha256(original),
            "pretrained_sha256": state_sha256(pretrained),
            "scrubbed_sha256": state_sha256(scrubbed),
            "forget_indices_sha256": indices_hash,
        },
        "cohort": {"n_forget": len(forget[0]), "n_retain": len(retain[0])},
        "bounds": {
            "baseline": baseline,
            "is_estimate": is_estimate,
            "noise": "diagonal alpha * F^-1 on D_r (same alpha for scrubbed and baseline)",
            "white_box_nats": white.nats,
            "white_box_per_tensor_nats": white.per_tensor,
            "black_box": black,
        },
        "errors": {"before": errs(original), "after": errs(scrubbed)},
        "method_info": {k: v for k, v in res.info.items() if k not in ("mean",)},
    }


def _linearized_retrain(model, pretrained, retain, forget, config) -> Tensor:
    return methods.ntk_point(model, pretrained, retain, forget, config)[0]


# ----------------------------------------------------------------------------- ledger


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
    if not path.exists():
        return []
    try:
        doc = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{path}: the ledger is not valid JSON ({exc})") from exc
    if not isinstance(doc, list):
        raise ValueError(f"{path}: the ledger must be a JSON list")
    return doc


# ----------------------------------------------------------------------------- command


def add_scrub_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="built-in name or module:factory")
    p.add_argument("--weights", required=True, type=Path, help="trained weights (.safetensors/.pt)")
    p.add_argument("--pretrained", required=True, type=Path, help="w0 (.safetensors/.pt)")
    p.add_argument("--data", required=True, type=Path, help=".npz of arrays or an image folder")
    p.add_argument("--forget", type=Path, help="text file of training-set indices to forget")
    p.add_argument("--forget-class", type=int, help="forget random samples of this class")
    p.add_argument("--num-to-forget", type=int, help="with --forget-class (default: whole class)")
    p.add_argument("--method", default="ntk_fisher", choices=methods.METHODS)
    p.add_argument("--alpha", type=float, help="noise scale (default: the method's)")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--loss", default="ce", choices=["ce", "mse"])
    p.add_argument("--solver", default="auto", choices=["auto", "dense", "cg"])
    p.add_argument("--memory-budget-gb", type=float, help="memory budget of the NTK solver")
    p.add_argument("--num-classes", type=int, help="model outputs (default: from the weights)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (built-in models)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--reference", type=Path, help="weights of a model trained on D_r alone")
    p.add_argument(
        "--verify-retrain",
        action="store_true",
        help="retrain on D_r (same recipe) and measure the bounds against it",
    )
    p.add_argument(
        "--retrain-threshold-nats",
        type=float,
        help="ledger: flag a full retrain once the running total exceeds this",
    )
    p.add_argument(
        "--prepared",
        type=Path,
        help="folder written by `forgetbox prepare` for these --weights and --data: the NTK "
        "step is answered from it (every request from the original weights)",
    )
    p.add_argument("--kernel", default="exact", choices=["exact", "pseudo"])
    p.add_argument("--out", required=True, type=Path)


def add_prepare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", required=True, help="built-in name or module:factory")
    p.add_argument("--weights", required=True, type=Path, help="trained weights (.safetensors/.pt)")
    p.add_argument("--pretrained", required=True, type=Path, help="w0 (.safetensors/.pt)")
    p.add_argument("--data", required=True, type=Path, help=".npz of arrays or an image folder")
    p.add_argument("--kernel", default="exact", choices=["exact", "pseudo"])
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--loss", default="ce", choices=["ce", "mse"])
    p.add_argument("--memory-budget-gb", type=float, help="memory budget of the kernel")
    p.add_argument("--num-classes", type=int, help="model outputs (default: from the weights)")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (built-in models)")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--out", required=True, type=Path, help="folder for the prepared state")


def _load_models(args: argparse.Namespace, x: Tensor, y: Tensor):
    """The trained model and w0 from ``--weights``/``--pretrained``, strictly checked."""
    state = load_state(args.weights)
    w0_state = load_state(args.pretrained)
    num_classes = args.num_classes or _head_outputs(state) or int(y.max()) + 1

    def build() -> nn.Module:
        return models.build_model(
            args.model,
            num_classes=num_classes,
            input_shape=tuple(x.shape[1:]),
            width=args.width,
            generator_seed=0,
        )

    model, w0 = build(), build()
    load_into(model, state, f"--weights {args.weights}")
    try:
        load_into(w0, w0_state, f"--pretrained {args.pretrained}")
    except CheckpointError as exc:
        raise CheckpointError(
            f"{exc} (pre-trained weights from a different architecture?)"
        ) from exc
    return model.eval(), w0.eval(), build


def prepare_command(args: argparse.Namespace) -> int:
    """``forgetbox prepare``: factor the kernel of the training set once, for later requests."""
    out = Path(args.out)
    if (out / "kernel.safetensors").exists():
        raise ValueError(f"{out} already holds a prepared kernel; choose another --out")
    x, y, _, _ = _load_data(args.data)
    x, y = as_tensors((x, y), "data")
    model, w0, _ = _load_models(args, x, y)
    device = torch.device(args.device)
    budget = int(args.memory_budget_gb * 2**30) if args.memory_budget_gb else None
    t = time.perf_counter()
    prep = prepare(
        model.to(device),
        (x, y),
        weight_decay=args.weight_decay,
        pretrained=w0.to(device),
        loss=args.loss,
        kernel=args.kernel,
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
        "inputs": {"weights": str(args.weights), "data": str(args.data)},
        "versions": versions(),
    }
    atomic_write_json(out / "prepared.json", summary)
    print(
        f"forgetbox prepare: {prep.kernel} kernel of {prep.n} samples x {prep.c} classes "
        f"({prep.chol.shape[0]} rows, {prep.chol.numel() * 8 / 2**20:.0f} MiB) in {seconds:.1f} s "
        f"-> {out}"
    )
    return 0


def _load_data(path: Path):
    if path.suffix == ".npz":
        d = data.load_npz_arrays(path)
    elif path.is_dir():
        x, y, _ = data.load_image_folder(path, size=None)
        d = (x, y, None, None)
    else:
        raise ValueError(f"--data must be an .npz file or an image folder, got {path}")
    return d


def _head_outputs(state: Mapping[str, Tensor]) -> int | None:
    cands = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    return int(cands[-1].shape[0]) if cands else None


def scrub_command(args: argparse.Namespace) -> int:
    """``forgetbox scrub``: every input is validated before anything is written."""
    x, y, xt, yt = _load_data(args.data)
    out = Path(args.out)
    ledger_path = out / "ledger.json"
    ledger = read_ledger(ledger_path)
    already = sorted({i for e in ledger for i in e["forget_indices"]})
    if args.forget is not None:
        idx = data.select_forget(y, indices=data.read_index_file(args.forget))
    elif args.forget_class is not None:
        pool_mask = torch.ones(len(y), dtype=torch.bool)
        pool_mask[already] = False
        masked = torch.where(pool_mask, y, torch.full_like(y, -1))
        idx = data.select_forget(
            masked, forget_class=args.forget_class, num_to_forget=args.num_to_forget, seed=args.seed
        )
    else:
        raise ValueError("give --forget FILE or --forget-class K")
    overlap = sorted(set(idx.tolist()) & set(already))
    if overlap:
        raise ValueError(f"indices {overlap[:5]} were already forgotten (see {ledger_path})")
    if len(idx) + len(already) >= len(y):
        raise data.DataError("the forget cohorts cover the whole training set")
    model, w0, build = _load_models(args, x, y)
    prep = None
    if args.prepared is not None:
        prep = load_prepared(args.prepared)
        if sorted(prep.forgotten.tolist()) != already:
            raise ValueError(
                f"{args.prepared} has answered {len(prep.forgotten)} forgotten samples but the "
                f"ledger in {out} lists {len(already)}: use the --out that goes with it"
            )
        prep.check(model, (x, y))
    keep = data.retain_mask(len(y), torch.cat([idx, torch.tensor(already, dtype=torch.long)]))
    retain, forget = (x[keep], y[keep]), (x[idx], y[idx])
    reference = None
    if args.reference is not None:
        reference = build()
        load_into(reference, load_state(args.reference), f"--reference {args.reference}")
    elif args.verify_retrain:
        reference = finetune(
            w0,
            *retain,
            FinetuneConfig(weight_decay=args.weight_decay),
            seed=args.seed,
            anchor=w0,
            desc="verify: retrain",
        ).model
    budget = int(args.memory_budget_gb * 2**30) if args.memory_budget_gb else None
    split = (
        dict(data=(x, y), prepared=prep) if prep is not None else dict(retain=retain, forget=forget)
    )
    result = scrub(
        model,
        pretrained=w0,
        **split,
        kernel=args.kernel,
        method=args.method,
        alpha=args.alpha,
        weight_decay=args.weight_decay,
        loss=args.loss,
        solver=args.solver,
        reference=reference,
        seed=args.seed,
        test=(xt, yt) if xt is not None else None,
        memory_budget=budget,
        forget_indices=idx.tolist(),
    )
    cert = result.certificate
    cert["hashes"]["weights_file_sha256"] = sha256_file(args.weights)
    cert["hashes"]["pretrained_file_sha256"] = sha256_file(args.pretrained)
    cert["inputs"] = {
        "weights": str(args.weights),
        "pretrained": str(args.pretrained),
        "data": str(args.data),
        "previously_forgotten": len(already),
    }
    new_ledger = ledger_append(ledger, cert, idx.tolist(), args.retrain_threshold_nats)
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
        prep.save_cohort(args.prepared)
    atomic_write_json(ledger_path, new_ledger)
    print(summary)
    return 0


def summary_text(cert: dict, entry: dict) -> str:
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
