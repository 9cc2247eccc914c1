"""The stage cache: content-addressed stage outputs (safetensors + JSON) in a folder.

Every stage is stored with the seconds it took to compute, so a run read wholly or partly from
the cache still reports what it cost (:meth:`Cache.compute`).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from torch import Tensor

from ..atomic import atomic_write_json
from ..checkpoints import CheckpointError, load_state, read_metadata, save_state


def stage_kind(key: str) -> str:
    """The kind of a stage from its key (``method-ntk-<hash>`` -> ``method-ntk``)."""
    return key.rsplit("-", 1)[0]


@dataclass
class Cache:
    """Stage outputs stored under a hash of everything they depend on: an interrupted run
    continues where it stopped and an identical run recomputes nothing."""

    root: Path
    hits: int = 0
    misses: int = 0
    # seconds per stage kind: computed by this run, and recorded by the run that computed a
    # stage read from the cache (None: a stage stored before times were recorded)
    computed: dict[str, float] = field(default_factory=dict)
    recorded: dict[str, float] = field(default_factory=dict)
    unrecorded: int = 0

    def _hit(self, key: str, seconds: float | None) -> None:
        self.hits += 1
        if seconds is None:
            self.unrecorded += 1
        else:
            kind = stage_kind(key)
            self.recorded[kind] = self.recorded.get(kind, 0.0) + float(seconds)

    def _timed(self, key: str, compute: Callable[[], object]) -> tuple[object, float]:
        self.misses += 1
        t = time.perf_counter()
        out = compute()
        seconds = time.perf_counter() - t
        kind = stage_kind(key)
        self.computed[kind] = self.computed.get(kind, 0.0) + seconds
        return out, seconds

    def state(self, key: str, compute: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        """The stage ``key``'s tensors: read from the cache, or computed and stored."""
        path = self.root / f"{key}.safetensors"
        if path.exists():
            try:
                seconds, state = read_metadata(path).get("seconds"), load_state(path)
            except CheckpointError as exc:
                raise _damaged(path, exc) from exc
            self._hit(key, seconds)
            return state
        out, seconds = self._timed(key, compute)
        save_state(path, out, {"seconds": seconds})
        return out

    def json(self, key: str, compute: Callable[[], object]) -> object:
        """The stage ``key``'s JSON value: read from the cache, or computed and stored."""
        path = self.root / f"{key}.stage.json"
        if path.exists():
            try:
                doc = json.loads(path.read_text())
                seconds, value = doc.get("seconds"), doc["value"]
            except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, KeyError) as exc:
                raise _damaged(path, exc) from exc
            self._hit(key, seconds)
            return value
        out, seconds = self._timed(key, compute)
        atomic_write_json(path, {"seconds": seconds, "value": out})
        return json.loads(path.read_text())["value"]

    def compute(self) -> dict:
        """What the run's stages cost: computed now, and recorded for those read back."""
        kinds = sorted(set(self.computed) | set(self.recorded))
        per_kind = {k: self.computed.get(k, 0.0) + self.recorded.get(k, 0.0) for k in kinds}
        return {
            "total_seconds": sum(per_kind.values()),
            "this_run_seconds": sum(self.computed.values()),
            "from_cache_seconds": sum(self.recorded.values()),
            "stages_without_recorded_time": self.unrecorded,
            "per_stage_kind_seconds": per_kind,
        }


def _damaged(path: Path, exc: Exception) -> CheckpointError:
    """A cache entry that cannot be read (entries are written atomically, so it was damaged
    afterwards): the run stops naming it rather than recompute over it unasked."""
    cause = " ".join(str(exc).split()).replace(f"{path}: ", "")
    return CheckpointError(
        f"{path}: a damaged stage-cache entry ({type(exc).__name__}: {cause}); delete it and "
        "run again to recompute it"
    )
