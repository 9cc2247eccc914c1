"""The NTK scrubbing engine: linearized forgetting (Prop. 2, eq. 10, supplement A).

Definitions (all shapes for a set S of |S| samples and c classes, p parameters):

- Fine-tuning minimises ``(1/|S|) sum_i l_i + (lambda/2) ||w - w0||^2``.
- Outputs are linearized at a point w_bar (default: the trained weights w(D), which the
  supplement found better; ``around=w0`` is the paper's main-text choice):
  ``f(w) ~ f(w_bar) + J (w - w_bar)`` with ``J_S`` the stacked Jacobian ``(|S| c, p)``, rows
  ordered sample-major (row ``i*c + k`` is output k of sample i).
- Residual ``r_S`` ``(|S|, c)``: ``softmax(f(x)) - onehot(y)`` for cross-entropy (the supplement
  with the loss Hessian replaced by the identity), ``f(x) - y`` (one-hot y) for MSE.
- Kernel ``Theta_S = J_S J_S^T + |S| lambda I``; linearized update
  ``u_S = -J_S^T Theta_S^{-1} r_S`` (a vector of length p).
- Scrubbing direction ``delta_w = u_{D_r} - u_D``. With a linear model, MSE and ``w_bar = w0``,
  ``w0 + u_S`` is the exact ridge solution on S, so ``w(D) + delta_w = w(D_r)`` exactly.

Modules, one concept each: :mod:`.options` (the :class:`Linearization` and the numerical
:class:`NTKOptions`), :mod:`.memory` (the budget and what each path needs), :mod:`.jacobian`
(Jacobians, vjp, jvp), :mod:`.kernel` (the blocked kernel build), :mod:`.solvers` (Cholesky,
Nystrom-preconditioned CG), :mod:`.problem` (the linearization data), :mod:`.direction`
(delta_w in difference and Schur form), :mod:`.param_space` (the p x p solve), :mod:`.prepared`
and :mod:`.prepared_params` (a factored state answering many requests), :mod:`.preparation`
(building it), :mod:`.projector` (the P of eq. 10), :mod:`.trapezium` (Fig. 5),
:mod:`.linearized` (the network linearized at w0, :class:`LinearizedModel`) and
:mod:`.kernel_regression` (its strongly convex training, solved exactly in kernel space).

The engine's public interface is ``__all__``: the layers above it (methods, bounds, deletion,
the experiment) use only those names (``tests/test_architecture.py``); the rest (Cholesky in
place, blocked solves, kernel rows, the held Jacobian) is internal.

Note on signs: the paper writes ``w_lin(D) = grad f0^T Theta^{-1} (f0 - Y) + w0``, whereas
gradient flow gives ``-grad f0^T Theta^{-1} (f0 - Y)``; its V is therefore minus ours: here
``V = r_f - Theta_fr Theta_rr^{-1} r_r`` and ``delta_w = P J_f^T M V + J_r^T (B_rr^{-1} -
A^{-1}) r_r``, where the second term corrects for the different weight-decay scales |D| lambda
and |D_r| lambda of the two kernels (zero when lambda=0).
"""

from .direction import NTKDirection, SolveReport, ntk_direction, scrub_direction
from .exact import exact_kernel
from .jacobian import jacobian, jacobian_blocks, vjp_sum
from .kernel import kernel_matrix
from .kernel_regression import KernelRegression
from .linearized import LinearizedModel
from .linearized import gradient as linearized_gradient
from .linearized import outputs as linearized_outputs
from .linearized import parts as linearized_parts
from .linearized import with_weights as linearized_with_weights
from .memory import MemoryBudgetError, default_memory_budget, itemsize
from .options import Around, Form, JacobianMode, Kernel, Linearization, Loss, NTKOptions, Solver
from .precision import full_precision
from .preparation import prepare_state
from .prepared import PreparedKernel, manifest_view
from .prepared_params import PreparedParams
from .problem import Problem, build_problem, residuals
from .projector import apply_retain_projector
from .solvers import conjugate_gradient
from .trapezium import Trapezium, trapezium

__all__ = [
    "Around",
    "Form",
    "JacobianMode",
    "Kernel",
    "KernelRegression",
    "Linearization",
    "LinearizedModel",
    "Loss",
    "MemoryBudgetError",
    "NTKDirection",
    "NTKOptions",
    "PreparedKernel",
    "PreparedParams",
    "Problem",
    "SolveReport",
    "Solver",
    "Trapezium",
    "apply_retain_projector",
    "build_problem",
    "conjugate_gradient",
    "default_memory_budget",
    "exact_kernel",
    "full_precision",
    "itemsize",
    "jacobian",
    "jacobian_blocks",
    "kernel_matrix",
    "linearized_gradient",
    "linearized_outputs",
    "linearized_parts",
    "linearized_with_weights",
    "manifest_view",
    "ntk_direction",
    "prepare_state",
    "residuals",
    "scrub_direction",
    "trapezium",
    "vjp_sum",
]
