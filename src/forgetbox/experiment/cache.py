"""The stage cache: content-addressed stage outputs (safetensors + JSON) in a folder."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor

from ..atomic import atomic_write_json
from ..checkpoints import load_state, save_state


@dataclass
class Cache:
    """Stage outputs stored under a hash of everything they depend on: an interrupted run
    continues where it stopped and an identical run recomputes nothing."""

    root: Path
    hits: int = 0
    misses: int = 0

    def state(self, key: str, compute: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        path = self.root / f"{key}.safetensors"
        if path.exists():
            self.hits += 1
            return load_state(path)
        self.misses += 1
        out = compute()
        save_state(path, out)
        return out

    def json(self, key: str, compute: Callable[[], object]) -> object:
        path = self.root / f"{key}.json"
        if path.exists():
            self.hits += 1
            return json.loads(path.read_text())
        self.misses += 1
        out = compute()
        atomic_write_json(path, out)
        return json.loads(path.read_text())
