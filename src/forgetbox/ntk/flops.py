"""The flop model that picks, per layer, how its share of the exact kernel is formed.

A weight of a Linear or Conv2d layer in ``g`` groups maps, per group, ``d`` input features at
each of ``T`` output positions to ``o`` outputs (``T`` = 1 for a Linear layer on ``(b, d)``, the
token count with a sequence dimension, ``H' W'`` for a convolution; ``d = C_in k^2 / g`` unfolded
patch features, ``o = C_out / g``), so ``p = g o d`` parameters. With ``X_i`` ``(T, d)`` the
inputs of sample i and ``D_ia`` ``(T, o)`` the gradient of its output a w.r.t. the layer's
outputs, the per-sample gradient is ``G_ia = D_ia^T X_i`` and the layer's kernel block

    K[(i,a),(j,b)] = <G_ia, G_jb> = sum_{t,s} (D_ia[t] . D_jb[s]) (X_i[t] . X_j[s]).

Counted in multiply-adds for n samples and k kernel rows per sample (k = c, or 1 for the
pseudo-NTK), both over the upper triangle of pairs only (the kernel is symmetric):

- **contracted**: form every ``G_ia`` (``n k T p``), then the Gram matrix
  (``nk (nk + 1) / 2 * p``);
- **structured** (the "ghost" form, Novak et al. 2022's structured derivatives): per pair of
  samples and group, ``X_i X_j^T`` (``T^2 d``), ``D_i D_j^T`` over all k^2 class pairs
  (``k^2 T^2 o``) and their elementwise product summed (``k^2 T^2``):
  ``n (n + 1) / 2 * g T^2 (d + k^2 o + k^2)``.

Per pair the structured form costs ``T^2 (d + k^2 o)`` against ``k^2 d o`` for the contracted
Gram: it wins when ``T`` is small next to the channel widths (ResNet-18's last stage, T = 16;
every Linear layer, T = 1) and loses when ``T`` is large (early convolutions). The recording
pass (forward, class-batched backward, unfolding) is common to both and not counted.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class LayerForm(StrEnum):
    """How one weight's kernel block is formed (see the module docstring)."""

    STRUCTURED = "structured"
    CONTRACTED = "contracted"


@dataclass(frozen=True)
class LayerShape:
    """A factored weight: ``groups`` groups of ``out`` x ``inp`` at ``positions`` positions."""

    positions: int  # T
    inp: int  # d, per group
    out: int  # o, per group
    groups: int = 1

    @property
    def numel(self) -> int:
        """Number of weights of the layer."""
        return self.groups * self.out * self.inp


def contracted_macs(n: int, k: int, s: LayerShape) -> int:
    """Multiply-adds of the contracted form: per-sample gradients, then their Gram matrix."""
    m = n * k
    return m * s.positions * s.numel + m * (m + 1) // 2 * s.numel


def structured_macs(n: int, k: int, s: LayerShape) -> int:
    """Multiply-adds of the structured form over the ``n (n + 1) / 2`` sample pairs."""
    T = s.positions
    return n * (n + 1) // 2 * s.groups * T * T * (s.inp + k * k * s.out + k * k)


def structured_bytes(k: int, s: LayerShape, item: int) -> int:
    """Bytes per sample the structured form holds: ``X`` ``(T, d)`` and ``D`` ``(k, T, o)``
    per group."""
    return s.groups * s.positions * (s.inp + k * s.out) * item


def choose_form(n: int, k: int, s: LayerShape) -> LayerForm:
    """The form with fewer multiply-adds (the contracted one on a tie)."""
    if structured_macs(n, k, s) < contracted_macs(n, k, s):
        return LayerForm.STRUCTURED
    return LayerForm.CONTRACTED
