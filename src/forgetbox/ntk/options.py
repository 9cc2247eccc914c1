"""What the NTK step computes and how: the linearization (:class:`Linearization`: weight decay,
loss, point, anchor, precision) and the numerical options (:class:`NTKOptions`: solver, kernel,
form, memory), each one frozen dataclass passed whole from the public API and the command line
to the engine. Every string option is a :class:`~forgetbox.choices.Choice`."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..settings import Choice, Settings, check_bool, check_dtype, check_int, check_number
from ..training import DEFAULT_WEIGHT_DECAY


class Solver(Choice):
    """How the kernel systems are solved."""

    AUTO = "auto", "param when the trained parameters are fewer than the kernel's rows, else dense"
    DENSE = "dense", "exact Cholesky of the (|D| c)^2 kernel; best up to |D| c of about 10^4"
    CG = "cg", "matrix-free conjugate gradients, memory O(p + |D| c); for kernels too large"
    PARAM = "param", "exact, in parameter space (p x p); for a trained subset of the weights"


class Loss(Choice):
    """The fine-tuning loss."""

    CE = "ce", "cross-entropy (the paper's classifiers)"
    MSE = "mse", "mean squared error on one-hot targets (exact for a linear model)"


class Kernel(Choice):
    """Which kernel the solves use.

    The pseudo-NTK (Mohamadi & Sutherland, 2022) is ``g g^T / c`` with ``g`` the gradient of the
    sum of the c logits, ``(n, n)``, used as that kernel times the identity over classes; the
    direction is still assembled with the full ``J^T`` (one vjp pass).
    """

    EXACT = "exact", "the empirical NTK J J^T, (n c, n c): the paper's step"
    PSEUDO = "pseudo", "c^2 less kernel work, exact only when the NTK is the identity over classes"


class JacobianMode(Choice):
    """How the dense exact kernel is built (:mod:`forgetbox.ntk.structured`)."""

    AUTO = (
        "auto",
        "per layer the cheaper of the structured and contracted forms by a flop model "
        "(layers without a rule: vmap(jacrev)); use it unless comparing paths",
    )
    STRUCTURED = (
        "structured",
        "the structured (ghost) form for every weight that has one; cheapest where a layer has "
        "few output positions and wide channels (Linear layers, a ResNet's last stage)",
    )
    CONTRACTION = (
        "contraction",
        "every Jacobian row by vmap(jacrev), then their Gram matrix, as before this option "
        "existed (bit for bit); for a model function that is not a module's",
    )


class Form(Choice):
    """The algebraic form of delta_w (both give the same step)."""

    DIFFERENCE = "difference", "u_{D_r} - u_D: two Cholesky factors of the kernel"
    SCHUR = "schur", "eq. 10 through the Schur complement of the retain block (dense only)"


class Around(Choice):
    """Where the network is linearized."""

    TRAINED = "trained", "at w(D), the weights being scrubbed (the supplement's better choice)"
    PRETRAINED = "pretrained", "at w0 (the paper's main text); needs the pre-trained weights"


def _help(text: str, **more) -> dict:
    """Field metadata: the help of its command-line flag (and the flag's name or unit)."""
    return {"help": text, **more}


@dataclass(frozen=True)
class Linearization(Settings):
    """What the NTK step linearizes: fine-tuning's objective
    ``(1/|S|) sum_i loss_i + (lambda/2) ||w - w0||^2`` with the network linearized at a point.

    ``weight_decay``: lambda. ``loss``: :class:`Loss`. ``around``: the point (:class:`Around`).
    ``anchored``: keep the weight-decay anchor, i.e. solve the stated objective exactly for the
    linearized model (forgetbox); False drops the anchor term as the authors' code does (it
    changes nothing at ``around = pretrained``). ``dtype``: the precision of every method's
    computation (default: the model's).
    """

    weight_decay: float = field(
        default=DEFAULT_WEIGHT_DECAY, metadata=_help("lambda of (lambda/2)||w - w0||^2")
    )
    loss: Loss = field(default=Loss.CE, metadata=_help("fine-tuning loss"))
    around: Around = field(default=Around.TRAINED, metadata=_help("linearization point"))
    anchored: bool = field(
        default=True, metadata=_help("keep the weight-decay anchor in the linearization")
    )
    dtype: torch.dtype | None = field(
        default=None, metadata=_help("precision of the computation (default: the weights')")
    )

    def __post_init__(self) -> None:
        check_number(self.weight_decay, "weight_decay", low=0.0)
        object.__setattr__(self, "loss", Loss.parse(self.loss, "loss"))
        object.__setattr__(self, "around", Around.parse(self.around, "around"))
        check_bool(self.anchored, "anchored")
        check_dtype(self.dtype)


@dataclass(frozen=True)
class NTKOptions(Settings):
    """Numerical options of the NTK step (what it computes is the :class:`Linearization`).

    ``solver``/``kernel``/``form``: :class:`Solver`, :class:`Kernel`, :class:`Form` (plain
    strings are accepted). ``memory_budget``: bytes the solver may use (default: half of the
    machine's memory or of the GPU's free memory). ``chunk``: samples per Jacobian chunk
    (default: from the budget). ``nystrom_rank``: samples whose kernel columns build the CG
    preconditioner (0: none). ``cg_tol``: relative residual at which CG stops (default 1e-10 in
    float64, 1e-5 in float32). ``cg_max_iter``: CG iteration cap. ``jacobian``: how the
    dense exact kernel is built (:class:`JacobianMode`).
    """

    solver: Solver = field(default=Solver.AUTO, metadata=_help("NTK solver"))
    kernel: Kernel = field(default=Kernel.EXACT, metadata=_help("NTK kernel"))
    form: Form = field(default=Form.DIFFERENCE, metadata=_help("algebraic form of the step"))
    memory_budget: int | None = field(
        default=None,
        metadata=_help(
            "memory budget of the NTK solver (default: half the memory)",
            flag="memory-budget-gb",
            scale=2**30,
        ),
    )
    chunk: int | None = field(
        default=None, metadata=_help("samples per Jacobian chunk (default: from the budget)")
    )
    nystrom_rank: int = field(default=64, metadata=_help("samples of the CG preconditioner"))
    cg_tol: float | None = field(
        default=None, metadata=_help("CG relative residual (default 1e-5 float32, 1e-10 float64)")
    )
    cg_max_iter: int = field(default=500, metadata=_help("CG iteration cap"))
    jacobian: JacobianMode = field(
        default=JacobianMode.AUTO, metadata=_help("how the dense exact kernel is built")
    )

    def __post_init__(self) -> None:
        for name, enum in (
            ("solver", Solver),
            ("kernel", Kernel),
            ("form", Form),
            ("jacobian", JacobianMode),
        ):
            object.__setattr__(self, name, enum.parse(getattr(self, name), name))
        check_int(self.memory_budget, "memory_budget", allow_none=True)
        check_int(self.chunk, "chunk", allow_none=True)
        check_int(self.cg_max_iter, "cg_max_iter")
        check_int(self.nystrom_rank, "nystrom_rank", low=0)
        if self.cg_tol is not None:
            check_number(self.cg_tol, "cg_tol", low=0.0, strict=True)
            if not self.cg_tol < 1:
                raise ValueError(f"cg_tol must lie in (0, 1); got {self.cg_tol!r}")
