"""Deletion requests as the command line states them (``forgetbox scrub`` and ``prepare``),
and the summary a served request prints."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..methods import ForgetConfig, Method
from .files import ModelFiles


@dataclass(frozen=True)
class ScrubRequest:
    """One ``forgetbox scrub`` request (the command's flags, see ``forgetbox scrub --help``).

    ``config``: every setting of the methods, whole (:class:`~forgetbox.methods.ForgetConfig`);
    ``stated``: the names of the settings the command line gave (a prepared state supplies the
    linearization and kernel settings left unstated, and refuses stated ones that differ).
    """

    files: ModelFiles
    data: Path
    out: Path
    config: ForgetConfig = field(default_factory=ForgetConfig)
    stated: frozenset[str] = frozenset()
    forget: Path | None = None
    forget_class: int | None = None
    num_to_forget: int | None = None
    method: Method = Method.NTK_FISHER
    seed: int = 0
    reference: Path | None = None
    verify_retrain: bool = False
    retrain_threshold_nats: float | None = None
    prepared: Path | None = None
    restart_from_original: bool = False
    recompute_batchnorm: bool = False
    trainable: str | None = None
    device: str = "cpu"
    ledger_key_file: Path | None = None
    data_appended: bool = False
    mu_budget: float | None = None


@dataclass(frozen=True)
class PrepareRequest:
    """One ``forgetbox prepare`` request (its linearization and NTK options in ``config``)."""

    files: ModelFiles
    data: Path
    out: Path
    config: ForgetConfig = field(default_factory=ForgetConfig)
    device: str = "cpu"
    trainable: str | None = None
    ledger_key_file: Path | None = None
    certified: bool = False  # the kernel of a linearized model, for certified requests


def _g(value, spec: str = ".4g") -> str:
    """A number as ``spec``, or ``n/a`` (a value the certificate could not compute: null)."""
    return "n/a" if value is None else format(value, spec)


def summary_text(cert: dict, entry: dict) -> str:
    """The human-readable summary of one request (``summary.txt``): a function of the
    certificate as written (JSON) and the ledger entry, so it can be checked by recomputing."""
    b = cert["bounds"]
    e = cert["errors"]
    lines = [
        f"forgetbox scrub: request {entry['request']}, method {cert['method']}, "
        f"{cert['cohort']['n_forget']} samples forgotten, {cert['cohort']['n_retain']} retained",
        f"bounds {b['baseline']}:",
        f"  white box: {_g(b['white_box_nats'])} nats",
    ]
    for name, v in b["black_box"].items():
        lines.append(
            f"  black box, per query from {name}: {_g(v['nats_per_query'])} nats "
            f"(diagonal approx. {_g(v['nats_per_query_diagonal'])})"
        )
    for subset in e["before"]:
        before, after = _g(e["before"][subset], ".3f"), _g(e["after"][subset], ".3f")
        lines.append(f"  error on {subset}: {before} -> {after}")
    lines.append(f"BatchNorm statistics: {cert['batchnorm']['running_statistics']}")
    lines += [f"note: {n}" for n in cert.get("notes", [])]
    lines.append(
        f"ledger: measured total {_g(entry['running_total_measured_nats'])} nats"
        f" (against retrained models), estimated {_g(entry['running_total_estimated_nats'])}"
        " nats (not measurements)" + (" -- RETRAIN DUE" if entry["retrain_due"] else "")
    )
    return "\n".join(lines) + "\n"
