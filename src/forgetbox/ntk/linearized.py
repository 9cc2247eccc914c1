"""The network linearized at its pre-trained weights (Golatkar et al., CVPR 2021):
``f_lin(w; x) = f(w0; x) + J_{w0}(x) (w - w0)`` over the trained parameters, BatchNorm in eval
mode with w0's statistics. Trained with ``(1/|S|) sum_i loss_i + (lambda/2) ||w - w0||^2``, it
is a lambda-strongly convex problem with one minimiser ``w*(S)``, and its Jacobian never changes.

:class:`LinearizedModel` is the deployable module (``state_dict`` holds w0 and w, safetensors);
:func:`parts` gives the engine its pieces; :func:`gradient` is the objective's gradient at any
weights, computed in float64 from one jvp and one vjp pass (what a certificate is checked on).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, jvp

from ..functional import ModelFn, Params, flatten, model_function, unflatten
from .jacobian import jvp_all, vjp_sum
from .options import Linearization
from .problem import residuals


def _key(name: str) -> str:
    return name.replace(".", "__")


class LinearizedModel(nn.Module):
    """``f(w0; x) + J_{w0}(x) (w - w0)`` of ``base`` over its trainable parameters.

    ``base`` holds w0 (every parameter and buffer, frozen); ``weights`` the trained parameters
    w (an ``nn.ParameterDict``, names with ``.`` written ``__``), starting at w0. ``trainable``:
    names or patterns as :func:`forgetbox.functional.select_trainable` (default: the base's
    ``requires_grad`` parameters). The forward pass costs one forward and one jvp of ``base``.
    ``state_dict`` keys: ``base.<name>`` (w0 and buffers) and ``weights.<name with __>`` (w).
    """

    BASE, WEIGHTS = "base.", "weights."

    def __init__(self, base: nn.Module, trainable=None):
        super().__init__()
        from ..functional import select_trainable

        base = copy.deepcopy(base).eval()
        chosen = select_trainable(base, trainable)
        for p in base.parameters():
            p.requires_grad_(False)
        self.base = base
        named = dict(base.named_parameters())
        self.weights = nn.ParameterDict(
            {_key(n): nn.Parameter(named[n].detach().clone()) for n in chosen}
        )
        # the order of the module's own parameters (flat vectors follow it everywhere)
        by_key = {_key(n): n for n in chosen}
        self.trained = tuple(by_key[k] for k in self.weights)

    def w0(self) -> dict[str, Tensor]:
        """The pre-trained values of the trained parameters."""
        named = dict(self.base.named_parameters())
        return {n: named[n] for n in self.trained}

    def w(self) -> dict[str, Tensor]:
        """The current values of the trained parameters (by their names in ``base``)."""
        return {n: self.weights[_key(n)] for n in self.trained}

    def forward(self, x: Tensor) -> Tensor:
        """Logits ``(n, classes)`` of the linearized network."""
        self.base.eval()
        w0, w = self.w0(), self.w()
        fixed = {n: p for n, p in self.base.named_parameters() if n not in w0}
        buffers = dict(self.base.named_buffers())

        def f(params: Mapping[str, Tensor]) -> Tensor:
            return functional_call(self.base, ({**fixed, **params}, buffers), (x,))

        tangent = {n: w[n] - w0[n] for n in self.trained}
        out, change = jvp(f, (w0,), (tangent,))
        return out + change

    def train(self, mode: bool = True) -> LinearizedModel:
        """Train mode for the wrapper only: ``base`` stays in eval mode (frozen BatchNorm)."""
        super().train(mode)
        self.base.eval()
        return self


def parts(model: LinearizedModel, dtype: torch.dtype) -> tuple[ModelFn, Params, Params]:
    """``(f, w0, w)``: the base as ``f(params, x)`` over the trained parameters and their
    values at w0 and now, in ``dtype`` on the model's device."""
    base = copy.deepcopy(model.base)  # the trained parameters marked as such for the engine
    for name, p in base.named_parameters():
        p.requires_grad_(name in model.trained)
    f = model_function(base, dtype)
    w0 = {n: t.detach().to(dtype) for n, t in model.w0().items()}
    w = {n: t.detach().to(dtype) for n, t in model.w().items()}
    return f, w0, w


def outputs(f: ModelFn, w0: Params, w: Params, x: Tensor, chunk: int) -> Tensor:
    """``f_lin(w; x)`` ``(n, c)``: ``f(w0; x) + J (w - w0)`` in chunks (one jvp pass)."""
    with torch.no_grad():
        base = torch.cat([f(w0, x[i : i + chunk]) for i in range(0, len(x), chunk)])
    delta = {n: w[n] - w0[n] for n in w0}
    return base + jvp_all(f, w0, x, delta, chunk)


def gradient(
    f: ModelFn, w0: Params, w: Params, x: Tensor, y: Tensor, lin: Linearization, chunk: int
) -> Tensor:
    """``grad L_S(w) = (1/|S|) J^T r(f_lin(w)) + lambda (w - w0)``, flat ``(p,)``, in the
    dtype of ``w`` (float64 to certify): one jvp and one vjp pass over ``S = (x, y)``."""
    r = residuals(outputs(f, w0, w, x, chunk), y, lin.loss) / len(x)
    pull = vjp_sum(f, w0, x, r, chunk)
    return pull + lin.weight_decay * (flatten(w) - flatten(w0))


def with_weights(model: LinearizedModel, flat: Tensor) -> LinearizedModel:
    """A copy of ``model`` whose trained weights are ``flat`` (``(p,)``, ``trained`` order)."""
    out = copy.deepcopy(model)
    values = unflatten(flat.detach(), model.w())
    with torch.no_grad():
        for n in model.trained:
            out.weights[_key(n)].copy_(values[n])
    return out
