"""Deletion requests as the command line states them (``forgetbox scrub`` and ``prepare``),
and the summary a served request prints."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .files import ModelFiles


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
    step_scale: float | None = None
    preset: str = "forgetbox"
    weight_decay: float = 0.1
    loss: str = "ce"
    solver: str = "auto"
    kernel: str = "exact"
    memory_budget_gb: float | None = None
    nystrom_rank: int | None = None
    cg_tol: float | None = None
    cg_max_iter: int | None = None
    seed: int = 0
    reference: Path | None = None
    verify_retrain: bool = False
    retrain_threshold_nats: float | None = None
    prepared: Path | None = None
    restart_from_original: bool = False
    recompute_batchnorm: bool = False
    trainable: str | None = None
    device: str = "cpu"
    dtype: str | None = None  # float32 | float64 (default: the weights')
    ledger_key_file: Path | None = None

    @property
    def memory_budget(self) -> int | None:
        return gib_to_bytes(self.memory_budget_gb)

    def settings(self) -> dict:
        """The scrub settings of :func:`forgetbox.deletion.scrub`."""
        return {
            "weight_decay": self.weight_decay,
            "alpha": self.alpha,
            "step_scale": self.step_scale,
            "preset": self.preset,
            "loss": self.loss,
            "solver": self.solver,
            "kernel": self.kernel,
            "memory_budget": self.memory_budget,
            "nystrom_rank": self.nystrom_rank,
            "cg_tol": self.cg_tol,
            "cg_max_iter": self.cg_max_iter,
            "dtype": DTYPES[self.dtype] if self.dtype else None,
        }


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
    trainable: str | None = None
    dtype: str | None = None
    solver: str = "auto"


DTYPES = {"float32": torch.float32, "float64": torch.float64}


def gib_to_bytes(gib: float | None) -> int | None:
    if gib is None:
        return None
    if not gib > 0 or gib == float("inf"):
        raise ValueError(f"--memory-budget-gb must be a positive number; got {gib}")
    return max(1, int(gib * 2**30))


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
