"""The structured ("ghost") form of one layer's kernel block, from its factors held for all n
samples: ``K[(i,a),(j,b)] = sum_g sum_{t,s} (D_ia[t] . D_jb[s]) (X_i[t] . X_j[s])``
(:mod:`forgetbox.ntk.flops`), by blocks of samples, no per-sample gradient formed."""

from __future__ import annotations

import math

from torch import Tensor

from .flops import LayerShape


def ghost_block(XI: Tensor, DI: Tensor, XJ: Tensor, DJ: Tensor) -> Tensor:
    """The kernel block ``(bi k, bj k)`` between samples I and J: ``X`` ``(g, b, T, d)``,
    ``D`` ``(g, b, k, T, o)``. Two matmuls (``XX = X_I X_J^T`` ``(g, bi T, bj T)``, ``DD = D_I
    D_J^T`` ``(g, bi k T, bj k T)``), then ``DD * XX`` (broadcast over the classes) summed over
    the groups and the positions."""
    g, bi, T, d = XI.shape
    bj, k, o = XJ.shape[1], DI.shape[2], DI.shape[-1]
    XX = XI.reshape(g, bi * T, d) @ XJ.reshape(g, bj * T, d).transpose(1, 2)
    DD = DI.reshape(g, bi * k * T, o) @ DJ.reshape(g, bj * k * T, o).transpose(1, 2)
    DD = DD.view(g, bi, k, T, bj, k, T).mul_(XX.view(g, bi, 1, T, bj, 1, T))
    return DD.sum((0, 3, 6)).reshape(bi * k, bj * k)


def ghost_block_samples(k: int, s: LayerShape, max_elems: int) -> int:
    """Samples per block so that ``DD`` (``g (b k T)^2`` values) has at most ``max_elems``."""
    return max(1, math.isqrt(max_elems // s.groups) // (k * s.positions))


def ghost_accumulate(
    K: Tensor, X: Tensor, D: Tensor, lo: int, hi: int, block: int, symmetric: bool
) -> None:
    """``K[rows of samples lo:hi] +=`` the layer's structured kernel over all n samples, for
    ``X`` ``(g, n, T, d)`` and ``D`` ``(g, n, k, T, o)`` (this rank's rows; K sample-major).
    ``symmetric`` (all rows here): only the upper block triangle is computed, then mirrored."""
    n, k = X.shape[1], D.shape[2]
    for i0 in range(lo, hi, block):
        i1 = min(hi, i0 + block)
        for j0 in range(i0 if symmetric else 0, n, block):
            j1 = min(n, j0 + block)
            blk = ghost_block(X[:, i0:i1], D[:, i0:i1], X[:, j0:j1], D[:, j0:j1]).to(K.dtype)
            K[i0 * k : i1 * k, j0 * k : j1 * k] += blk
            if symmetric and j0 != i0:
                K[j0 * k : j1 * k, i0 * k : i1 * k] += blk.T
