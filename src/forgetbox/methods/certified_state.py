"""A linearized model's kernel over its whole training set, prepared once for certified
requests (docs/certified.md): the linearized network's Jacobian is J at w0 whatever the cohort,
so the kernel of D stays exact for every later request, which takes D_r's rows of it.

:class:`CertifiedState` is also a prepared state the deletion service stores and reads back
(``forgetbox prepare --certify``): its tensors and scalars in the layout of
:class:`forgetbox.ntk.PreparedKernel` (``describe``, ``kernel_tensors``, ``cohort_tensors``,
``from_tensors``, ``with_cohort``), the cohorts answered so far in ``forgotten``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor

from .. import ntk
from ..checkpoints import CheckpointError
from ..cohort import STALE, Cohort
from ..inputs import as_tensors


def _none_forgotten() -> Tensor:
    return torch.zeros(0, dtype=torch.long)


@dataclass
class CertifiedState:
    """The kernel of a linearized model over D, computed once (:func:`prepare_certified`).

    ``K`` ``(n c, n c)`` float64 (J J^T at w0, sample-major); ``f0`` ``(n, c)`` the outputs at
    w0 and ``outputs`` ``(n, c)`` the prepared model's, on D; ``seconds``: the preparation's;
    ``kernel_build``: how the kernel was built (:func:`forgetbox.ntk.exact_kernel`);
    ``hashes``: what a stored state is bound to (the deletion service's); ``forgotten``: the
    samples of D removed by the requests answered so far (request order)."""

    K: Tensor
    f0: Tensor
    outputs: Tensor
    seconds: float = 0.0
    kernel_build: dict | None = None
    hashes: dict = field(default_factory=dict)
    forgotten: Tensor = field(default_factory=_none_forgotten)

    space = "certified"  # a stored state's kind (beside PreparedKernel's "kernel", "param")
    kernel = "exact"

    @property
    def n(self) -> int:
        """Samples of D."""
        return self.f0.shape[0]

    @property
    def c(self) -> int:
        """Outputs per sample."""
        return self.f0.shape[1]

    def rows(self, keep: Tensor) -> Tensor:
        """Kernel rows of the samples ``keep`` (a boolean mask over D)."""
        samples = keep.nonzero().squeeze(1)
        return (samples[:, None] * self.c + torch.arange(self.c)).reshape(-1)

    def cohort(self, indices) -> Cohort:
        """``indices`` checked as the next request's cohort (:meth:`Cohort.check`)."""
        return Cohort.check(indices, self.n, self.forgotten)

    def retained(self, x: Tensor, cohort: Cohort) -> Tensor:
        """D_r's mask in D for ``cohort``, after checking that the inputs ``x`` are D's size and
        that the cohort was checked against this state's requests so far (a stale cohort would
        put earlier requests' samples back into D_r)."""
        if len(x) != self.n:
            raise ValueError(f"the prepared state has {self.n} samples; got {len(x)} inputs")
        if not isinstance(cohort, Cohort):
            raise TypeError("a certified request takes a Cohort: build it with state.cohort(...)")
        if not cohort.matches(self.n, self.forgotten):
            raise ValueError(STALE)
        return cohort.retained()

    def answered(self, cohort: Cohort) -> None:
        """Record ``cohort`` as answered (after its release)."""
        self.forgotten = cohort.all.to(self.forgotten.device)

    # ------------------------------------------------------------------------- storage

    def describe(self) -> dict:
        """The state's scalars as plain data (stored beside :meth:`kernel_tensors`)."""
        return {
            "space": self.space,
            "kernel": self.kernel,
            "n": self.n,
            "c": self.c,
            "hashes": self.hashes,
            "seconds": self.seconds,
            "kernel_build": self.kernel_build,
        }

    def manifest_summary(self) -> dict:
        """What the state holds, for a deployment's manifest (``kernel_bytes``: K at w0)."""
        return ntk.manifest_view(self.describe(), self.K)

    def in_words(self) -> str:
        """The prepared state in words (the CLI's one-line log)."""
        return f"the linearized model's kernel at w0 ({self.K.shape[0]} rows, certified requests)"

    def kernel_tensors(self) -> dict[str, Tensor]:
        """The immutable part of the state (written once)."""
        return {"K": self.K, "f0": self.f0, "outputs": self.outputs}

    def cohort_tensors(self) -> dict[str, Tensor]:
        """The requests answered so far."""
        return {"forgotten": self.forgotten}

    @classmethod
    def from_tensors(cls, meta: dict, t: dict[str, Tensor], device) -> CertifiedState:
        """A state from :meth:`describe` and :meth:`kernel_tensors` (shapes, dtypes and
        finiteness checked; :class:`~forgetbox.checkpoints.CheckpointError` names what is
        wrong)."""
        n, c = int(meta["n"]), int(meta["c"])
        want = {"K": (n * c, n * c), "f0": (n, c), "outputs": (n, c)}
        for name, shape in want.items():
            if name not in t or tuple(t[name].shape) != shape:
                raise CheckpointError(f"{name!r} missing or of the wrong shape")
            if t[name].dtype != torch.float64 or not torch.isfinite(t[name]).all():
                raise CheckpointError(f"{name!r} must be finite float64")
        return cls(
            K=t["K"].to(device),
            f0=t["f0"].to(device),
            outputs=t["outputs"].to(device),
            seconds=float(meta.get("seconds", 0.0)),
            kernel_build=meta.get("kernel_build"),
            hashes=dict(meta["hashes"]),
        )

    def with_cohort(self, t: dict[str, Tensor], device) -> CertifiedState:
        """This state with the requests of :meth:`cohort_tensors` ``t`` answered (checked)."""
        forgotten = t["forgotten"].long()
        if len(forgotten) and (forgotten.min() < 0 or forgotten.max() >= self.n):
            raise CheckpointError("forgotten indices outside the prepared data")
        if len(forgotten.unique()) != len(forgotten):
            raise CheckpointError("forgotten indices repeat")
        if len(forgotten) >= self.n:
            raise CheckpointError("every sample of the prepared data is forgotten")
        self.forgotten = forgotten.to(device)
        return self


def prepare_certified(
    model: ntk.LinearizedModel,
    data,
    options: ntk.NTKOptions | None = None,
    *,
    hashes: dict | None = None,
) -> CertifiedState:
    """The kernel of the linearized ``model`` over D = ``data`` and its outputs, for fast
    certified requests (the Jacobian at w0 never changes, so the state stays exact).
    ``hashes``: what the state is bound to (the deletion service's)."""
    start = time.perf_counter()
    opts = options or ntk.NTKOptions()
    x, _ = as_tensors(data, "data")
    f, w0, w = ntk.linearized_parts(model, torch.float64)
    x = x.to(torch.float64)
    K, build = ntk.exact_kernel(f, w0, x, opts)
    chunk = opts.chunk or 64
    f0 = ntk.linearized_outputs(f, w0, w0, x, chunk)
    outputs = ntk.linearized_outputs(f, w0, w, x, chunk)
    seconds = time.perf_counter() - start
    return CertifiedState(K, f0, outputs, seconds, build, dict(hashes or {}))
