"""The diagonal Fisher of eq. 11 / [16] in one pass over the data.

``F = (1/n) sum_i sum_k p_k(x_i) (d log p_k(x_i) / dw)^2``, the expectation over the model's own
predictive distribution. Per chunk of samples: one forward that records each layer's input,
one backward batched over the c classes to every layer's output (samples do not interact: the
network is evaluated with frozen BatchNorm statistics), then each layer's per-sample, per-class
weight gradient from its input and output gradient:

- ``Conv2d`` (groups 1): ``G = g @ unfold(a)^T`` per sample and class, squared and summed;
- ``Linear`` on ``(b, d)`` inputs: ``G^2 = g^2 (x) a^2`` (the square of an outer product
  factorises: no per-sample gradient is formed);
- ``BatchNorm`` with running statistics: ``sum_hw g * x_hat`` and ``sum_hw g``.

Any other parameter (other layers, a layer whose input was changed in place, parameters used
outside a module's forward) comes from the engine's ``vmap(jacrev)`` Jacobian blocks of the
logits, with ``grad log p_k = J_k - sum_j p_j J_j``. Both are tested in float64 against the
per-sample, per-class brute force of :func:`forgetbox.reference.fisher_diagonal`.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import parallel
from ..functional import flatten, model_function, parameters_of
from ..ntk import default_memory_budget, itemsize, jacobian_blocks

_LAYERS = (nn.Conv2d, nn.Linear, nn.BatchNorm1d, nn.BatchNorm2d)


def _supported(m: nn.Module) -> bool:
    if isinstance(m, nn.Conv2d):
        return m.groups == 1 and m.padding_mode == "zeros" and isinstance(m.padding, tuple)
    if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d):
        return m.track_running_stats and m.running_var is not None and m.affine
    return isinstance(m, nn.Linear)


def _owned(model: nn.Module, names: set[str]) -> dict[str, nn.Module]:
    """Supported layers whose parameters are all trainable (named like ``layer.weight``)."""
    out = {}
    for mname, m in model.named_modules():
        if not (isinstance(m, _LAYERS) and _supported(m)):
            continue
        own = [f"{mname}.{p}" if mname else p for p, _ in m.named_parameters(recurse=False)]
        if own and all(n in names for n in own):
            out[mname] = m
    return out


class _Recorder:
    """Forward hooks that keep each layer's input and (a clone of) its output."""

    def __init__(self, layers: dict[str, nn.Module]):
        self.seen: dict[str, tuple[Tensor, int, Tensor]] = {}
        self.handles = [m.register_forward_hook(self._hook(n)) for n, m in layers.items()]

    def _hook(self, name: str):
        def hook(module, inputs, output):
            a = inputs[0].detach()
            self.seen[name] = (a, a._version, output)
            # later in-place ops change the copy passed on, not the output we differentiate
            return output.clone()

        return hook

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _layer_squares(m: nn.Module, a: Tensor, g: Tensor, p: Tensor) -> dict[str, Tensor]:
    """``sum_{i,k} p_ik (dlog p_k(x_i)/dw)^2`` for a layer's parameters; ``g`` ``(c, b, ...)``
    holds the output gradients of log p_k, ``p`` ``(b, c)`` the probabilities."""
    c, b = g.shape[:2]
    sq = p.T.sqrt().reshape(c, b, *([1] * (g.ndim - 2)))
    gs = g * sq  # sqrt(p) folded into the gradients: F = sum (sqrt(p) G)^2
    if isinstance(m, nn.Conv2d):
        cols = F.unfold(a, m.kernel_size, m.dilation, m.padding, m.stride)  # (b, d, L)
        gl = gs.reshape(c, b, m.out_channels, -1).transpose(0, 1)  # (b, c, o, L)
        gl = gl.reshape(b, c * m.out_channels, -1)
        G = torch.matmul(gl, cols.transpose(1, 2))  # (b, c o, d)
        out = {"weight": G.square_().sum(0).view(c, -1).sum(0).view_as(m.weight)}
        if m.bias is not None:
            out["bias"] = gl.sum(-1).square().sum(0).view(c, -1).sum(0)
        return out
    if isinstance(m, nn.Linear):
        g2 = gs.square().sum(0)  # (b, o)
        out = {"weight": g2.T @ a.square()}
        if m.bias is not None:
            out["bias"] = g2.sum(0)
        return out
    shape = (1, -1) + (1,) * (a.ndim - 2)
    x_hat = (a - m.running_mean.view(shape)) / torch.sqrt(m.running_var.view(shape) + m.eps)
    dims = tuple(range(3, gs.ndim))
    return {
        "weight": (gs * x_hat).sum(dims).square().sum((0, 1)),
        "bias": gs.sum(dims).square().sum((0, 1)),
    }


def _jacobian_squares(f, params, xb, names, p) -> dict[str, Tensor]:
    """The same sums from the logits' Jacobian blocks (any parameter)."""
    blocks = jacobian_blocks(f, params, xb, names, pseudo=False)
    out = {}
    for name in names:
        J = blocks[name]  # (b, c, numel)
        G = J - torch.einsum("bc,bcn->bn", p, J).unsqueeze(1)
        out[name] = torch.einsum("bc,bcn->n", p, G.square()).view_as(params[name])
    return out


def _chunk(model, f, params, x, layers, budget) -> int:
    """Samples per chunk: one sample's recorded activations (c + 2 copies) and the largest
    per-sample, per-class weight gradient, at most budget / 8, at most 64."""
    rec = _Recorder(layers)
    try:
        with torch.no_grad():
            logits = f(params, x[:1])
    finally:
        rec.close()
    c = logits.shape[-1]
    acts = sum(a.numel() + o.numel() for a, _, o in rec.seen.values())
    widest = max((t.numel() for t in params.values()), default=1)
    per_sample = (acts * (c + 2) + 2 * c * widest) * itemsize(logits.dtype)
    return int(max(1, min(64, (budget // 8) // max(per_sample, 1))))


def fisher_diagonal(
    model: nn.Module,
    x: Tensor,
    *,
    params: Mapping[str, Tensor] | None = None,
    dtype: torch.dtype | None = None,
    chunk: int | None = None,
    memory_budget: int | None = None,
) -> Tensor:
    """Diagonal Fisher information, flat ``(p,)`` in ``model.parameters()`` order, averaged
    over the ``n`` inputs ``x`` (see the module docstring). ``params``: the weights to evaluate
    it at (default the model's); ``chunk``: samples per pass (default from ``memory_budget``,
    itself by default half the machine's memory)."""
    dtype = dtype or next(model.parameters()).dtype
    f = model_function(model, dtype)
    base = dict(params) if params is not None else parameters_of(model, dtype)
    device = next(iter(base.values())).device
    weights = {k: v.detach().to(device, dtype).requires_grad_(True) for k, v in base.items()}
    layers = _owned(model, set(weights))
    budget = memory_budget or default_memory_budget(device)
    step = chunk or _chunk(model, f, weights, x.to(device, dtype), layers, budget)
    total = {k: torch.zeros_like(v, requires_grad=False) for k, v in weights.items()}
    lo, hi = parallel.block(len(x))  # this rank's rows (all of them in one process)
    for i in range(lo, hi, step):
        xb = x[i : min(hi, i + step)].to(device, dtype)
        for name, value in _chunk_squares(f, weights, xb, layers).items():
            total[name] += value
    return parallel.all_sum(flatten(total).detach()) / len(x)


def _chunk_squares(f, weights, xb, layers) -> dict[str, Tensor]:
    rec = _Recorder(layers)
    try:
        logp = torch.log_softmax(f(weights, xb), -1)
    finally:
        rec.close()
    p = logp.detach().exp()
    b, c = p.shape
    fresh = {n: v for n, v in rec.seen.items() if v[0]._version == v[1]}
    out: dict[str, Tensor] = {}
    if fresh:
        eye = torch.eye(c, dtype=p.dtype, device=p.device).unsqueeze(1).expand(c, b, c)
        outs = [v[2] for v in fresh.values()]
        grads = torch.autograd.grad(logp, outs, grad_outputs=eye, is_grads_batched=True)
        for (name, (a, _, _)), g in zip(fresh.items(), grads, strict=True):
            for pname, value in _layer_squares(layers[name], a, g.detach(), p).items():
                out[f"{name}.{pname}" if name else pname] = value.detach()
    rest = [n for n in weights if n not in out]
    if rest:
        out |= _jacobian_squares(f, {k: v.detach() for k, v in weights.items()}, xb, rest, p)
    return out
