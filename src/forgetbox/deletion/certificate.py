"""The forgetting certificate: what was forgotten, how, and the bounds in nats (fields in
``docs/certificate.md``)."""

from __future__ import annotations

from datetime import UTC, datetime

import torch
from torch import Tensor, nn

from .. import bounds, methods, readouts
from ..functional import flatten, parameters_of
from ..hashing import sha256_indices, state_sha256
from ..methods import ForgetConfig, Method
from ..versions import versions

CERTIFICATE_FORMAT = "forgetbox-certificate/1"


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
    """The forgetting certificate of one scrub (fields documented in ``docs/certificate.md``)."""
    alpha = res.info.get("alpha") or (
        config.alpha if config.alpha is not None else methods.DEFAULT_ALPHA[Method.NTK_FISHER]
    )
    subsets = {"forget": forget[0], "retain": retain[0]}
    if test is not None:
        subsets["test"] = test[0]
    if res.method == Method.CERTIFIED:
        bound = _certified_bounds(res.info["certified"], subsets)
    else:
        args = (original, scrubbed, res, pretrained, retain, forget, reference, config, alpha)
        bound = _paper_bounds(*args, subsets, seed, queries_per_subset)
    subsets_xy = {"retain": retain, "forget": forget, **({"test": test} if test else {})}
    out = {
        "format": CERTIFICATE_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "method": res.method,
        "config": {
            "alpha": alpha,
            "weight_decay": config.linearization.weight_decay,
            "loss": config.linearization.loss.value,
            "solver": config.ntk.solver.value,
            "jacobian": config.ntk.jacobian.value,
            "linearized_at": config.linearization.around.value,
            "trapezium": config.use_trapezium,
            "trapezium_leg": config.trapezium_leg,
            "step_scale": config.step_scale,
            "seed": seed,
            "trapezium_scale": res.scale,
        },
        "versions": versions(),
        "hashes": {
            "weights_sha256": state_sha256(original),
            "pretrained_sha256": state_sha256(pretrained),
            "scrubbed_sha256": state_sha256(scrubbed),
            "forget_indices_sha256": (
                sha256_indices(forget_indices) if forget_indices is not None else None
            ),
        },
        "cohort": {"n_forget": len(forget[0]), "n_retain": len(retain[0])},
        "bounds": bound,
        "errors": {"before": _errors(original, subsets_xy), "after": _errors(scrubbed, subsets_xy)},
        "method_info": {k: v for k, v in res.info.items() if k not in ("mean", "certified")},
        "batchnorm": batchnorm_note(original, pretrained),
    }
    if res.method == Method.CERTIFIED:
        out["certified"] = res.info["certified"]
        if res.info["certified"]["noise"] == "os-entropy":
            out["config"]["seed"] = None  # the noise was not drawn from the seed
    return out


def public_part(cert: dict) -> dict:
    """What a certified deletion may publish: the ``certified`` section without its operator
    record (every other field of the certificate depends on D or D_f)."""
    section = cert.get("certified")
    if section is None:
        raise ValueError("not a certified deletion's certificate: nothing is publishable")
    return {k: v for k, v in section.items() if k != "operator_record"}


def _paper_bounds(
    original, scrubbed, res, pretrained, retain, forget, reference, config, alpha, subsets, seed, q
) -> dict:
    """The paper's bounds (eqs. 6-7) at the method's noise, against a baseline."""
    mean, var = res.mean, res.noise_variance
    if var is None:
        var = methods.variance_at(scrubbed, mean, retain[0], alpha, config)
    mean0, baseline, kind = _baseline(res, original, pretrained, retain, forget, reference, config)
    var0 = methods.variance_at(scrubbed, mean0, retain[0], alpha, config)
    white = bounds.white_box(mean, var, mean0, var0, parameters_of(original))
    return {
        "baseline": baseline,
        "reference": kind,
        "is_estimate": kind != "retrained",
        "noise": "diagonal alpha * F^-1 on D_r (same alpha for scrubbed and baseline)",
        "white_box_nats": white.nats,
        "white_box_per_tensor_nats": white.per_tensor,
        "black_box": _black_box(original, mean, var, mean0, var0, subsets, seed, q),
    }


def _certified_bounds(record: dict, subsets: dict) -> dict:
    """A certified release's bounds against exact retraining with the same noise: the two
    weight distributions are Gaussians of one covariance ``sigma^2 I`` whose means lie within
    ``r_max / lambda``, so KL <= mu^2 / 2 nats in the weights, and no query's outputs carry more
    (data processing). Stated from r_max (data-independent), not from the realised residual."""
    nats = record["white_box_nats"]  # bounds every query, and all of them jointly
    per_query = {"nats_per_query": nats, "nats_per_query_diagonal": nats, "queries": "all"}
    return {
        "baseline": REFERENCE_NOTES["certified"],
        "reference": "certified",
        "is_estimate": False,
        "noise": f"isotropic, sigma = {record['sigma']:.4g} on the trained parameters",
        "white_box_nats": nats,
        "white_box_per_tensor_nats": {},
        "black_box": {name: dict(per_query) for name in subsets},
    }


REFERENCE_NOTES = {
    "retrained": "measured against a model trained on D_r alone",
    "estimate": "an estimate: measured against the NTK's linearized prediction of w(D_r), not "
    "against a model trained without the cohort",
    "self": "not a measurement: the baseline is this method's own NTK prediction of w(D_r), so "
    "the bound sees only the noise (near 0 nats by construction); give --reference or "
    "--verify-retrain to measure it",
    "certified": "a guarantee: exact retraining of the linearized network on D_r with the same "
    "noise, from strong convexity and the residual budget (docs/certified.md)",
}


def _baseline(res, original, pretrained, retain, forget, reference, config):
    """The weights the bounds compare with, their description and kind: a model trained on
    D_r (``retrained``), the NTK's linearized prediction of it (``estimate``), or, for the NTK
    methods, their own prediction (``self``)."""
    if reference is not None:
        return flatten(parameters_of(reference)), REFERENCE_NOTES["retrained"], "retrained"
    # the NTK methods' mean is that prediction already: do not solve it twice
    if res.method in (Method.NTK, Method.NTK_FISHER):
        return res.mean, REFERENCE_NOTES["self"], "self"
    mean0 = methods.ntk_point(original, pretrained, retain, forget, config)[0]
    return mean0, REFERENCE_NOTES["estimate"], "estimate"


def _black_box(original, mean, var, mean0, var0, subsets, seed, per_subset) -> dict:
    gen = torch.Generator().manual_seed(seed)
    black = {}
    for name, x in subsets.items():
        idx = torch.randperm(len(x), generator=gen)[:per_subset]
        bb = bounds.black_box(original, mean, var, mean0, var0, x[idx])
        black[name] = {
            "nats_per_query": bb.mean,
            "nats_per_query_diagonal": bb.mean_diagonal,
            "queries": len(idx),
        }
    return black


def batchnorm_note(model: nn.Module, pretrained: nn.Module) -> dict:
    """Whether the model's BatchNorm running statistics are w0's (frozen while fine-tuning, as
    the paper does) or were updated on D: then they carry information about D_f that neither
    scrubbing nor the bounds cover."""
    norms = [n for n, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._NormBase)]
    if not norms:
        return {"running_statistics": "none (no BatchNorm layers)"}
    own, base = model.state_dict(), pretrained.state_dict()
    stats = [
        f"{n}.{b}" for n in norms for b in ("running_mean", "running_var") if f"{n}.{b}" in own
    ]
    frozen = all(torch.equal(own[k].cpu(), base[k].cpu()) for k in stats if k in base)
    if frozen:
        return {"running_statistics": "frozen: equal to w0's, so they hold nothing of D"}
    return {
        "running_statistics": "updated during fine-tuning: they carry information about D "
        "(D_f included) that scrubbing does not remove and the bounds do not cover; "
        "recompute them on D_r (--recompute-batchnorm, or recompute_batchnorm=True)",
        "updated": True,
    }


def _errors(model: nn.Module, subsets: dict) -> dict:
    return {name: readouts.error_and_loss(model, *xy)[0] for name, xy in subsets.items()}
