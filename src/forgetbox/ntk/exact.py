"""The exact kernel as :class:`~forgetbox.ntk.NTKOptions` says to build it, for callers that
need only the kernel (the certified path: the linearized network's kernel at w0)."""

from __future__ import annotations

from torch import Tensor

from ..functional import ModelFn, Params
from .options import NTKOptions
from .structured import build_summary, layer_kernel_and_jacobian


def exact_kernel(f: ModelFn, params: Params, x: Tensor, options: NTKOptions) -> tuple[Tensor, dict]:
    """The exact kernel ``J J^T`` of ``f`` at ``params`` over ``x`` (``(n c, n c)``, float64,
    sample-major), built as ``options.jacobian`` says within ``options.memory_budget``, and
    the build's :func:`build_summary` (the linearized network's kernel at w0, for certified
    training and removal)."""
    K, _, report = layer_kernel_and_jacobian(
        f,
        params,
        x,
        jacobian=options.jacobian,
        memory_budget=options.memory_budget,
        chunk=options.chunk,
    )
    return K, build_summary(report)
