"""NTK engine against independent float64 references on tiny problems."""

import math

import pytest
import torch

from forgetbox import ntk, reference
from forgetbox.functional import flatten, load_flat_, model_function, parameters_of
from forgetbox.models import MLP, LinearModel, SmallCNN
from forgetbox.ntk import Linearization as Lin
from forgetbox.ntk import NTKOptions as Opts
from forgetbox.ntk import kernel as ntk_kernel
from forgetbox.ntk.kernel import kernel_and_jacobian
from forgetbox.ntk.memory import KERNEL_COPIES as COPIES
from forgetbox.ntk.solvers import (
    KernelOperator,
    NystromPreconditioner,
    cholesky_,
    mirror_upper_,
    solve_factored,
)

from .cases import randomize_batchnorm

F64 = torch.float64


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_linear_mse_around_w0_is_exact_ridge_retrain(gen):
    lam, c = 0.1, 3
    x = torch.randn(40, 1, 2, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (40,), generator=gen)
    xr, yr, xf, yf = x[:33], y[:33], x[33:], y[33:]
    torch.manual_seed(1)
    w0 = LinearModel(c, 6).double()
    trained = LinearModel(c, 6).double()
    load_flat_(trained, reference.ridge_solution(x, y, w0, lam))
    target = reference.ridge_solution(xr, yr, w0, lam)
    w_d = flatten(parameters_of(trained))
    for solver, form in (("dense", "difference"), ("dense", "schur"), ("cg", "difference")):
        delta = ntk.scrub_direction(
            trained,
            (xr, yr),
            (xf, yf),
            Lin(weight_decay=lam, loss="mse", around="pretrained", anchored=False, dtype=F64),
            pretrained=w0,
            options=Opts(solver=solver, form=form),
        )
        err = ((w_d + delta) - target).norm() / target.norm()
        assert err < 1e-8, (solver, form, err.item())


@pytest.mark.parametrize("arch", ["smallcnn", "mlp"])
def test_engine_matches_brute_force(arch, gen):
    torch.manual_seed(3)
    if arch == "smallcnn":
        model = SmallCNN(3, 1, width=0.25).double()
        randomize_batchnorm(model, gen)
        x = torch.randn(9, 1, 6, 6, generator=gen, dtype=torch.float64)
    else:
        model = MLP(3, 5, width=0.2).double()
        x = torch.randn(9, 5, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (9,), generator=gen)
    xr, yr, xf, yf = x[:7], y[:7], x[7:], y[7:]
    lam = 0.1
    params = parameters_of(model, torch.float64)
    ref, ref_retain = reference.dense_delta(model, params, (xr, yr), (xf, yf), lam)
    lin = Lin(weight_decay=lam, anchored=False, dtype=F64)
    full = ntk.ntk_direction(model, (xr, yr), (xf, yf), lin, options=Opts(solver="dense"))
    # u_{D_r} (the linearized retrain, used by the trapezium) comes from the same vjp pass
    assert (full.u_retain - ref_retain).norm() / ref_retain.norm() < 1e-8
    dense = ntk.scrub_direction(model, (xr, yr), (xf, yf), lin, options=Opts(solver="dense"))
    # a budget that splits the Jacobian into column groups: delta_w then comes from a vjp pass
    # instead of the held Jacobian
    rows, p = 9 * 3, sum(t.numel() for t in params.values())
    budget = (COPIES * rows * rows * 8 + rows * 8 * (p // 2)) * 4 // 3 + 8
    opts = Opts(solver="dense", memory_budget=budget)
    split = ntk.ntk_direction(model, (xr, yr), (xf, yf), lin, options=opts)
    assert (split.delta - ref).norm() / ref.norm() < 1e-8
    assert (split.u_retain - ref_retain).norm() / ref_retain.norm() < 1e-8
    opts = Opts(solver="dense", form="schur")
    schur = ntk.scrub_direction(model, (xr, yr), (xf, yf), lin, options=opts)
    cg = ntk.scrub_direction(model, (xr, yr), (xf, yf), lin, options=Opts(solver="cg"))
    scale = ref.norm()
    assert scale > 1e-6
    assert (dense - ref).norm() / scale < 1e-8
    assert (schur - ref).norm() / scale < 1e-8
    assert (cg - dense).norm() / scale < 1e-6


def test_mse_matches_brute_force_and_around_changes_result(gen):
    torch.manual_seed(4)
    model = MLP(2, 4, width=0.1).double()
    x = torch.randn(6, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 2, (6,), generator=gen)
    params = parameters_of(model, torch.float64)
    ref = reference.dense_delta(model, params, (x[:4], y[:4]), (x[4:], y[4:]), 0.05, loss="mse")[0]
    lin = Lin(weight_decay=0.05, loss="mse", anchored=False, dtype=F64)
    got = ntk.scrub_direction(model, (x[:4], y[:4]), (x[4:], y[4:]), lin)
    assert (got - ref).norm() / ref.norm() < 1e-8
    other = {k: v + 0.1 for k, v in params.items()}
    moved = ntk.scrub_direction(model, (x[:4], y[:4]), (x[4:], y[4:]), lin, point=other)
    assert (moved - got).norm() / got.norm() > 1e-3


@pytest.mark.parametrize("fraction", [2, 3, 7])
def test_kernel_matrix_param_groups_equal_full(gen, fraction):
    torch.manual_seed(5)
    model = SmallCNN(3, 1, width=0.25).double()
    x = torch.randn(5, 1, 6, 6, generator=gen, dtype=torch.float64)
    f = model_function(model, torch.float64)
    params = parameters_of(model, torch.float64)
    J = ntk.jacobian(f, params, x).reshape(15, -1)
    p = J.shape[1]
    # a budget that forces several parameter groups (tensors split across them) and several
    # sample chunks
    group = -(-p // fraction)
    budget = (COPIES * (15 * 15 * 8) + 15 * 8 * group) * 4 // 3 + 4
    groups = ntk_kernel.param_groups(params, group)
    assert len(groups) >= fraction
    assert max(sum(hi - lo for _, lo, hi in g) for g in groups) <= group
    # only a tensor wider than a group is split
    biggest = max(t.numel() for t in params.values())
    assert any(hi - lo < params[k].numel() for g in groups for k, lo, hi in g) == (group < biggest)
    flat = [(k, i) for g in groups for k, lo, hi in g for i in range(lo, hi)]
    assert sorted(flat) == sorted((k, i) for k, t in params.items() for i in range(t.numel()))
    assert groups[0][0] == (next(iter(params)), 0, min(group, params[next(iter(params))].numel()))
    K, held = kernel_and_jacobian(f, params, x, memory_budget=budget, chunk=2)
    assert torch.allclose(K, J @ J.T, rtol=1e-12, atol=1e-12)
    # the group left in memory is the one holding the first parameter, column for column
    sizes = [t.numel() for t in params.values()]
    offsets = dict(zip(params, [sum(sizes[:i]) for i in range(len(sizes))], strict=True))
    cols = [int(offsets[k]) + i for k, lo, hi in held.columns for i in range(lo, hi)]
    assert held.columns == tuple(groups[0])
    assert torch.allclose(held.J, J[:, cols], rtol=1e-12, atol=1e-12)


def test_pullback_mixes_held_columns_and_a_vjp_pass_exactly(gen):
    """J^T coef from the held first group (matrix product) plus a vjp pass restricted to the
    other parameters equals the full product, at a linearization point other than the
    model's own weights (the vjp must not fall back on the model's parameters)."""
    torch.manual_seed(6)
    model = SmallCNN(3, 1, width=0.25).double()
    x = torch.randn(6, 1, 6, 6, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (6,), generator=gen)
    around = {k: v + 0.1 for k, v in parameters_of(model, torch.float64).items()}
    prob = ntk.build_problem(
        model, x, y, 4, Lin(weight_decay=0.1, anchored=False), point=around, options=Opts(chunk=4)
    )
    J = ntk.jacobian(prob.f, prob.params, x).reshape(18, -1)
    coef = torch.randn(2, 6, 3, generator=gen, dtype=torch.float64)
    want = coef.reshape(2, -1) @ J
    p = J.shape[1]
    for fraction in (1, 2, 5):
        group = -(-p // fraction)
        budget = (COPIES * (18 * 18 * 8) + 18 * 8 * group) * 4 // 3 + 4
        _, held = kernel_and_jacobian(prob.f, prob.params, x, memory_budget=budget)
        got = prob.pullback(coef, held)
        assert torch.allclose(got, want, rtol=1e-12, atol=1e-12), fraction
    assert torch.allclose(prob.pullback(coef, None), want, rtol=1e-12, atol=1e-12)


def test_symmetric_accumulate_over_several_blocks(gen):
    J = torch.randn(23, 7, generator=gen, dtype=torch.float64)
    K = torch.ones(23, 23, dtype=torch.float64)
    ntk_kernel.sym_accumulate(K, J, block=5)  # 5 blocks, the last one partial
    assert torch.allclose(K, 1 + J @ J.T, rtol=1e-13, atol=1e-13)


def test_projector_idempotent_and_annihilates_retain_gradients(gen):
    torch.manual_seed(6)
    model = MLP(2, 3, width=0.1).double()
    f = model_function(model, torch.float64)
    params = parameters_of(model, torch.float64)
    xr = torch.randn(4, 3, generator=gen, dtype=torch.float64)
    Jr = ntk.jacobian(f, params, xr).reshape(8, -1)
    v = torch.randn(Jr.shape[1], generator=gen, dtype=torch.float64)
    Pv = ntk.apply_retain_projector(f, params, xr, v)
    PPv = ntk.apply_retain_projector(f, params, xr, Pv)
    assert (PPv - Pv).norm() / Pv.norm() < 1e-9
    assert (Jr @ Pv).abs().max() / (Jr @ v).abs().max() < 1e-9
    assert (Pv - v).norm() > 1e-3  # it does something


def test_trapezium_closed_forms():
    d = torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64)
    lin = torch.zeros(3, dtype=torch.float64)
    orth = ntk.trapezium(d, w_full=torch.tensor([0.0, 2.0, 0.0]), w_lin=lin)
    assert orth.scale == pytest.approx(1.0)
    par = ntk.trapezium(d, w_full=torch.tensor([3.0, 0.0, 0.0]), w_lin=lin)
    assert par.scale == pytest.approx(1 + 2 * 3.0)
    anti = ntk.trapezium(d, w_full=torch.tensor([-1.0, 1.0, 0.0]), w_lin=lin)
    assert anti.angle == pytest.approx(3 * math.pi / 4)
    assert anti.scale == pytest.approx(1 + 2 * math.sin(math.pi / 4) * math.sqrt(2))


def test_nystrom_preconditioner_cuts_iterations(gen):
    torch.manual_seed(7)
    model = MLP(3, 6, width=0.3).double()
    f = model_function(model, torch.float64)
    params = parameters_of(model, torch.float64)
    x = torch.randn(60, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(60, 3, generator=gen, dtype=torch.float64)
    op = KernelOperator(f, params, x, shift=60 * 1e-3, chunk=16)
    plain = ntk.conjugate_gradient(op, b, tol=1e-10, max_iter=2000)
    pre = NystromPreconditioner.build(f, params, x, 60 * 1e-3, m=20, chunk=16, seed=0)
    fast = ntk.conjugate_gradient(op, b, precond=pre, tol=1e-10, max_iter=2000)
    assert fast[1] < plain[1]
    assert (fast[0] - plain[0]).norm() / plain[0].norm() < 1e-7


def test_bad_inputs_give_clear_errors(gen):
    model = MLP(3, 4, width=0.1).double()
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1])
    lin = Lin(anchored=False, dtype=F64)
    with pytest.raises(ValueError, match="forget set is empty"):
        ntk.scrub_direction(model, (x, y), (x[:0], y[:0]), lin)
    with pytest.raises(ValueError, match=r"labels must lie in \[0, 3\)"):
        ntk.scrub_direction(model, (x, y), (x[:1], torch.tensor([5])), lin)
    with pytest.raises(ValueError, match="rejects inputs"):
        ntk.scrub_direction(model, (x[:, :3], y), (x[:1, :3], y[:1]), lin)
    with pytest.raises(ntk.MemoryBudgetError, match="no solver fits"):
        ntk.scrub_direction(model, (x, y), (x[:1], y[:1]), lin, options=Opts(memory_budget=100))
    with pytest.raises(ntk.MemoryBudgetError, match="solver='cg'"):
        opts = Opts(solver="dense", memory_budget=2000)
        ntk.scrub_direction(model, (x, y), (x[:1], y[:1]), lin, options=opts)
    with pytest.raises(ValueError, match="anchored linearization needs the pre-trained"):
        ntk.scrub_direction(model, (x, y), (x[:1], y[:1]), Lin(dtype=F64))
    with pytest.raises(ValueError, match="around='pretrained'"):
        ntk.scrub_direction(model, (x, y), (x[:1], y[:1]), lin.replace(around="pretrained"))
    bad = MLP(3, 4, width=0.1).double()
    with torch.no_grad():
        bad.classifier.weight[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        ntk.scrub_direction(bad, (x, y), (x[:1], y[:1]), lin)


def test_anchored_linearization_away_from_w0_is_exact_on_a_linear_mse_model(gen):
    """A linear model is its own linearization at any point: anchored at w_bar != w0 (and
    w_bar != w(D)), w_bar + u_{D_r} is the ridge solution on D_r and delta_w the difference of
    the two ridge solutions; the dense reference's anchored update agrees."""
    lam, c = 0.1, 3
    x = torch.randn(30, 1, 2, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, c, (30,), generator=gen)
    retain, forget = (x[:24], y[:24]), (x[24:], y[24:])
    torch.manual_seed(8)
    w0, model = LinearModel(c, 6).double(), LinearModel(c, 6).double()
    w_bar = flatten(parameters_of(model))
    assert (w_bar - flatten(parameters_of(w0))).norm() > 0.5  # far from w0
    ridge_d = reference.ridge_solution(x, y, w0, lam)
    ridge_r = reference.ridge_solution(*retain, w0, lam)
    lin = Lin(weight_decay=lam, loss="mse", dtype=F64)
    for solver in ("dense", "cg"):
        step = ntk.ntk_direction(model, retain, forget, lin, pretrained=w0, options=Opts(solver))
        assert ((step.around + step.u_retain) - ridge_r).norm() / ridge_r.norm() < 1e-8
        want = ridge_r - ridge_d
        assert (step.delta - want).norm() / want.norm() < 1e-8, solver
    params = parameters_of(model, torch.float64)
    u_ref = reference.linearized_update(model, params, *retain, lam, "mse", parameters_of(w0))
    assert ((w_bar + u_ref) - ridge_r).norm() / ridge_r.norm() < 1e-8
    unanchored = ntk.ntk_direction(
        model, retain, forget, lin.replace(anchored=False), options=Opts(solver="dense")
    )
    assert (unanchored.delta - (ridge_r - ridge_d)).norm() / (ridge_r - ridge_d).norm() > 1e-3


def test_conjugate_gradients_iterate_to_the_direct_solution(gen):
    """A Nystrom preconditioner of rank 4 on 40 samples is far from the exact inverse: CG has
    to iterate, and its solution matches torch.linalg.solve on the dense kernel."""
    torch.manual_seed(9)
    model = MLP(3, 6, width=0.3).double()
    f = model_function(model, torch.float64)
    params = parameters_of(model, torch.float64)
    x = torch.randn(40, 6, generator=gen, dtype=torch.float64)
    b = torch.randn(40, 3, generator=gen, dtype=torch.float64)
    shift = 40 * 1e-3
    J = reference.per_sample_jacobian(model, params, x)
    want = torch.linalg.solve(J @ J.T + shift * torch.eye(120, dtype=torch.float64), b.reshape(-1))
    op = KernelOperator(f, params, x, shift=shift, chunk=16)
    pre = NystromPreconditioner.build(f, params, x, shift, m=4, chunk=16, seed=0)
    got, iters, rel = ntk.conjugate_gradient(op, b, precond=pre, tol=1e-12, max_iter=2000)
    assert iters > 10 and rel <= 1e-12
    assert (got.reshape(-1) - want).norm() / want.norm() < 1e-9
    # and through the engine: a rank-4 preconditioned CG step equals the dense reference
    y = torch.randint(0, 3, (40,), generator=gen)
    retain, forget = (x[:34], y[:34]), (x[34:], y[34:])
    ref, _ = reference.dense_delta(model, params, retain, forget, 0.01)
    lin = Lin(weight_decay=0.01, anchored=False, dtype=F64)
    opts = Opts(solver="cg", nystrom_rank=4, cg_tol=1e-12)
    step = ntk.ntk_direction(model, retain, forget, lin, options=opts)
    assert all(r.iterations > 10 and r.converged for r in step.reports)
    assert (step.delta - ref).norm() / ref.norm() < 1e-8


def test_difference_coefficients_match_explicit_solves():
    """The in-place dense solve against torch.linalg.solve on a random SPD kernel (float64)."""
    from forgetbox.ntk.direction import difference_coefficients

    g = torch.Generator().manual_seed(3)
    a = torch.randn(30, 12, dtype=torch.float64, generator=g)
    K = a @ a.T
    r = torch.randn(30, 1, dtype=torch.float64, generator=g)
    ncr, n, nr, lam = 24, 10, 8, 0.3
    eye = torch.eye(30, dtype=torch.float64)
    want_r = torch.linalg.solve(K[:ncr, :ncr] + nr * lam * eye[:ncr, :ncr], r[:ncr])
    want = torch.linalg.solve(K + n * lam * eye, r)
    want[:ncr] -= want_r
    coef, alpha_r = difference_coefficients(K.clone(), r, ncr, n_total=n, n_retain=nr, lam=lam)
    torch.testing.assert_close(alpha_r, want_r, rtol=1e-10, atol=1e-12)
    torch.testing.assert_close(coef, want, rtol=1e-10, atol=1e-12)
    L = torch.linalg.cholesky(K + eye)
    torch.testing.assert_close(
        solve_factored(L, r), torch.linalg.solve(K + eye, r), rtol=1e-10, atol=1e-12
    )


@pytest.mark.parametrize("m, block", [(1, 4), (7, 3), (12, 4), (13, 256)])
@pytest.mark.parametrize("strided", [False, True])
def test_in_place_cholesky_matches_lapack_and_keeps_the_upper_triangle(m, block, strided):
    """cholesky_ and solve_factored on a whole matrix and on a leading block of a larger one
    (the retain block of a kernel, a strided view), against LAPACK and torch.linalg.solve."""
    g = torch.Generator().manual_seed(m)
    a = torch.randn(m, m + 2, dtype=torch.float64, generator=g)
    K = a @ a.T + 0.1 * torch.eye(m, dtype=torch.float64)
    K = 0.5 * (K + K.T)  # exactly symmetric: a BLAS product need not be, bit for bit
    big = torch.full((m + 3, m + 3), float("nan"), dtype=torch.float64)
    big[:m, :m] = K
    A = big[:m, :m] if strided else K.clone()
    assert A.is_contiguous() != strided or m == 1
    cholesky_(A, block=block)
    torch.testing.assert_close(A.tril(), torch.linalg.cholesky(K), rtol=1e-10, atol=1e-12)
    assert torch.equal(A.triu(1), K.triu(1))
    assert big[m:].isnan().all() and big[:, m:].isnan().all()
    b = torch.randn(m, 2, dtype=torch.float64, generator=g)
    # the solves read the lower triangle only: the upper one still holds K
    got = solve_factored(A, b, block=block)
    torch.testing.assert_close(got, torch.linalg.solve(K, b), rtol=1e-9, atol=1e-10)
    mirror_upper_(A, K.diagonal(), block=block)
    assert torch.equal(A, K)


def test_in_place_cholesky_names_a_matrix_that_is_not_positive_definite():
    A = torch.eye(6, dtype=torch.float64)
    A[4, 4] = -1.0
    with pytest.raises(ValueError, match="not positive definite"):
        cholesky_(A, block=2)
