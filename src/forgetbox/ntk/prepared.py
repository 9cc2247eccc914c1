"""Prepared deletion: pay for the kernel once per trained model, answer each request cheaply.

:func:`~forgetbox.ntk.preparation.prepare_state` factors, once, the kernel of the whole
training set D at the linearization point w_bar: ``Theta_D = K + |D| lambda I = L L^T`` (K the
exact NTK ``(n c, n c)`` or the pseudo-NTK ``(n, n)``), with ``alpha_D = Theta_D^{-1} r`` and
``J^T alpha_D`` (so ``u_D = -J^T alpha_D``).

A request for a cohort U (indices into D; with earlier requests, U is the union of every cohort
so far, all answered from the same w(D)) then needs ``u_{D_r} = -J_r^T A^{-1} r_r`` with
``A = K_rr + |D_r| lambda I``:

- ``G = Theta_D^{-1}`` restricted by the Schur complement gives
  ``(K_rr + |D| lambda I)^{-1} = G_rr - G_rU G_UU^{-1} G_Ur`` (a rank-|U| c downdate), from the
  columns ``G[:, U]`` (|U| c triangular solves with L, kept and extended request by request);
- A differs from that block by ``-|U| lambda I`` (fine-tuning's weight decay is scaled by the
  set size), so ``A beta = r_r`` is solved by conjugate gradients preconditioned with the
  downdated inverse: the preconditioned operator has eigenvalues in ``[1, |D| / |D_r|]``, a few
  iterations to 1e-13;
- ``delta_w = J^T alpha_D - J_r^T beta`` takes one vector-Jacobian pass over D_r.

The result equals the from-scratch :func:`forgetbox.ntk.ntk_direction` (tested to 1e-8 in
float64). This module holds the numerics only: what a state is bound to (weights, data, w0) and
how it is stored are the deletion service's (:mod:`forgetbox.deletion.prepare`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from ..checkpoints import CheckpointError
from ..cohort import STALE, Cohort
from ..functional import model_function, unflatten
from .direction import NTKDirection, SolveReport
from .jacobian import vjp_sum
from .kernel import kernel_rows
from .options import Around, Kernel, Linearization, Loss
from .precision import full_precision
from .solvers import cholesky, conjugate_gradient, solve_factored


def _no_columns() -> Tensor:
    return torch.zeros(0, dtype=torch.long)


@dataclass
class PreparedKernel:
    """Everything a deletion request needs, computed once for a trained model and its data.

    ``chol``: lower Cholesky factor of ``Theta_D``, ``(m, m)`` float64 with ``m = n * rows``
    (``rows`` = c for the exact kernel, 1 for the pseudo-NTK); ``alpha``: ``Theta_D^{-1} r`` in
    the kernel layout ``(m, k)``; ``residuals`` ``(n, c)``; ``jt_alpha``: ``J^T alpha_D`` ``(p,)``;
    ``around``: flat w_bar; ``anchor``: flat w0 when the linearization keeps the weight-decay
    anchor; ``forgotten``: the cohort answered so far (request order) with ``columns`` =
    ``Theta_D^{-1}[:, rows(forgotten)]``. ``hashes``: what the state is bound to (opaque to the
    engine; the deletion service writes and checks them).
    """

    kernel: str
    loss: str
    weight_decay: float
    n: int
    c: int
    chol: Tensor
    alpha: Tensor
    residuals: Tensor
    jt_alpha: Tensor
    around: Tensor
    anchor: Tensor | None
    hashes: dict
    forgotten: Tensor = field(default_factory=_no_columns)
    columns: Tensor | None = None
    seconds: float = 0.0

    preconditioner = "schur-downdate"  # how a request's solve is preconditioned (reported)
    space = "kernel"  # where requests are solved: "kernel" (here) or "param"

    @property
    def rows(self) -> int:
        """Kernel rows per sample: c (exact) or 1 (pseudo-NTK)."""
        return 1 if self.kernel == Kernel.PSEUDO else self.c

    @property
    def anchored(self) -> bool:
        """Whether the linearization keeps the weight-decay anchor w0."""
        return self.anchor is not None

    @property
    def linearization(self) -> Linearization:
        """What was linearized (always at the trained weights w(D))."""
        return Linearization(
            weight_decay=self.weight_decay,
            loss=Loss(self.loss),
            around=Around.TRAINED,
            anchored=self.anchored,
        )

    def nbytes(self) -> int:
        """Bytes the state holds (factor, cohort columns, vectors)."""
        cols = 0 if self.columns is None else self.columns.numel() * 8
        return self.chol.numel() * 8 + cols + self.jt_alpha.numel() * 3 * 4

    def cohort(self, indices) -> Cohort:
        """``indices`` checked as the next request's cohort (:meth:`Cohort.check`)."""
        return Cohort.check(indices, self.n, self.forgotten)

    # ------------------------------------------------------------------------- requests

    @full_precision()
    def request(
        self,
        model: nn.Module,
        x: Tensor,
        cohort: Cohort,
        *,
        tol: float = 1e-13,
        max_iter: int = 200,
        chunk: int = 128,
    ) -> NTKDirection:
        """The NTK direction for the cohort ``forgotten + cohort.new`` (updates the state).

        ``model``: the prepared model (trained parameters marked as at preparation); ``x``: the
        prepared inputs ``(n, ...)``; ``cohort``: the request's indices, checked against this
        state (:meth:`cohort`). Returns the same :class:`~forgetbox.ntk.NTKDirection` as
        :func:`forgetbox.ntk.ntk_direction` with ``retain`` = D minus the cohort. A request that
        fails leaves the state as it was.
        """
        start = time.perf_counter()
        marks = {}

        def mark(name: str) -> None:
            if self.chol.is_cuda:
                torch.cuda.synchronize(self.chol.device)
            marks[name] = time.perf_counter() - start - sum(marks.values())

        self._check_request(model, x, cohort)
        new = cohort.new
        mark("check_seconds")
        solution, iters, rel, state = self._retain_solution(
            model, x, new, tol, max_iter, chunk, mark
        )
        delta = self.jt_alpha - solution
        u_retain = -solution
        if self.anchor is not None:
            u_retain = u_retain - (self.around - self.anchor)
        if not torch.isfinite(delta).all():
            raise ValueError("the prepared NTK direction is not finite (ill-conditioned kernel)")
        self._commit(state)
        seconds = time.perf_counter() - start
        report = SolveReport(
            "prepared",
            iterations=iters,
            relative_residual=rel,
            converged=rel <= tol,
            seconds=seconds,
            memory_estimate_bytes=self.nbytes(),
            preconditioner=self.preconditioner,
        )
        extras = {
            "solver": "prepared",
            "form": "difference",
            "kernel": self.kernel,
            "n_retain": self.n - len(self.forgotten),
            "n_forget": len(self.forgotten),
            "n_forget_request": len(new),
            "timings": marks,
        }
        return NTKDirection(
            delta.detach(), u_retain.detach(), self.around, (report,), seconds, extras
        )

    def _check_request(self, model: nn.Module, x: Tensor, cohort: Cohort) -> None:
        """The model, inputs and cohort fit this state (the cohort was checked against it)."""
        where = next(model.parameters()).device
        if where != self.chol.device:
            raise ValueError(
                f"the model is on {where} but the prepared state on {self.chol.device}: "
                "move the model (or load the state with device=...)"
            )
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if trained != len(self.around):
            raise ValueError(
                f"the prepared state covers {len(self.around)} trained parameters but the model "
                f"marks {trained} as trained: name the same trainable subset as at prepare time "
                "(--trainable / trainable=)"
            )
        if len(x) != self.n:
            raise ValueError(f"the prepared state has {self.n} samples; got {len(x)} inputs")
        if not isinstance(cohort, Cohort):
            raise TypeError("request() takes a Cohort: build it with state.cohort(indices)")
        if not cohort.matches(self.n, self.forgotten):
            raise ValueError(STALE)

    def _retain_solution(self, model, x, new: Tensor, tol: float, max_iter: int, chunk: int, mark):
        """``(J_r^T beta, CG iterations, relative residual, new state)`` for the cohort
        ``forgotten + new``: ``u_{D_r} = -J_r^T beta`` before the anchor's correction."""
        device, dtype = self.chol.device, self.jt_alpha.dtype
        columns, forgotten = self._extended_columns(new)
        mark("columns_seconds")
        cohort = forgotten.to(device)
        keep = torch.ones(self.n, dtype=torch.bool, device=device)
        keep[cohort] = False
        retained = keep.nonzero().squeeze(1)
        rows_f, rows_r = self._rows(cohort), self._rows(retained)
        beta, iters, rel = self._solve_retain(columns, rows_f, rows_r, len(cohort), tol, max_iter)
        mark("solve_seconds")
        f, params = self._linearization(model, dtype)
        coef = beta.reshape(len(retained), self.c).to(dtype)
        jr_beta = vjp_sum(f, params, x.to(device, dtype)[retained], coef, chunk)
        mark("vjp_seconds")
        return jr_beta, iters, rel, {"columns": columns, "forgotten": forgotten}

    def _linearization(self, model: nn.Module, dtype: torch.dtype):
        """``(f, params)``: the model function and its trained parameters at w_bar."""
        named = {n: p.detach().to(dtype) for n, p in model.named_parameters() if p.requires_grad}
        params = {k: v.to(self.chol.device) for k, v in unflatten(self.around, named).items()}
        return model_function(model, dtype), params

    def _commit(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def _rows(self, samples: Tensor) -> Tensor:
        r = self.rows
        offs = torch.arange(r, device=samples.device)
        return (samples[:, None] * r + offs).reshape(-1)

    def _extended_columns(self, new: Tensor) -> tuple[Tensor, Tensor]:
        """The state's columns and cohort with ``Theta_D^{-1}[:, rows(new)]`` (triangular
        solves with L) and ``new`` appended; the state itself is not changed."""
        device = self.chol.device
        rows_new = self._rows(new.to(device))
        m = self.chol.shape[0]
        unit = torch.zeros(m, len(rows_new), dtype=torch.float64, device=device)
        unit[rows_new, torch.arange(len(rows_new), device=device)] = 1.0
        cols = solve_factored(self.chol, unit)
        del unit
        old = self.columns
        columns = cols if old is None or old.numel() == 0 else torch.cat([old, cols], 1)
        return columns, torch.cat([self.forgotten, new.to(self.forgotten.device)])

    def _solve_retain(
        self, G: Tensor, rows_f: Tensor, rows_r: Tensor, n_forget: int, tol: float, max_iter: int
    ):
        """``beta = (K_rr + |D_r| lambda I)^{-1} r_r`` by PCG with the Schur-downdated inverse
        (``G``: the columns of ``Theta_D^{-1}`` of the cohort's rows)."""
        L = self.chol
        m = L.shape[0]
        g_ff = G[rows_f]
        l_ff = cholesky(0.5 * (g_ff + g_ff.T), "the downdate")
        g_rf = G[rows_r]
        eps = n_forget * self.weight_decay

        def pad(v: Tensor) -> Tensor:
            out = torch.zeros(m, v.shape[1], dtype=v.dtype, device=v.device)
            out[rows_r] = v
            return out

        def precond(v: Tensor) -> Tensor:
            w = solve_factored(L, pad(v))
            return w[rows_r] - g_rf @ solve_factored(l_ff, w[rows_f])

        def op(v: Tensor) -> Tensor:
            return (L @ (L.T @ pad(v)))[rows_r] - eps * v

        rhs = kernel_rows(self.residuals.to(L.device), self.kernel)[0][rows_r]
        return conjugate_gradient(op, rhs, precond=precond, tol=tol, max_iter=max_iter)

    # ------------------------------------------------------------------------- storage

    def kernel_tensors(self) -> dict[str, Tensor]:
        """The immutable part of the state (written once, beside :meth:`describe`)."""
        tensors = {
            "chol": self.chol,
            "alpha": self.alpha,
            "residuals": self.residuals,
            "jt_alpha": self.jt_alpha,
            "around": self.around,
        }
        if self.anchor is not None:
            tensors["anchor"] = self.anchor
        return tensors

    def describe(self) -> dict:
        """The state's scalars as plain data (stored beside :meth:`kernel_tensors`)."""
        return {
            "space": self.space,
            "kernel": str(self.kernel),
            "loss": str(self.loss),
            "weight_decay": self.weight_decay,
            "n": self.n,
            "c": self.c,
            "hashes": self.hashes,
            "seconds": self.seconds,
        }

    def manifest_summary(self) -> dict:
        """What the state holds, for a deployment's manifest (``kernel_bytes``: the factor)."""
        return manifest_view(self.describe(), self.chol)

    def in_words(self) -> str:
        """The prepared state in words (the CLI's one-line log)."""
        return f"{self.kernel} kernel ({self.chol.shape[0]} rows)"

    def cohort_tensors(self) -> dict[str, Tensor]:
        """The requests answered so far: indices and the columns kept for them."""
        cols = self.columns if self.columns is not None else torch.zeros(0, dtype=torch.float64)
        return {"forgotten": self.forgotten, "columns": cols}

    @classmethod
    def expected_shapes(cls, n: int, c: int, kernel: str, p: int) -> dict[str, tuple[int, int]]:
        """Shapes of the kernel tensors of a state of ``n`` samples, ``c`` classes."""
        m = n * (1 if kernel == Kernel.PSEUDO else c)
        k = c if kernel == Kernel.PSEUDO else 1
        return {"chol": (m, m), "alpha": (m, k), "residuals": (n, c)}

    @classmethod
    def from_tensors(cls, meta: dict, t: dict[str, Tensor], device) -> PreparedKernel:
        """A state from :meth:`describe` and :meth:`kernel_tensors` (shapes checked;
        :class:`~forgetbox.checkpoints.CheckpointError` names what is wrong)."""
        n, c, kernel = int(meta["n"]), int(meta["c"]), str(meta["kernel"])
        p = len(t["around"]) if "around" in t and t["around"].ndim == 1 else -1
        for name, shape in cls.expected_shapes(n, c, kernel, p).items():
            if name not in t or tuple(t[name].shape) != shape:
                raise CheckpointError(f"{name!r} missing or of the wrong shape")
        for name in ("jt_alpha", "around"):
            if name not in t or t[name].ndim != 1 or len(t[name]) != p:
                raise CheckpointError(f"{name!r} missing or of the wrong shape")
        return cls(
            kernel=kernel,
            loss=str(meta["loss"]),
            weight_decay=float(meta["weight_decay"]),
            n=n,
            c=c,
            chol=t["chol"].to(device),
            alpha=t["alpha"].to(device),
            residuals=t["residuals"].to(device),
            jt_alpha=t["jt_alpha"].to(device),
            around=t["around"].to(device),
            anchor=t["anchor"].to(device) if "anchor" in t else None,
            hashes=dict(meta["hashes"]),
            seconds=float(meta.get("seconds", 0.0)),
        )

    def with_cohort(self, t: dict[str, Tensor], device) -> PreparedKernel:
        """This state with the requests of :meth:`cohort_tensors` ``t`` answered (checked)."""
        forgotten = t["forgotten"].long()
        cols = t["columns"]
        m = self.chol.shape[0]
        if len(forgotten) and tuple(cols.shape) != (m, len(forgotten) * self.rows):
            raise CheckpointError("columns of the wrong shape")
        if len(forgotten) and (forgotten.min() < 0 or forgotten.max() >= self.n):
            raise CheckpointError("forgotten indices outside the prepared data")
        if len(forgotten) and len(forgotten.unique()) != len(forgotten):
            raise CheckpointError("forgotten indices repeat")
        self.forgotten = forgotten
        self.columns = cols.to(device) if len(forgotten) else None
        return self


def manifest_view(described: dict, stored: Tensor) -> dict:
    """A manifest's view of a state's :meth:`describe`: its scalars without the hashes and
    timings, ``classes`` for ``c``, and the bytes of its largest stored matrix."""
    kept = {k: v for k, v in described.items() if k not in ("hashes", "seconds", "c")}
    return {**kept, "classes": described["c"], "kernel_bytes": stored.numel() * 8}
