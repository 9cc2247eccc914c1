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


@dataclass(frozen=True)
class PrepareRequest:
    """One ``forgetbox prepare`` request (its linearization and NTK options in ``config``)."""

    files: ModelFiles
    data: Path
    out: Path
    config: ForgetConfig = field(default_factory=ForgetConfig)
    device: str = "cpu"
    trainable: str | None = None


def summary_text(cert: dict, entry: dict) -> str:
    """The human-readable summary of one request (``summary.txt``)."""
    b = cert["bounds"]
    e = cert["errors"]
    lines = [
        f"forgetbox scrub: request {entry['request']}, method {cert['method']}, "
        f"{cert['cohort']['n_forget']} samples forgotten, {cert['cohort']['n_retain']} retained",
        f"bounds {b['baseline']}:",
        f"  white box: {b['white_box_nats']:.4g} nats",
    ]
    for name, v in b["black_box"].items():
        lines.append(
            f"  black box, per query from {name}: {v['nats_per_query']:.4g} nats "
            f"(diagonal approx. {v['nats_per_query_diagonal']:.4g})"
        )
    for subset in e["before"]:
        lines.append(f"  error on {subset}: {e['before'][subset]:.3f} -> {e['after'][subset]:.3f}")
    lines.append(f"BatchNorm statistics: {cert['batchnorm']['running_statistics']}")
    lines += [f"note: {n}" for n in cert.get("notes", [])]
    lines.append(
        f"ledger: measured total {entry['running_total_measured_nats']:.4g} nats"
        f" (against retrained models), estimated {entry['running_total_estimated_nats']:.4g}"
        " nats (not measurements)" + (" -- RETRAIN DUE" if entry["retrain_due"] else "")
    )
    return "\n".join(lines) + "\n"
