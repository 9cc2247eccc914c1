"""PCA of training paths and scrubbed weights (Fig. 1)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


@dataclass(frozen=True)
class PCAResult:
    """Training paths and points projected on the paths' first two principal components."""

    paths: dict[str, np.ndarray]  # name -> (T, k)
    points: dict[str, np.ndarray]  # name -> (k,)
    explained: np.ndarray  # fraction of variance of the fitted rows per component
    clouds: dict[str, np.ndarray] | None = None  # name -> (n, k)


def pca_paths(
    paths: dict[str, Tensor],
    points: dict[str, Tensor],
    *,
    clouds: dict[str, Tensor] | None = None,
    k: int = 2,
) -> PCAResult:
    """Fit PCA on the stacked path weights (each ``(T, p)``) and project paths, points
    (``(p,)``) and clouds of points (``(n, p)``, e.g. noisy weights).

    Works through the small ``T x T`` Gram matrix, never a ``p x p`` one.
    """
    rows = torch.cat([p.double() for p in paths.values()])
    center = rows.mean(0)
    X = rows - center
    evals, evecs = torch.linalg.eigh(X @ X.T)
    order = torch.argsort(evals, descending=True)[:k]
    comps = (X.T @ evecs[:, order]) / evals[order].clamp_min(1e-300).sqrt()  # (p, k), orthonormal
    explained = (evals[order] / evals.clamp_min(0).sum()).numpy()

    def proj(v: Tensor) -> np.ndarray:
        return ((v.double() - center) @ comps).numpy()

    return PCAResult(
        {name: proj(p) for name, p in paths.items()},
        {name: proj(v) for name, v in points.items()},
        explained,
        {name: proj(c) for name, c in (clouds or {}).items()},
    )
