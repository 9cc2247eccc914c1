"""KLoM (Georgiev et al. 2024, "Attribute-to-Delete", appendix E.1): per example, the KL
divergence between the margins of an unlearned ensemble and of a retrained ensemble, as the
authors' benchmark code (data-unlearning-bench) computes it.

Margins (:func:`~forgetbox.audit.confidence.margin`) are clipped to [-100, 100]; the two
samples share 20 equal bins spanning their joint range (one bin of width 1 when every value
is equal). A value is counted in bin i when ``edge[i-1] <= value < edge[i]``, so a value at
the very top edge is not counted (NumPy ``digitize``, as in the reference code). Bin counts
become probabilities, the retrained probabilities are raised to 1e-5 wherever the unlearned
ones are positive, both are normalised, and the result is ``KL(unlearned || retrained)`` in
nats: 0 for identical samples, larger the more the unlearned models' margins differ from
what retraining gives.

When no unlearned margin is counted (all at the top edge of the joint range: e.g. every
unlearned margin clipped at 100 while the retrained ones lie below), the divergence cannot be
computed: NaN, as the reference code gives (``scipy.stats.entropy`` of an all-zero
distribution), never 0, which would read as perfect forgetting.
"""

from __future__ import annotations

import torch
from torch import Tensor

BINS = 20
CLIP = 100.0
EPS = 1e-5
DIRECTION = "KL(unlearned || retrained)"


def _counts(values: Tensor, edges: Tensor) -> Tensor:
    """``(n, BINS)`` counts per example of ``values`` ``(n, K)`` in ``edges`` ``(n, BINS+1)``."""
    idx = torch.searchsorted(edges.contiguous(), values.contiguous(), right=True)  # 1..BINS
    valid = (idx >= 1) & (idx <= BINS)
    onehot = torch.zeros(values.shape[0], BINS + 2, dtype=torch.float64)
    onehot.scatter_add_(1, idx, valid.double())
    return onehot[:, 1 : BINS + 1]


def binned_kl(unlearned: Tensor, retrained: Tensor) -> Tensor:
    """Per example (column), the binned ``KL(unlearned || retrained)`` of two samples of
    margins ``(K_u, n)`` and ``(K_r, n)``; ``(n,)`` nats, NaN where no unlearned value falls in
    a bin (all at the top edge of the joint range): KLoM cannot be computed there."""
    p_arr = unlearned.double().clamp(-CLIP, CLIP).T  # (n, K_u)
    q_arr = retrained.double().clamp(-CLIP, CLIP).T
    start = torch.minimum(p_arr.min(1).values, q_arr.min(1).values)
    end = torch.maximum(p_arr.max(1).values, q_arr.max(1).values)
    end = torch.where(start >= end, start + 1.0, end)
    # as numpy.linspace computes them: i * step + start, the last edge exactly at the top
    step = (end - start) / BINS
    edges = torch.arange(BINS + 1, dtype=torch.float64)[None, :] * step[:, None] + start[:, None]
    edges[:, -1] = end
    p, q = _counts(p_arr, edges), _counts(q_arr, edges)
    counted = p.sum(1)  # unlearned margins in some bin; 0: no distribution to compare
    p = p / counted[:, None].clamp_min(1)
    q = q / q.sum(1, keepdim=True).clamp_min(1)
    q = torch.where(p > 0, q.clamp_min(EPS), q)
    # normalised again, as scipy.stats.entropy does (an uncounted row stays all zero)
    p = p / p.sum(1, keepdim=True).clamp_min(1e-300)
    q = q / q.sum(1, keepdim=True).clamp_min(1e-300)
    terms = torch.where(p > 0, p * torch.log(p / q), torch.zeros_like(p))
    return torch.where(counted > 0, terms.sum(1), float("nan"))


def klom(unlearned_margins: Tensor, retrained_margins: Tensor) -> Tensor:
    """KLoM per example: margins ``(K, n)`` of the unlearned and the retrained ensembles
    (the same examples in the same order) -> ``(n,)`` nats, :data:`DIRECTION`; NaN where it
    cannot be computed (see :func:`binned_kl`)."""
    if unlearned_margins.ndim != 2 or unlearned_margins.shape[1] != retrained_margins.shape[1]:
        raise ValueError(
            "margins must be (models, examples) with the same examples; got "
            f"{tuple(unlearned_margins.shape)} and {tuple(retrained_margins.shape)}"
        )
    return binned_kl(unlearned_margins, retrained_margins)
