"""How the NTK step is computed: the solver, the kernel, the form of eq. 10 and the numerical
knobs, as one frozen :class:`NTKOptions` passed whole from the public API to the engine."""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import StrEnum


class Solver(StrEnum):
    """How the kernel systems are solved.

    AUTO picks PARAM when the trained parameters are fewer than the kernel's rows and fit the
    budget, else DENSE when the kernel fits, else CG.
    DENSE: exact (Cholesky), cost p (Nc)^2 to build the kernel; best for |D| c up to ~10^4.
    CG: matrix-free, memory O(p + Nc), cost (iterations) x (vjp + jvp) over the data.
    PARAM: exact, in parameter space (p x p systems), memory O(p^2) whatever |D|; for a
    trained subset of the weights (:mod:`forgetbox.ntk.param_space`).
    """

    AUTO = "auto"
    DENSE = "dense"
    CG = "cg"
    PARAM = "param"


class Loss(StrEnum):
    """The fine-tuning loss: cross-entropy or mean squared error on one-hot targets."""

    CE = "ce"
    MSE = "mse"


class Kernel(StrEnum):
    """Which kernel the solves use.

    EXACT: the empirical NTK ``J J^T``, ``(n c, n c)``.
    PSEUDO: the pseudo-NTK of Mohamadi & Sutherland (2022): ``g g^T / c`` with ``g`` the
    gradient of the sum of the c logits, ``(n, n)``, used as that kernel times the identity over
    classes. It costs c times fewer Jacobian rows and c^2 less kernel work and memory; it is
    exact when the NTK is the identity over classes (a linear model, the last layer's share).
    The direction is still assembled with the full ``J^T`` (one vjp pass).
    """

    EXACT = "exact"
    PSEUDO = "pseudo"


class JacobianMode(StrEnum):
    """How the exact kernel's Jacobian products are formed (:mod:`forgetbox.ntk.structured`).

    AUTO (default): per layer, the cheaper of the two forms below by a flop model; layers
    without a rule use CONTRACTION's ``vmap(jacrev)``. Use it unless comparing paths.
    STRUCTURED: the structured (ghost) form for every weight that has one; cheapest where a
    layer has few output positions and wide channels (Linear layers, a ResNet's last stage).
    CONTRACTION: the per-sample Jacobian rows by ``vmap(jacrev)`` and their Gram matrix, as
    before this option existed (bit-identical); for a model function that is not a module's.
    """

    AUTO = "auto"
    STRUCTURED = "structured"
    CONTRACTION = "contraction"


class Form(StrEnum):
    """The algebraic form of delta_w: ``u_{D_r} - u_D`` (difference) or eq. 10 (Schur)."""

    DIFFERENCE = "difference"
    SCHUR = "schur"


def enum_value(enum: type[StrEnum], value, what: str) -> StrEnum:
    """``enum(value)`` with an error that lists the choices."""
    try:
        return enum(value)
    except ValueError:
        choices = ", ".join(m.value for m in enum)
        raise ValueError(f"{what} must be one of {choices}; got {value!r}") from None


@dataclass(frozen=True)
class NTKOptions:
    """Numerical options of the NTK step (what it computes is set by the loss, the weight
    decay and the linearization point, which are not options).

    ``solver``/``kernel``/``form``: see :class:`Solver`, :class:`Kernel`, :class:`Form` (plain
    strings are accepted). ``memory_budget``: bytes the solver may use (default: half of the
    machine's memory or of the GPU's free memory). ``chunk``: samples per Jacobian chunk
    (default: from the budget). ``nystrom_rank``: samples whose kernel columns build the CG
    preconditioner (0: none). ``cg_tol``: relative residual at which CG stops (default 1e-10 in
    float64, 1e-5 in float32). ``cg_max_iter``: CG iteration cap. ``jacobian``: how the
    dense exact kernel is built (:class:`JacobianMode`).
    """

    solver: Solver = Solver.AUTO
    kernel: Kernel = Kernel.EXACT
    form: Form = Form.DIFFERENCE
    memory_budget: int | None = None
    chunk: int | None = None
    nystrom_rank: int = 64
    cg_tol: float | None = None
    cg_max_iter: int = 500
    jacobian: JacobianMode = JacobianMode.AUTO

    def __post_init__(self) -> None:
        enums = (("solver", Solver), ("kernel", Kernel), ("form", Form), ("jacobian", JacobianMode))
        for name, enum in enums:
            object.__setattr__(self, name, enum_value(enum, getattr(self, name), name))
        _positive_int(self.memory_budget, "memory_budget", allow_none=True)
        _positive_int(self.chunk, "chunk", allow_none=True)
        _positive_int(self.cg_max_iter, "cg_max_iter")
        if isinstance(self.nystrom_rank, bool) or not isinstance(self.nystrom_rank, int):
            raise ValueError(f"nystrom_rank must be an integer >= 0; got {self.nystrom_rank!r}")
        if self.nystrom_rank < 0:
            raise ValueError(f"nystrom_rank must be >= 0; got {self.nystrom_rank}")
        if self.cg_tol is not None and not (0 < float(self.cg_tol) < 1):
            raise ValueError(f"cg_tol must lie in (0, 1); got {self.cg_tol!r}")

    def replace(self, **changes) -> NTKOptions:
        """A copy with ``changes`` (field names of this class only)."""
        unknown = set(changes) - {f.name for f in fields(self)}
        if unknown:
            raise TypeError(f"unknown NTK options: {sorted(unknown)}")
        return NTKOptions(**{**{f.name: getattr(self, f.name) for f in fields(self)}, **changes})


def _positive_int(value, name: str, *, allow_none: bool = False) -> None:
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive integer; got {value!r}")


def resolve_options(options: NTKOptions | None, overrides: dict) -> NTKOptions:
    """``options`` (default :class:`NTKOptions`) with keyword ``overrides`` applied."""
    base = options if options is not None else NTKOptions()
    return base.replace(**overrides) if overrides else base
