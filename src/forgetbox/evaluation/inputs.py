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


class _Arrays:
    """The arrays of an inputs file, each checked when taken: present, its number of
    dimensions, its kind (NumPy ``dtype.kind``) and, where given, its shape."""

    def __init__(self, z):
        self.z = z

    def __contains__(self, key: str) -> bool:
        return key in self.z.files

    def get(self, key: str, kinds: str, shape: tuple[int | None, ...]) -> np.ndarray:
        if key not in self.z.files:
            raise InputsError(f"array {key} is missing")
        a = self.z[key]
        if a.dtype.kind not in kinds or a.ndim != len(shape):
            raise InputsError(
                f"array {key} is {a.ndim}-d {a.dtype}; expected {len(shape)}-d of kind {kinds!r}"
            )
        if any(want is not None and got != want for got, want in zip(a.shape, shape, strict=True)):
            raise InputsError(f"array {key} has shape {a.shape}; expected {shape}")
        return a


INTS, FLOATS, TEXT = "iu", "f", "U"


def _members(z: _Arrays, name: str, sizes: dict[str, int], c: int) -> list[Member]:
    index = z.get(f"{name}/index", INTS, (None,))
    k = len(index)
    seed = z.get(f"{name}/seed", INTS, (k,))
    seconds = z.get(f"{name}/seconds", FLOATS, (k,))
    logits = {
        s: torch.from_numpy(z.get(f"{name}/logits_{s}", FLOATS, (k, sizes[s], c))).double()
        for s in LOGITS
    }
    keys = [str(x) for x in z.get(f"{name}/readout_keys", TEXT, (None,))]
    table = z.get(f"{name}/readouts", FLOATS, (k, len(keys)))
    flags = z.get(f"{name}/readout_is_int", "b", (len(keys),))
    kinds = [int if flag else float for flag in flags]
    out = []
    for i in range(k):
        readouts = {
            key: None if np.isnan(v) else kind(v)
            for key, kind, v in zip(keys, kinds, table[i], strict=True)
        }
        out.append(
            Member(
                name,
                int(index[i]),
                int(seed[i]),
                {s: v[i] for s, v in logits.items()},
                readouts,
                None if np.isnan(seconds[i]) else float(seconds[i]),
            )
        )
    return out


def _shadows(z: _Arrays, n: int) -> ShadowConfidences | None:
    if "shadow_methods" not in z:
        return None
    methods = [str(m) for m in z.get("shadow_methods", TEXT, (None,))]
    status = z.get("shadows/status", INTS, (None, n))
    m = len(status)
    return ShadowConfidences(
        {x: torch.from_numpy(z.get(f"shadows/conf/{x}", FLOATS, (m, n))).double() for x in methods},
        torch.from_numpy(status),
        torch.from_numpy(z.get("shadows/folds", INTS, (m,))),
        {x: z.get(f"shadows/seconds/{x}", FLOATS, (m,)).tolist() for x in methods},
        torch.from_numpy(z.get("shadows/shadows", INTS, (m,))),
    )


def read_inputs(folder: str | Path, entry: dict | None) -> ScoreInputs:
    """The inputs recorded by ``entry`` (``evaluation.json``'s ``inputs``), its SHA-256 checked
    before the file is parsed, every array's kind and shape after; :class:`InputsError`
    naming the cause otherwise."""
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
        z = np.load(io.BytesIO(raw), allow_pickle=False)
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as exc:
        raise InputsError(f"{path}: not an .npz of arrays ({exc})") from exc
    if not isinstance(z, np.lib.npyio.NpzFile):
        raise InputsError(f"{path}: a single array, not a {FORMAT} .npz file")
    try:
        with z:
            return _parse(_Arrays(z))
    except InputsError as exc:
        raise InputsError(f"{path}: {exc}") from None
    except (KeyError, ValueError, TypeError, IndexError, OSError, zipfile.BadZipFile) as exc:
        raise InputsError(f"{path}: unreadable score inputs ({type(exc).__name__}: {exc})") from exc


def _parse(z: _Arrays) -> ScoreInputs:
    if str(z.get("format", TEXT, ())) != FORMAT:
        raise InputsError(f"not a {FORMAT} file")
    c = int(z.get("num_classes", INTS, ()))
    labels = {s: z.get(f"labels_{s}", INTS, (None,)) for s in LOGITS}
    sizes = {s: len(v) for s, v in labels.items()}
    if c < 2 or any(len(v) and (v.min() < 0 or v.max() >= c) for v in labels.values()):
        raise InputsError(f"labels outside [0, num_classes = {c})")
    forget = z.get("forget_idx", INTS, (None,))
    if len(forget) == 0 or forget.min() < 0 or forget.max() >= sizes["train"]:
        raise InputsError("forget_idx is empty or outside the training set")
    as_long = {s: torch.from_numpy(v.astype(np.int64)) for s, v in labels.items()}
    empty = {s: torch.empty(n, 0) for s, n in sizes.items()}
    split = data.Split(
        empty["train"],
        as_long["train"],
        empty["val"],
        as_long["val"],
        empty["test"],
        as_long["test"],
        c,
    )
    task = Task(split, torch.from_numpy(forget.astype(np.int64)))
    methods = [str(m) for m in z.get("methods", TEXT, (None,))]
    if not methods:
        raise InputsError("no method's models")
    members = {m: _members(z, m, sizes, c) for m in methods}
    references = _members(z, REFERENCES, sizes, c)
    control = _members(z, CONTROL, sizes, c) if f"{CONTROL}/index" in z else None
    order = [r.index for r in references]
    for name, ms in {**members, **({CONTROL: control} if control else {})}.items():
        if name != "retrain" and [m.index for m in ms] != order:
            raise InputsError(f"{name}'s models do not pair the references' indices {order}")
    sigma = float(z.get("sigma", FLOATS, ()))
    return ScoreInputs(
        task,
        members,
        references,
        control,
        _shadows(z, sizes["train"]),
        None if np.isnan(sigma) else sigma,
    )
