"""Prepared deletion: pay for the kernel once per trained model, answer each request cheaply.

:func:`~forgetbox.deletion.prepare.prepare` factors, once, the kernel of the whole training set
D at the linearization point w_bar: ``Theta_D = K + |D| lambda I = L L^T`` (K the exact NTK
``(n c, n c)`` or the pseudo-NTK ``(n, n)``), with ``alpha_D = Theta_D^{-1} r`` and
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
float64). A prepared state is tied to the model's weights, the data and w0 by SHA-256 hashes and
refuses anything else.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import ntk
from ..atomic import atomic_write_json
from ..checkpoints import CheckpointError, read_metadata, save_large
from ..functional import model_function, unflatten
from ..hashing import sha256_file, state_sha256, tensors_sha256
from ..inputs import as_tensors

FORMAT = "forgetbox-prepared/2"
KERNEL_FILE = "kernel.safetensors"
COHORT_FILE = "cohort.safetensors"
MANIFEST_FILE = "prepared.json"


@dataclass
class PreparedKernel:
    """Everything a deletion request needs, computed once for a trained model and its data.

    ``chol``: lower Cholesky factor of ``Theta_D``, ``(m, m)`` float64 with ``m = n * rows``
    (``rows`` = c for the exact kernel, 1 for the pseudo-NTK); ``alpha``: ``Theta_D^{-1} r`` in
    the kernel layout ``(m, k)``; ``residuals`` ``(n, c)``; ``jt_alpha``: ``J^T alpha_D`` ``(p,)``;
    ``around``: flat w_bar; ``anchor``: flat w0 when the linearization keeps the weight-decay
    anchor; ``forgotten``: the cohort answered so far (request order) with ``columns`` =
    ``Theta_D^{-1}[:, rows(forgotten)]``.
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
    forgotten: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.long))
    columns: Tensor | None = None
    seconds: float = 0.0

    preconditioner = "schur-downdate"  # how a request's solve is preconditioned (reported)
    space = "kernel"  # where requests are solved: "kernel" (here) or "param"

    @property
    def rows(self) -> int:
        return 1 if self.kernel == ntk.Kernel.PSEUDO else self.c

    @property
    def anchored(self) -> bool:
        return self.anchor is not None

    def nbytes(self) -> int:
        cols = 0 if self.columns is None else self.columns.numel() * 8
        return self.chol.numel() * 8 + cols + self.jt_alpha.numel() * 3 * 4

    # ------------------------------------------------------------------------- requests

    @ntk.full_precision()
    def request(
        self,
        model: nn.Module,
        data,
        forget_indices,
        *,
        tol: float = 1e-13,
        max_iter: int = 200,
        chunk: int = 128,
    ) -> ntk.NTKDirection:
        """The NTK direction for the cohort ``forgotten + forget_indices`` (updates the state).

        ``model`` must be the prepared model and ``data`` the prepared ``(inputs, labels)``
        (both are checked by hash). Returns the same :class:`~forgetbox.ntk.NTKDirection` as
        :func:`forgetbox.ntk.ntk_direction` with ``retain`` = D minus the cohort.
        """
        start = time.perf_counter()
        marks = {}

        def mark(name: str) -> None:
            if self.chol.is_cuda:
                torch.cuda.synchronize(self.chol.device)
            marks[name] = time.perf_counter() - start - sum(marks.values())

        x, y = self.check(model, data)
        self._check_trained(model)
        new = self._new_indices(forget_indices)
        mark("check_seconds")
        # the state changes only when the request has succeeded (a failed solve leaves the
        # cohort unclaimed)
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
        report = ntk.SolveReport(
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
        return ntk.NTKDirection(
            delta.detach(), u_retain.detach(), self.around, (report,), seconds, extras
        )

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
        jr_beta = ntk.vjp_sum(f, params, x.to(device, dtype)[retained], coef, chunk)
        mark("vjp_seconds")
        return jr_beta, iters, rel, {"columns": columns, "forgotten": forgotten}

    def _linearization(self, model: nn.Module, dtype: torch.dtype):
        """``(f, params)``: the model function and its trained parameters at w_bar."""
        named = _named(model, dtype)
        params = {k: v.to(self.chol.device) for k, v in unflatten(self.around, named).items()}
        return model_function(model, dtype), params

    def _commit(self, state: dict) -> None:
        for name, value in state.items():
            setattr(self, name, value)

    def _check_trained(self, model: nn.Module) -> None:
        trained = sum(p.numel() for p in model.parameters() if p.requires_grad)
        if trained != len(self.around):
            raise ValueError(
                f"the prepared state covers {len(self.around)} trained parameters but the model "
                f"marks {trained} as trained: name the same trainable subset as at prepare time "
                "(--trainable / trainable=)"
            )

    def _new_indices(self, forget_indices) -> Tensor:
        idx = torch.as_tensor(forget_indices, dtype=torch.long).reshape(-1).cpu()
        if len(idx) == 0:
            raise ValueError("the forget cohort is empty: nothing to scrub")
        if idx.min() < 0 or idx.max() >= self.n:
            raise ValueError(f"forget indices must lie in [0, {self.n})")
        if len(idx.unique()) != len(idx):
            raise ValueError("forget indices contain duplicates")
        overlap = set(idx.tolist()) & set(self.forgotten.tolist())
        if overlap:
            raise ValueError(f"indices {sorted(overlap)[:5]} were already forgotten")
        if len(idx) + len(self.forgotten) >= self.n:
            raise ValueError("the cohorts would cover the whole training set")
        return idx

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
        cols = ntk.solve_factored(self.chol, unit)
        del unit
        old = self.columns
        columns = cols if old is None or old.numel() == 0 else torch.cat([old, cols], 1)
        return columns, torch.cat([self.forgotten, new])

    def _solve_retain(
        self, G: Tensor, rows_f: Tensor, rows_r: Tensor, n_forget: int, tol: float, max_iter: int
    ):
        """``beta = (K_rr + |D_r| lambda I)^{-1} r_r`` by PCG with the Schur-downdated inverse
        (``G``: the columns of ``Theta_D^{-1}`` of the cohort's rows)."""
        L = self.chol
        m = L.shape[0]
        g_ff = G[rows_f]
        l_ff = ntk.cholesky(0.5 * (g_ff + g_ff.T), "the downdate")
        g_rf = G[rows_r]
        eps = n_forget * self.weight_decay

        def pad(v: Tensor) -> Tensor:
            out = torch.zeros(m, v.shape[1], dtype=v.dtype, device=v.device)
            out[rows_r] = v
            return out

        def precond(v: Tensor) -> Tensor:
            w = ntk.solve_factored(L, pad(v))
            return w[rows_r] - g_rf @ ntk.solve_factored(l_ff, w[rows_f])

        def op(v: Tensor) -> Tensor:
            return (L @ (L.T @ pad(v)))[rows_r] - eps * v

        rhs = self.kernel_residuals()[rows_r]
        return ntk.conjugate_gradient(op, rhs, precond=precond, tol=tol, max_iter=max_iter)

    def kernel_residuals(self) -> Tensor:
        return ntk.kernel_rows(self.residuals.to(self.chol.device), self.kernel)[0]

    # ------------------------------------------------------------------------- checks

    def check(self, model: nn.Module, data) -> tuple[Tensor, Tensor]:
        """Refuse a model or data other than the prepared ones; returns the data tensors."""
        where = next(model.parameters()).device
        if where != self.chol.device:
            raise ValueError(
                f"the model is on {where} but the prepared state on {self.chol.device}: "
                "move the model (or load the state with device=...)"
            )
        if state_sha256(model) != self.hashes["weights_sha256"]:
            raise CheckpointError(
                "the prepared kernel belongs to other weights (SHA-256 mismatch); a prepared "
                "state answers requests for the model it was prepared for: pass those original "
                "weights (every request is answered from them) or prepare again"
            )
        x, y = as_tensors(data, "data")
        if tensors_sha256(x, y) != self.hashes["data_sha256"]:
            raise CheckpointError(
                "the prepared kernel belongs to other data (SHA-256 mismatch of inputs and "
                "labels): pass the same training set, in the same order"
            )
        return x, y

    def check_pretrained(self, pretrained: nn.Module | None) -> None:
        want = self.hashes.get("pretrained_sha256")
        if want is not None and (pretrained is None or state_sha256(pretrained) != want):
            raise CheckpointError("the prepared kernel was anchored at other pre-trained weights")

    # ------------------------------------------------------------------------- files

    def save(self, folder: str | Path, extra: dict | None = None) -> None:
        """Write ``kernel.safetensors`` (immutable), ``cohort.safetensors`` (the requests
        answered so far) and the manifest ``prepared.json`` with every file's SHA-256, each
        atomically, the manifest last (``extra``: more fields for the manifest)."""
        folder = Path(folder)
        kpath = folder / KERNEL_FILE
        if kpath.exists():
            if read_metadata(kpath).get("hashes") != self.hashes:
                raise CheckpointError(f"{kpath} holds the kernel of another model or data set")
        else:
            save_large(kpath, self._kernel_tensors(), self._kernel_meta())
        files = {KERNEL_FILE: sha256_file(kpath), COHORT_FILE: self.save_cohort(folder)}
        manifest = {"format": FORMAT, "files": files, "hashes": self.hashes, **(extra or {})}
        atomic_write_json(folder / MANIFEST_FILE, manifest)

    def _kernel_tensors(self) -> dict[str, Tensor]:
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

    def _kernel_meta(self) -> dict:
        return {
            "format": FORMAT,
            "space": self.space,
            "kernel": self.kernel,
            "loss": self.loss,
            "weight_decay": self.weight_decay,
            "n": self.n,
            "c": self.c,
            "hashes": self.hashes,
            "seconds": self.seconds,
        }

    def save_cohort(self, folder: str | Path, name: str = COHORT_FILE) -> str:
        """Write the cohort answered so far to ``folder/name``, atomically; its SHA-256."""
        path = Path(folder) / name
        meta = {"format": FORMAT, "kernel_hashes": self.hashes, "space": self.space}
        save_large(path, self._cohort_tensors(), meta)
        return sha256_file(path)

    def _cohort_tensors(self) -> dict[str, Tensor]:
        cols = self.columns if self.columns is not None else torch.zeros(0, dtype=torch.float64)
        return {"forgotten": self.forgotten, "columns": cols}


def _named(model: nn.Module, dtype: torch.dtype) -> dict[str, Tensor]:
    return {n: p.detach().to(dtype) for n, p in model.named_parameters() if p.requires_grad}
