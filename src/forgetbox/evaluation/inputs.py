"""What every score of an evaluation is computed from, kept beside ``evaluation.json`` as
``evaluation-inputs.npz``: the labels of the split and the cohort, each model's logits on D, the
validation and the test set (every method's K members, the K references and, linearized, the
negative control), their seeds, seconds and readouts, and U-LiRA's shadow margins. With it an
evaluation is rescored when a score's definition changes, without its models.

The file holds arrays only (NumPy's ``.npz``, read with ``allow_pickle=False``: nothing in it can
run code). ``evaluation.json`` records its SHA-256, checked before the file is parsed; logits
that float32 holds exactly (a float32 model's, made float64 for the scores) are kept as float32,
so the round trip is exact.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import data
from ..atomic import atomic_write_bytes
from ..experiment.tasks import Task
from .ensembles import Member
from .shadows import ShadowConfidences

FILE = "evaluation-inputs.npz"
FORMAT = "forgetbox-evaluation-inputs/1"
LOGITS = ("train", "val", "test")
REFERENCES = "reference"
CONTROL = "original+noise"


class InputsError(ValueError):
    """An inputs file that is missing, altered or not one forgetbox wrote."""


@dataclass
class ScoreInputs:
    """Everything :mod:`forgetbox.evaluation.scores` reads: ``task`` (labels and cohort; no
    images), ``members`` by method (in the evaluation's order), ``references``, ``control``
    (linearized runs' originals released with the noise, else None), ``shadows`` and ``sigma``
    (linearized runs: the certified noise's standard deviation, else None)."""

    task: Task
    members: dict[str, list[Member]]
    references: list[Member]
    control: list[Member] | None
    shadows: ShadowConfidences | None
    sigma: float | None = None


def _compact(t: torch.Tensor) -> np.ndarray:
    """``t`` as float32 where that is exact, else float64."""
    a = t.detach().cpu().double().numpy()
    f = a.astype(np.float32)
    return f if np.array_equal(f.astype(np.float64), a, equal_nan=True) else a


def _set_arrays(name: str, ms: list[Member]) -> dict[str, np.ndarray]:
    keys = sorted({k for m in ms for k in m.readouts})
    out = {f"{name}/logits_{s}": _compact(torch.stack([m.logits[s] for m in ms])) for s in LOGITS}
    out[f"{name}/index"] = np.asarray([m.index for m in ms], np.int64)
    out[f"{name}/seed"] = np.asarray([m.seed for m in ms], np.int64)
    out[f"{name}/seconds"] = np.asarray(
        [np.nan if m.seconds is None else m.seconds for m in ms], np.float64
    )
    out[f"{name}/readout_keys"] = np.asarray(keys, dtype=str)
    out[f"{name}/readout_is_int"] = np.asarray(
        [all(isinstance(m.readouts.get(k), int | None) for m in ms) for k in keys], bool
    ).reshape(len(keys))
    out[f"{name}/readouts"] = np.asarray(
        [[np.nan if m.readouts.get(k) is None else m.readouts[k] for k in keys] for m in ms],
        np.float64,
    ).reshape(len(ms), len(keys))
    return out


def _arrays(inputs: ScoreInputs) -> dict[str, np.ndarray]:
    sp, task = inputs.task.split, inputs.task
    out = {
        "format": np.asarray(FORMAT),
        "num_classes": np.asarray(sp.num_classes, np.int64),
        "labels_train": sp.y_train.numpy().astype(np.int64),
        "labels_val": sp.y_val.numpy().astype(np.int64),
        "labels_test": sp.y_test.numpy().astype(np.int64),
        "forget_idx": task.forget_idx.numpy().astype(np.int64),
        "methods": np.asarray(list(inputs.members), dtype=str),
        "sigma": np.asarray(np.nan if inputs.sigma is None else inputs.sigma, np.float64),
    }
    sets = {**inputs.members, REFERENCES: inputs.references}
    if inputs.control is not None:
        sets[CONTROL] = inputs.control
    for name, ms in sets.items():
        out.update(_set_arrays(name, ms))
    if inputs.shadows is not None:
        sh = inputs.shadows
        out["shadow_methods"] = np.asarray(list(sh.conf), dtype=str)
        out["shadows/status"] = sh.status.numpy()
        out["shadows/folds"] = sh.folds.numpy()
        out["shadows/shadows"] = sh.shadows.numpy()
        for method, conf in sh.conf.items():
            out[f"shadows/conf/{method}"] = _compact(conf)
            out[f"shadows/seconds/{method}"] = np.asarray(sh.seconds[method], np.float64)
    return out


def write_inputs(folder: str | Path, inputs: ScoreInputs) -> dict:
    """Write ``folder/evaluation-inputs.npz`` atomically; return its entry for
    ``evaluation.json`` (file name, SHA-256, bytes)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **_arrays(inputs))
    raw = buf.getvalue()
    atomic_write_bytes(Path(folder) / FILE, raw)
    return {
        "file": FILE,
        "format": FORMAT,
        "sha256": hashlib.sha256(raw).hexdigest(),
        "bytes": len(raw),
    }


def _members(z, name: str) -> list[Member]:
    logits = {s: torch.from_numpy(z[f"{name}/logits_{s}"]).double() for s in LOGITS}
    keys = [str(k) for k in z[f"{name}/readout_keys"]]
    table = z[f"{name}/readouts"]
    kinds = [int if flag else float for flag in z[f"{name}/readout_is_int"]]
    out = []
    for i, (index, seed, secs) in enumerate(
        zip(z[f"{name}/index"], z[f"{name}/seed"], z[f"{name}/seconds"], strict=True)
    ):
        readouts = {
            k: None if np.isnan(v) else kind(v)
            for k, kind, v in zip(keys, kinds, table[i], strict=True)
        }
        out.append(
            Member(
                name,
                int(index),
                int(seed),
                {s: v[i] for s, v in logits.items()},
                readouts,
                None if np.isnan(secs) else float(secs),
            )
        )
    return out


def _shadows(z) -> ShadowConfidences | None:
    if "shadow_methods" not in z.files:
        return None
    methods = [str(m) for m in z["shadow_methods"]]
    return ShadowConfidences(
        {m: torch.from_numpy(z[f"shadows/conf/{m}"]).double() for m in methods},
        torch.from_numpy(z["shadows/status"]),
        torch.from_numpy(z["shadows/folds"]),
        {m: z[f"shadows/seconds/{m}"].tolist() for m in methods},
        torch.from_numpy(z["shadows/shadows"]),
    )


def read_inputs(folder: str | Path, entry: dict | None) -> ScoreInputs:
    """The inputs recorded by ``entry`` (``evaluation.json``'s ``inputs``), its SHA-256 checked
    before the file is parsed; :class:`InputsError` naming the cause otherwise."""
    if not isinstance(entry, dict) or entry.get("file") != FILE or "sha256" not in entry:
        raise InputsError(
            "this evaluation records no score inputs (written before forgetbox kept them): "
            "it can be re-rendered, not rescored; run forgetbox evaluate again"
        )
    path = Path(folder) / FILE
    if not path.is_file():
        raise InputsError(f"{path}: missing (evaluation.json records it)")
    raw = path.read_bytes()
    if hashlib.sha256(raw).hexdigest() != entry["sha256"]:
        raise InputsError(f"{path}: its SHA-256 differs from the one evaluation.json records")
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as z:
            if "format" not in z.files or str(z["format"]) != FORMAT:
                raise InputsError(f"{path}: not a {FORMAT} file")
            return _parse(z)
    except (KeyError, ValueError, OSError, zipfile.BadZipFile) as exc:
        if isinstance(exc, InputsError):
            raise
        raise InputsError(f"{path}: unreadable score inputs ({exc})") from exc


def _parse(z) -> ScoreInputs:
    labels = {s: torch.from_numpy(z[f"labels_{s}"]) for s in LOGITS}
    empty = {s: torch.empty(len(v), 0) for s, v in labels.items()}
    split = data.Split(
        empty["train"],
        labels["train"],
        empty["val"],
        labels["val"],
        empty["test"],
        labels["test"],
        int(z["num_classes"]),
    )
    task = Task(split, torch.from_numpy(z["forget_idx"]))
    members = {str(m): _members(z, str(m)) for m in z["methods"]}
    control = _members(z, CONTROL) if f"{CONTROL}/index" in z.files else None
    sigma = float(z["sigma"])
    return ScoreInputs(
        task,
        members,
        _members(z, REFERENCES),
        control,
        _shadows(z),
        None if np.isnan(sigma) else sigma,
    )
