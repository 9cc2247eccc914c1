"""Closeness of activations to a reference model (Fig. 4)."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import Tensor, nn

from ..functional import flatten, load_flat_, parameters_of
from ..training import predict


def l1_distance(model_a: nn.Module, model_b: nn.Module, x: Tensor) -> float:
    """Mean over samples of ``||softmax(f_a(x)) - softmax(f_b(x))||_1`` (Fig. 4)."""
    if len(x) == 0:
        return float("nan")
    pa = torch.softmax(predict(model_a, x).double(), -1)
    pb = torch.softmax(predict(model_b, x).double(), -1)
    return (pa - pb).abs().sum(-1).mean().item()


def activation_path(
    model: nn.Module,
    scrubbed_mean: Tensor,
    reference: nn.Module,
    subsets: dict[str, Tensor],
    alphas: tuple[float, ...] = tuple(np.round(np.linspace(0.0, 1.25, 11), 3)),
) -> list[dict]:
    """L1 distance to ``reference`` along ``w(a) = w(D) + a (scrubbed - w(D))`` (Fig. 4).

    Returns one row per ``a``: ``{"alpha": a, "<subset>": distance, ...}``.
    """
    w_d = flatten(parameters_of(model))
    probe = copy.deepcopy(model)
    rows = []
    for a in alphas:
        load_flat_(probe, w_d + float(a) * (scrubbed_mean.to(w_d) - w_d))
        rows.append(
            {"alpha": float(a)} | {k: l1_distance(probe, reference, x) for k, x in subsets.items()}
        )
    return rows
