"""One batched forward that records chosen layers, and one backward batched over k cotangent
rows of the logits to those layers' outputs (``is_grads_batched``: no loop over classes)."""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ..functional import ModelFn, Params
from .layer_rules import LayerRule


@dataclass(frozen=True)
class Seen:
    """One call of a recorded layer: the rule's capture of its input, the input itself and its
    version counter then (an in-place change afterwards makes the capture stale), the output,
    and what the rest of the network got with its version then."""

    captured: Tensor
    inp: Tensor
    version: int
    out: Tensor
    passed: Tensor
    passed_version: int

    @property
    def stale(self) -> bool:
        """Whether the recorded input was changed in place after the layer ran."""
        return self.inp._version != self.version

    @property
    def changed_downstream(self) -> bool:
        """Whether the layer's output was changed in place downstream."""
        return self.passed._version != self.passed_version


class Recorder:
    """Forward hooks on ``layers`` (``{name: (module, rule)}``) keeping every call (a
    :class:`Seen`). An output is kept as the forward produced it (made a leaf that requires
    gradients when nothing upstream does: the parameters need none) and the rest of the network
    gets a clone, so in-place operations downstream do not touch what is differentiated; only
    the layers in ``clone`` when it is given (those the probe saw changed downstream)."""

    def __init__(
        self, layers: Mapping[str, tuple[nn.Module, LayerRule]], clone: Set[str] | None = None
    ):
        self.seen: dict[str, list[Seen]] = {}
        self.clone = clone
        self.handles = [m.register_forward_hook(self._hook(n, r)) for n, (m, r) in layers.items()]

    def _hook(self, name: str, rule: LayerRule):
        def hook(module, inputs, output):
            a = inputs[0].detach()
            with torch.no_grad():
                captured = rule.capture(module, a)
            out = output if output.requires_grad else output.detach().requires_grad_(True)
            passed = out.clone() if self.clone is None or name in self.clone else out
            self.seen.setdefault(name, []).append(
                Seen(captured, a, a._version, out, passed, passed._version)
            )
            return passed

        return hook

    def close(self) -> None:
        """Remove every hook."""
        for h in self.handles:
            h.remove()


def recorded_forward(
    f: ModelFn,
    params: Params,
    x: Tensor,
    layers: Mapping[str, tuple[nn.Module, LayerRule]],
    clone: Set[str] | None = None,
) -> tuple[Tensor, dict[str, list[Seen]]]:
    """The logits of ``x`` (graph kept from the first recorded layer on) and every call seen
    (``clone``: see :class:`Recorder`)."""
    rec = Recorder(layers, clone)
    try:
        with torch.enable_grad():
            logits = f(params, x)
    finally:
        rec.close()
    return logits, rec.seen


def output_gradients(logits: Tensor, outs: list[Tensor], cotangent: Tensor) -> list[Tensor]:
    """``d (cotangent_a . logits_i) / d out`` for each output, ``(k, b, *out)``, from one
    backward batched over the k rows of ``cotangent`` ``(k, c)``; zeros for an output the
    logits do not depend on."""
    k, (b, c) = cotangent.shape[0], logits.shape
    if not outs:
        return []
    if not logits.requires_grad:
        return [torch.zeros(k, *o.shape, dtype=o.dtype, device=o.device) for o in outs]
    cot = cotangent.to(logits.dtype).unsqueeze(1).expand(k, b, c)
    grads = torch.autograd.grad(
        logits, outs, grad_outputs=cot, is_grads_batched=True, allow_unused=True
    )
    return [
        g.detach() if g is not None else torch.zeros(k, *o.shape, dtype=o.dtype, device=o.device)
        for g, o in zip(grads, outs, strict=True)
    ]


def record(
    f: ModelFn,
    params: Params,
    x: Tensor,
    layers: Mapping[str, tuple[nn.Module, LayerRule]],
    cotangent: Tensor,
    clone: Set[str] | None = None,
) -> dict[str, tuple[Tensor, Tensor]]:
    """Per layer, ``(captured input, output gradients (k, b, *out))`` for ``x``: one forward
    and one class-batched backward. Every layer must be called once with an input not changed
    in place afterwards, and an output not in ``clone`` must not be changed in place downstream
    (the plan checked both on a probe batch)."""
    logits, seen = recorded_forward(f, params, x, layers, clone)
    for name in layers:
        calls = seen.get(name, [])
        uncopied = len(calls) == 1 and calls[0].passed is calls[0].out
        if len(calls) != 1 or calls[0].stale or (uncopied and calls[0].changed_downstream):
            raise RuntimeError(f"layer {name!r} was not called exactly once, unchanged")
    names = list(layers)
    grads = output_gradients(logits, [seen[n][0].out for n in names], cotangent)
    return {n: (seen[n][0].captured, g) for n, g in zip(names, grads, strict=True)}
