"""Per-layer rules: a layer's per-sample, per-output gradients from its recorded input and the
gradients of its outputs, without ``vmap(jacrev)`` (as opacus' ``register_grad_sampler``).

A rule sees, for a batch of b samples and k cotangent rows of the logits (the c classes, or
one summed row for the pseudo-NTK), the input ``a`` the layer received (after
:meth:`LayerRule.capture`) and the output gradients ``g`` ``(k, b, *out)``. Samples are
independent (BatchNorm uses its running statistics), so row ``[a, i]`` of ``g`` is the
gradient of output a of sample i alone.

- ``nn.Linear`` (any extra token dimensions) and ``nn.Conv2d`` (any stride, padding, padding
  mode, dilation, groups): the weight's gradient is factored, ``G_ia = sum_t D_ia[t] X_i[t]^T``
  per group (:class:`Factors`; X = the input, or the unfolded input patches), which the kernel
  uses either contracted (:func:`contract`) or in structured form (:mod:`forgetbox.ntk.ghost`);
  the bias's gradient is ``sum_t D_ia[t]``.
- ``nn.BatchNorm1d/2d/3d`` with running statistics: ``sum_t g * x_hat`` and ``sum_t g``.

Layers of any other type (or a rule's :meth:`LayerRule.supports` refusing one) keep the
``vmap(jacrev)`` path for their parameters.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .flops import LayerShape


@dataclass(frozen=True)
class Factors:
    """A weight's per-sample gradient in factored form, per group of a grouped layer:
    ``G[i, a] = D[:, i, a]^T X[:, i]`` with ``X`` ``(g, b, T, d)`` (inputs at the T output
    positions) and ``D`` ``(g, b, k, T, o)`` (output gradients); the weight's layout is
    ``(g, o, d)`` flattened."""

    X: Tensor
    D: Tensor

    @property
    def shape(self) -> LayerShape:
        """The layer's sizes as the flop model counts them."""
        g, _, T, d = self.X.shape
        return LayerShape(positions=T, inp=d, out=self.D.shape[-1], groups=g)


def scratch_view(scratch: Tensor | None, shape: tuple[int, ...], like: Tensor) -> Tensor:
    """A ``shape`` view of the reusable ``scratch`` when it is large enough (no fresh
    allocation per chunk: first-touch page faults cost ~20 % of the build on a CPU), else a
    new tensor."""
    if scratch is not None and scratch.numel() >= math.prod(shape) and scratch.dtype == like.dtype:
        return scratch[: math.prod(shape)].view(shape)
    return torch.empty(shape, dtype=like.dtype, device=like.device)


def contract(fac: Factors, out: Tensor | None = None, scratch: Tensor | None = None) -> Tensor:
    """Per-sample gradients ``(b, k, g o d)`` in the weight's layout, written into ``out`` when
    given (a ``(b, k, g o d)`` view whose last dimension is contiguous; with one group and a
    contiguous ``out`` the matmul writes there directly). One batched matmul:
    ``(k o, T) @ (T, d)`` per sample and group; ``scratch``: see :func:`scratch_view`."""
    g, b, k, T, o = fac.D.shape
    d = fac.X.shape[-1]
    Dt = scratch_view(scratch, (g, b, k, o, T), fac.D)
    Dt.copy_(fac.D.transpose(-1, -2))
    Dt = Dt.view(g, b, k * o, T)
    if out is not None and g == 1 and out.is_contiguous():
        torch.matmul(Dt[0], fac.X[0], out=out.view(b, k * o, d))
        return out
    G = torch.matmul(Dt, fac.X).view(g, b, k, o, d).permute(1, 2, 0, 3, 4)
    if out is None:
        return G.reshape(b, k, g * o * d)
    out.view(b, k, g, o, d).copy_(G)
    return out


class LayerRule:
    """How one layer type's trainable parameters get per-sample gradients.

    ``factored``: the local name of the parameter whose gradient has :class:`Factors` (None:
    every parameter comes from :meth:`grads`)."""

    factored: str | None = None

    def supports(self, m: nn.Module) -> bool:
        """Whether this instance can be handled (else its parameters fall back)."""
        return True

    def capture(self, m: nn.Module, a: Tensor) -> Tensor:
        """What to keep of the (detached) input, called inside the forward."""
        return a

    def factors(self, m: nn.Module, a: Tensor, g: Tensor, scratch: Tensor | None = None) -> Factors:
        """The factored weight's :class:`Factors` (``scratch``: may hold X, see
        :func:`scratch_view`)."""
        raise NotImplementedError

    def grads(self, m: nn.Module, a: Tensor, g: Tensor, names: set[str]) -> dict[str, Tensor]:
        """Per-sample gradients ``(b, k, numel)`` of the other parameters in ``names``."""
        return {}


RULES: dict[type[nn.Module], LayerRule] = {}


def register_rule(*types: type[nn.Module]) -> Callable[[type[LayerRule]], type[LayerRule]]:
    """Class decorator: the rule handles modules of exactly these types (not subclasses, whose
    forward may differ)."""

    def deco(cls: type[LayerRule]) -> type[LayerRule]:
        for t in types:
            RULES[t] = cls()
        return cls

    return deco


def rule_for(m: nn.Module) -> LayerRule | None:
    """The rule registered for ``m``'s exact type that supports it, else None."""
    rule = RULES.get(type(m))
    return rule if rule is not None and rule.supports(m) else None


def _bias(g: Tensor) -> Tensor:
    """``sum_t g`` over the positions: ``(k, b, o, *pos)`` -> ``(b, k, o)``."""
    return g.sum(tuple(range(3, g.ndim))).transpose(0, 1) if g.ndim > 3 else g.transpose(0, 1)


@register_rule(nn.Linear)
class LinearRule(LayerRule):
    """``y = x W^T + b`` on ``(b, *tokens, d)``: X = the tokens' inputs (T = their count)."""

    factored = "weight"

    def factors(self, m: nn.Module, a: Tensor, g: Tensor, scratch: Tensor | None = None) -> Factors:
        """The factored weight's per-sample inputs X and output gradients D."""
        b, d = a.shape[0], a.shape[-1]
        k, o = g.shape[0], g.shape[-1]
        T = math.prod(a.shape[1:-1])
        X = a.reshape(1, b, T, d)
        D = g.reshape(k, b, T, o).transpose(0, 1).unsqueeze(0)
        return Factors(X, D)

    def grads(self, m: nn.Module, a: Tensor, g: Tensor, names: set[str]) -> dict[str, Tensor]:
        """Per-sample gradients of the layer's other parameters in ``names``."""
        if "bias" not in names:
            return {}
        k, b, o = g.shape[0], g.shape[1], g.shape[-1]
        return {"bias": g.reshape(k, b, -1, o).sum(2).transpose(0, 1)}


def patches(m: nn.Conv2d, a: Tensor, scratch: Tensor | None = None) -> Tensor:
    """The input patch each output position sees, ``(b, T, C_in k_h k_w)`` (``F.unfold``'s
    values, transposed; padding, padding mode, stride and dilation as ``nn.Conv2d`` applies
    them): a strided view of the padded input, copied once (measured 6x faster than
    ``F.unfold`` on a (32, 26, 32, 32) input, 2 threads)."""
    if isinstance(m.padding, str) or m.padding_mode != "zeros":
        mode = "constant" if m.padding_mode == "zeros" else m.padding_mode
        a = F.pad(a, m._reversed_padding_repeated_twice, mode=mode)
    else:
        ph, pw = m.padding
        a = F.pad(a, (pw, pw, ph, ph)) if ph or pw else a
    b, C, H, W = a.shape
    (kh, kw), (dh, dw), (sh, sw) = m.kernel_size, m.dilation, m.stride
    Ho, Wo = (H - dh * (kh - 1) - 1) // sh + 1, (W - dw * (kw - 1) - 1) // sw + 1
    sb, sc, sH, sW = a.stride()
    view = a.as_strided((b, Ho, Wo, C, kh, kw), (sb, sh * sH, sw * sW, sc, dh * sH, dw * sW))
    out = scratch_view(scratch, (b, Ho, Wo, C, kh, kw), a)
    return out.copy_(view).view(b, Ho * Wo, C * kh * kw)


@register_rule(nn.Conv2d)
class Conv2dRule(LayerRule):
    """A 2-d convolution on ``(b, C, H, W)``: X = the unfolded patches, T = H' W'."""

    factored = "weight"

    def factors(self, m: nn.Module, a: Tensor, g: Tensor, scratch: Tensor | None = None) -> Factors:
        """The factored weight's per-sample inputs X and output gradients D."""
        if a.ndim != 4:
            raise ValueError("Conv2d rule needs a batched (b, C, H, W) input")
        cols = patches(m, a, scratch)  # (b, T, C_in kh kw)
        b, T, _ = cols.shape
        k, groups = g.shape[0], m.groups
        X = cols.view(b, T, groups, -1).permute(2, 0, 1, 3)  # (g, b, T, d)
        D = g.reshape(k, b, groups, -1, T).permute(2, 1, 0, 4, 3)  # (g, b, k, T, o)
        return Factors(X, D)

    def grads(self, m: nn.Module, a: Tensor, g: Tensor, names: set[str]) -> dict[str, Tensor]:
        """Per-sample gradients of the layer's other parameters in ``names``."""
        return {"bias": _bias(g)} if "bias" in names else {}


@register_rule(nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)
class BatchNormRule(LayerRule):
    """BatchNorm with running statistics: ``y = gamma x_hat + beta`` per channel."""

    def supports(self, m: nn.Module) -> bool:
        """Only with running statistics (samples independent)."""
        return bool(m.track_running_stats) and m.running_var is not None

    def capture(self, m: nn.Module, a: Tensor) -> Tensor:
        """The normalised input x_hat that the weight multiplies."""
        shape = (1, -1) + (1,) * (a.ndim - 2)  # the statistics as the forward saw them
        return (a - m.running_mean.view(shape)) * torch.rsqrt(m.running_var.view(shape) + m.eps)

    def grads(self, m: nn.Module, a: Tensor, g: Tensor, names: set[str]) -> dict[str, Tensor]:
        """Per-sample gradients of the layer's other parameters in ``names``."""
        out = {}
        if "weight" in names:
            out["weight"] = _bias(g * a.unsqueeze(0))
        if "bias" in names:
            out["bias"] = _bias(g)
        return out
