"""The per-layer kernel build (issue 31) against independent float64 references: the
contraction path's ``vmap(jacrev)`` kernel, the brute-force ``reference.dense_delta``, and an
explicit per-sample gradient Gram for the structured block."""

import os
from dataclasses import replace

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import torch.nn.functional as F
from torch import nn

from forgetbox import models, ntk, parallel, reference
from forgetbox.functional import model_function, parameters_of
from forgetbox.inputs import Rows
from forgetbox.ntk import flops
from forgetbox.ntk.cross import layer_cross_kernel
from forgetbox.ntk.flops import LayerForm, LayerShape, choose_form
from forgetbox.ntk.ghost import ghost_accumulate, ghost_block
from forgetbox.ntk.kernel import kernel_and_jacobian
from forgetbox.ntk.memory import KERNEL_COPIES
from forgetbox.ntk.options import JacobianMode, NTKOptions
from forgetbox.ntk.solvers import NystromPreconditioner
from forgetbox.ntk.structured import layer_kernel_and_jacobian

from .cases import randomize_batchnorm

F64 = torch.float64


class Tokens(nn.Module):
    """Linear layers on ``(b, L, d)`` tokens (a sequence dimension), mean-pooled, a head."""

    def __init__(self, d=4, h=6, c=3):
        super().__init__()
        self.embed = nn.Linear(d, h)
        self.mix = nn.Linear(h, h, bias=False)
        self.head = nn.Linear(h, c)

    def forward(self, x):
        return self.head(torch.tanh(self.mix(torch.tanh(self.embed(x)))).mean(1))


class Convs(nn.Module):
    """Every Conv2d option: stride, padding (int, 'same', reflect, circular), dilation,
    groups, bias or none; BatchNorm2d and BatchNorm1d (eval mode); an in-place ReLU after a
    recorded layer (the recorder must then pass on a copy)."""

    def __init__(self, c=3):
        super().__init__()
        self.a = nn.Conv2d(2, 4, 3, stride=2, padding=1, bias=True)
        self.bn = nn.BatchNorm2d(4)
        self.b = nn.Conv2d(4, 4, 3, padding=2, dilation=2, groups=2, bias=False)
        self.c = nn.Conv2d(4, 6, (3, 2), padding="same", padding_mode="reflect", groups=2)
        self.d = nn.Conv2d(6, 4, 3, stride=(2, 1), padding=1, padding_mode="circular")
        self.e = nn.Conv2d(4, 4, 1, groups=4, bias=True)  # depthwise, 1x1
        self.bn1 = nn.BatchNorm1d(16)
        self.head = nn.Linear(16, c)

    def forward(self, x):
        h = torch.tanh(F.relu(self.bn(self.a(x)), inplace=True) - 0.1)
        h = torch.tanh(self.c(torch.tanh(self.b(h))))
        h = torch.tanh(self.e(torch.tanh(self.d(h))))
        return self.head(torch.tanh(self.bn1(F.adaptive_avg_pool2d(h, 2).flatten(1))))


class Scale(nn.Module):
    """A parametrised layer no rule knows."""

    def __init__(self, n):
        super().__init__()
        self.alpha = nn.Parameter(torch.linspace(0.5, 1.5, n))

    def forward(self, x):
        return x * self.alpha


class LinearTwice(nn.Linear):
    """A subclass of nn.Linear with its own forward: no rule (rules match exact types)."""

    def forward(self, x):
        return super().forward(x) + super().forward(torch.sin(x))


class Unknown(nn.Module):
    """An unknown layer (Scale), LayerNorm, a subclass, a shared Linear called twice and a
    weight also used outside its module: each must fall back to vmap(jacrev)."""

    def __init__(self, d=5, c=3):
        super().__init__()
        self.inp = nn.Linear(d, 6)
        self.scale = Scale(6)
        self.norm = nn.LayerNorm(6)
        self.shared = nn.Linear(6, 6)
        self.sub = LinearTwice(6, 6)
        self.tied = nn.Linear(6, c)

    def forward(self, x):
        h = self.norm(self.scale(torch.tanh(self.inp(x))))
        h = torch.tanh(self.shared(torch.tanh(self.shared(h))))
        h = torch.tanh(self.sub(h))
        return self.tied(h) + 0.3 * F.linear(torch.sin(h), self.tied.weight)


def _seeded(build, seed=0):
    torch.manual_seed(seed)
    model = build().double().eval()
    randomize_batchnorm(model, torch.Generator().manual_seed(seed + 1))
    for m in model.modules():
        if isinstance(m, nn.BatchNorm1d):
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 1.5)
            with torch.no_grad():
                m.weight.normal_(1, 0.2)
                m.bias.normal_(0, 0.2)
    return model


MODELS = {
    "mlp": (lambda: models.MLP(3, 5, width=0.1), (5,)),
    "tokens": (Tokens, (3, 4)),
    "convs": (Convs, (2, 8, 7)),
    "resnet18": (lambda: models.ResNet18(3, 3, width=0.0625), (3, 8, 8)),
    "allcnn": (lambda: models.AllCNN(3, 3, width=0.05), (3, 8, 8)),
}


def _problem(name, n=6, seed=0):
    build, shape = MODELS[name]
    model = _seeded(build, seed)
    x = torch.randn(n, *shape, generator=torch.Generator().manual_seed(seed + 2), dtype=F64)
    return model, x


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _contraction(model, x, **kw):
    f = model_function(model, F64)
    return kernel_and_jacobian(f, parameters_of(model, F64), x, **kw)[0]


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("force", [LayerForm.STRUCTURED, LayerForm.CONTRACTED, None])
def test_every_layer_and_form_matches_the_contracted_kernel(name, force):
    model, x = _problem(name)
    f, params = model_function(model, F64), parameters_of(model, F64)
    want = _contraction(model, x)
    K, _, report = layer_kernel_and_jacobian(f, params, x, force=force, chunk=4)
    assert _rel(K, want) < 1e-12, _rel(K, want)
    plan = report.plan
    if plan is None:  # auto, where the structured layers save little: the contraction path
        assert force is None and report.note.startswith("auto: the structured form saves")
        return
    assert plan.fallback == () and plan.reasons == {}  # every parameter from its layer's rule
    assert {q for lp in plan.layers for q in lp.params} == set(params)
    factored = [lp for lp in plan.layers if lp.factored]
    assert factored and all(lp.form is (force or lp.form) for lp in factored)
    assert plan.cloned == ({"bn"} if name == "convs" else set())


def test_frozen_parameters_contribute_nothing():
    model, x = _problem("convs")
    for name in ("a.bias", "b.weight", "bn.weight", "head.weight", "d.weight"):
        model.get_parameter(name).requires_grad_(False)
    f, params = model_function(model, F64), parameters_of(model, F64)
    assert "b.weight" not in params and "bn.bias" in params
    want = _contraction(model, x)
    for force in (LayerForm.STRUCTURED, LayerForm.CONTRACTED):
        K, _, report = layer_kernel_and_jacobian(f, params, x, force=force)
        assert _rel(K, want) < 1e-12
        assert report.plan.fallback == ()
        assert {q for lp in report.plan.layers for q in lp.params} == set(params)
    # the frozen weights' own blocks are what the trainable kernel lacks
    everything = _contraction(_problem("convs")[0], x)
    assert _rel(K, everything) > 1e-3


def test_unknown_layers_and_misused_weights_fall_back_to_vmap_jacrev():
    model = _seeded(Unknown)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    f, params = model_function(model, F64), parameters_of(model, F64)
    K, _, report = layer_kernel_and_jacobian(f, params, x, jacobian="structured", chunk=3)
    assert _rel(K, _contraction(model, x)) < 1e-12
    plan = report.plan
    fallback = set(plan.fallback)
    # no rule: the unknown layer, LayerNorm, the nn.Linear subclass
    assert {"scale.alpha", "norm.weight", "norm.bias", "sub.weight", "sub.bias"} <= fallback
    # a rule, refused by the probe: called twice; a weight also used outside its module
    assert "called 2 times" in plan.reasons["shared"]
    assert "differ from autograd" in plan.reasons["tied"]
    assert {"shared.weight", "tied.weight", "tied.bias"} <= fallback
    assert [lp.name for lp in plan.layers] == ["inp"]


def test_streamed_rows_give_the_kernel_of_the_tensor():
    """Inputs read a batch at a time (forgetbox.inputs.Rows over a numpy array)."""
    model, x = _problem("convs", n=7)
    f, params = model_function(model, F64), parameters_of(model, F64)
    want = layer_kernel_and_jacobian(f, params, x, chunk=3)[0]
    got = layer_kernel_and_jacobian(f, params, Rows(x.numpy(), dtype=F64), chunk=3)[0]
    assert torch.equal(got, want)


def test_a_function_without_a_module_and_contraction_mode_are_the_contraction_path():
    model, x = _problem("mlp")
    f, params = model_function(model, F64), parameters_of(model, F64)
    K0, held0 = kernel_and_jacobian(f, params, x)
    K1, held1, report = layer_kernel_and_jacobian(f, params, x, jacobian="contraction")
    assert torch.equal(K0, K1) and torch.equal(held0.J, held1.J) and report.plan is None

    def bare(p, xb):
        return f(p, xb)

    K2, _, report = layer_kernel_and_jacobian(bare, params, x, jacobian="structured")
    assert torch.equal(K0, K2) and report.plan is None


def test_several_passes_hold_the_first_parameters_columns_and_pullback_is_exact():
    model, x = _problem("resnet18", n=5)
    f, params = model_function(model, F64), parameters_of(model, F64)
    J = ntk.jacobian(f, params, x).reshape(len(x) * 3, -1)
    rows, p = J.shape
    names = list(params)
    sizes = [params[q].numel() for q in names]
    offsets = dict(zip(names, [sum(sizes[:i]) for i in range(len(names))], strict=True))
    for fraction in (1, 3, 9):
        group = -(-p // fraction)
        budget = (KERNEL_COPIES * rows * rows * 8 + rows * 8 * group) * 4 // 3 + 8
        for force in (LayerForm.STRUCTURED, LayerForm.CONTRACTED):
            K, held, report = layer_kernel_and_jacobian(
                f, params, x, memory_budget=budget, chunk=2, force=force
            )
            assert _rel(K, J @ J.T) < 1e-12, (fraction, force)
            assert report.passes >= (fraction if force is LayerForm.CONTRACTED else 1)
            cols = [offsets[q] + i for q, lo, hi in held.columns for i in range(lo, hi)]
            if force is LayerForm.CONTRACTED:  # the last pass holds the first parameter's
                assert held.columns[0] == (names[0], 0, min(group, params[names[0]].numel()))
            assert torch.allclose(
                torch.eye(rows, dtype=F64) @ held.J, J[:, cols], rtol=0, atol=1e-13
            )
    lin = ntk.Linearization(weight_decay=0.1, anchored=False, dtype=F64)
    prob = ntk.build_problem(model, x, torch.tensor([0, 1, 2, 0, 1]), 3, lin)
    coef = torch.randn(2, 5, 3, generator=torch.Generator().manual_seed(4), dtype=F64)
    assert _rel(prob.pullback(coef, held), coef.reshape(2, -1) @ J) < 1e-12


@pytest.mark.parametrize("mode", ["structured", "auto"])
@pytest.mark.parametrize("name", ["resnet18", "tokens"])
def test_delta_w_matches_the_brute_force_reference(name, mode):
    model, x = _problem(name, n=7)
    y = torch.tensor([0, 2, 1, 1, 0, 2, 1])
    params = parameters_of(model, F64)
    retain, forget = (x[:5], y[:5]), (x[5:], y[5:])
    want, want_retain = reference.dense_delta(model, params, retain, forget, 0.1)
    lin = ntk.Linearization(weight_decay=0.1, anchored=False, dtype=F64)
    got = ntk.ntk_direction(
        model, retain, forget, lin, options=NTKOptions(solver="dense", jacobian=mode)
    )
    assert _rel(got.delta, want) < 1e-9 and _rel(got.u_retain, want_retain) < 1e-9


def test_pseudo_kernel_per_layer_matches_its_contraction():
    model, x = _problem("convs")
    f, params = model_function(model, F64), parameters_of(model, F64)
    want = kernel_and_jacobian(f, params, x, kernel="pseudo")[0]
    for force in (LayerForm.STRUCTURED, LayerForm.CONTRACTED):
        K, _, report = layer_kernel_and_jacobian(f, params, x, kernel="pseudo", force=force)
        assert K.shape == (6, 6) and _rel(K, want) < 1e-12 and report.plan.k == 1


def test_structured_block_equals_the_gram_of_explicit_per_sample_gradients():
    gen = torch.Generator().manual_seed(5)
    g, n, k, T, d, o = 3, 7, 4, 5, 6, 2
    X = torch.randn(g, n, T, d, generator=gen, dtype=F64)
    D = torch.randn(g, n, k, T, o, generator=gen, dtype=F64)
    G = torch.einsum("gnkto,gntd->nkgod", D, X).reshape(n * k, -1)  # per-sample gradients
    assert _rel(ghost_block(X, D, X, D), G @ G.T) < 1e-13
    for lo, hi, block, sym in ((0, n, 3, True), (0, n, 2, False), (2, 5, 2, False)):
        K = torch.zeros(n * k, n * k, dtype=F64)
        ghost_accumulate(K, X, D, lo, hi, block, symmetric=sym)
        want = torch.zeros_like(K)
        want[lo * k : hi * k] = (G @ G.T)[lo * k : hi * k]
        assert _rel(K, want) < 1e-13, (lo, hi, block, sym)


def test_auto_picks_the_form_with_fewer_multiply_adds():
    n, k = 500, 5
    # ResNet-18 x0.4 on 32x32 inputs: stage 4 (T = 16) 3x3 convolutions structured, its 1x1
    # shortcut and the earlier stages contracted, the classifier (T = 1) structured
    assert choose_form(n, k, LayerShape(16, 205 * 9, 205)) is LayerForm.STRUCTURED
    assert choose_form(n, k, LayerShape(16, 102 * 9, 205)) is LayerForm.STRUCTURED
    assert choose_form(n, k, LayerShape(16, 102, 205)) is LayerForm.CONTRACTED
    assert choose_form(n, k, LayerShape(64, 102 * 9, 102)) is LayerForm.CONTRACTED
    assert choose_form(n, k, LayerShape(1024, 26 * 9, 26)) is LayerForm.CONTRACTED
    assert choose_form(n, k, LayerShape(1, 205, 5)) is LayerForm.STRUCTURED
    # a depthwise 3x3 convolution at T = 16: few parameters per group, contracted
    assert choose_form(n, k, LayerShape(16, 9, 1, groups=205)) is LayerForm.CONTRACTED
    # the counts themselves, by hand: n = 2, k = 3, T = 2, d = 4, o = 5, g = 2 (p = 40)
    s = LayerShape(2, 4, 5, groups=2)
    assert flops.contracted_macs(2, 3, s) == 6 * 2 * 40 + 21 * 40
    assert flops.structured_macs(2, 3, s) == 3 * 2 * 4 * (4 + 45 + 9)
    # and the planner follows it on a model: the MLP's Linear layers all structured at n = 6
    model, x = _problem("mlp")
    f, params = model_function(model, F64), parameters_of(model, F64)
    _, _, report = layer_kernel_and_jacobian(f, params, x)
    for lp in report.plan.layers:
        assert lp.form is choose_form(6, 3, lp.shape)
        assert (lp.structured_macs < lp.contracted_macs) == (lp.form is LayerForm.STRUCTURED)


@pytest.mark.parametrize("jacobian", ["auto", "contraction"])
def test_the_certificate_records_how_the_kernel_was_built(jacobian):
    import forgetbox

    from . import cases

    c = cases.make("smallcnn")
    res = forgetbox.scrub(
        c.model,
        pretrained=c.w0,
        retain=c.retain,
        forget=c.forget,
        method="ntk",
        weight_decay=c.lam,
        dtype=F64,
        options=NTKOptions(solver="dense", jacobian=jacobian),
    )
    cert = res.certificate
    assert cert["config"]["jacobian"] == jacobian
    (report,) = cert["method_info"]["ntk"]["reports"]
    build = report["kernel_build"]
    if jacobian == "contraction":
        assert build == {"jacobian": "contraction"}
        return
    # every factored weight of the small CNN has a form, and it is the flop model's choice
    f, params = model_function(c.model, F64), parameters_of(c.model, F64)
    x = torch.cat([c.retain[0], c.forget[0]])
    plan = layer_kernel_and_jacobian(f, params, x)[2].plan
    want = {lp.factored: lp.form.value for lp in plan.layers if lp.form is not None}
    assert build["forms"] == want and set(want.values()) <= {"structured", "contracted"}
    assert build["jacobian"] == "per-layer" and build["fallback"] == []


def test_auto_builds_per_layer_only_where_the_structured_form_saves_enough():
    from forgetbox.ntk import layer_plan

    for name in MODELS:
        model, x = _problem(name)
        f, params = model_function(model, F64), parameters_of(model, F64)
        plan = layer_kernel_and_jacobian(f, params, x, jacobian="structured")[2].plan
        # the same plan, each factored weight in the cheaper form, as auto makes it
        layers = tuple(
            replace(lp, form=choose_form(plan.n, plan.k, lp.shape)) if lp.form else lp
            for lp in plan.layers
        )
        saving = layer_plan.plan_saving(replace(plan, layers=layers))
        report = layer_kernel_and_jacobian(f, params, x)[2]
        assert (report.plan is None) == (saving < layer_plan.AUTO_MIN_SAVING), name


def test_jacobian_option_accepts_strings_and_names_the_choices():
    assert NTKOptions(jacobian="structured").jacobian is JacobianMode.STRUCTURED
    assert NTKOptions().jacobian is JacobianMode.AUTO
    with pytest.raises(ValueError, match="auto, structured, contraction"):
        NTKOptions(jacobian="ghost")


def _columns(K, n, S):
    """The columns ``K[:, S]`` of a sample-major kernel of n samples."""
    c = K.shape[0] // n
    return K.view(n, c, n, c)[:, :, S].reshape(n * c, len(S) * c)


CHOSEN = torch.tensor([0, 3, 5])


@pytest.mark.parametrize("name", list(MODELS))
@pytest.mark.parametrize("force", [LayerForm.STRUCTURED, LayerForm.CONTRACTED, None])
def test_the_cross_kernel_is_the_kernels_columns(name, force):
    model, x = _problem(name, n=7)
    f, params = model_function(model, F64), parameters_of(model, F64)
    got = layer_cross_kernel(f, params, x, x[CHOSEN], jacobian="structured", force=force, chunk=2)
    assert got is not None
    assert _rel(got[0], _columns(_contraction(model, x), len(x), CHOSEN)) < 1e-12


def test_the_cross_kernel_falls_back_and_splits_into_passes():
    model = _seeded(Unknown)
    x = torch.randn(7, 5, generator=torch.Generator().manual_seed(3), dtype=F64)
    f, params = model_function(model, F64), parameters_of(model, F64)
    C, report = layer_cross_kernel(f, params, x, x[CHOSEN], jacobian="structured", chunk=3)
    assert "scale.alpha" in report.plan.fallback
    assert _rel(C, _columns(_contraction(model, x), 7, CHOSEN)) < 1e-12
    model, x = _problem("resnet18", n=7)
    f, params = model_function(model, F64), parameters_of(model, F64)
    want = _columns(_contraction(model, x), 7, CHOSEN)
    for force in (LayerForm.STRUCTURED, LayerForm.CONTRACTED):
        C, report = layer_cross_kernel(
            f, params, x, x[CHOSEN], memory_budget=2**20, chunk=2, force=force
        )
        assert report.passes > 1 and _rel(C, want) < 1e-12, force


def test_the_cross_kernel_declines_where_the_rows_path_applies(monkeypatch):
    from forgetbox.ntk import cross

    model, x = _problem("mlp")
    f, params = model_function(model, F64), parameters_of(model, F64)
    assert layer_cross_kernel(f, params, x, x[:2], jacobian="contraction") is None
    assert layer_cross_kernel(lambda p, xb: f(p, xb), params, x, x[:2]) is None
    # auto declines where the structured form saves too little (as on All-CNN at CIFAR size)
    assert layer_cross_kernel(f, params, x, x[:2], jacobian="auto") is not None
    # and any mode where C and one pass do not fit the budget
    assert layer_cross_kernel(f, params, x, x[:2], jacobian="structured", memory_budget=64) is None
    monkeypatch.setattr(cross, "AUTO_MIN_SAVING", 1.01)
    assert layer_cross_kernel(f, params, x, x[:2], jacobian="auto") is None
    assert layer_cross_kernel(f, params, x, x[:2], jacobian="structured") is not None


def test_the_cross_kernel_of_streamed_rows_is_that_of_the_tensor():
    model, x = _problem("convs", n=7)
    f, params = model_function(model, F64), parameters_of(model, F64)
    rows = Rows(x.numpy(), dtype=F64)
    got = layer_cross_kernel(f, params, rows, rows[CHOSEN], jacobian="structured", chunk=3)[0]
    want = layer_cross_kernel(f, params, x, x[CHOSEN], jacobian="structured", chunk=3)[0]
    assert torch.equal(got, want)


def test_the_cg_path_gives_the_same_step_with_per_layer_nystrom_columns():
    model, x = _problem("resnet18", n=9)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1, 2])
    lin = ntk.Linearization(weight_decay=0.1, anchored=False, dtype=F64)
    steps = {
        mode: ntk.ntk_direction(
            model,
            (x[2:], y[2:]),
            (x[:2], y[:2]),
            lin,
            options=NTKOptions(solver="cg", jacobian=mode, nystrom_rank=3, cg_tol=1e-12),
        )
        for mode in ("contraction", "structured")
    }
    a, b = steps["structured"], steps["contraction"]
    assert a.reports[0].preconditioner == b.reports[0].preconditioner == "nystrom(m=3)"
    assert _rel(a.delta, b.delta) < 1e-9


def test_the_nystrom_preconditioner_is_the_same_built_per_layer():
    model, x = _problem("resnet18", n=9)
    f, params = model_function(model, F64), parameters_of(model, F64)
    rows = NystromPreconditioner.build(f, params, x, 0.5, 4, 3, seed=1)
    layer = NystromPreconditioner.build(f, params, x, 0.5, 4, 3, seed=1, jacobian="structured")
    assert _rel(layer.C, rows.C) < 1e-12 and _rel(layer.chol, rows.chol) < 1e-10
    v = torch.randn(9, 3, generator=torch.Generator().manual_seed(5), dtype=F64)
    assert _rel(layer(v), rows(v)) < 1e-10


def _dist_worker(rank: int, world: int, init_file: str, out_file: str) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        torch.set_num_threads(1)
        model, x = _problem("resnet18", n=5)
        f, params = model_function(model, F64), parameters_of(model, F64)
        out = {}
        for force in (LayerForm.STRUCTURED, LayerForm.CONTRACTED):
            out[force.value] = layer_kernel_and_jacobian(f, params, x, force=force, chunk=2)[0]
            cross = layer_cross_kernel(f, params, x, x[CHOSEN[:2]], force=force, chunk=2)
            out["cross-" + force.value] = cross[0]
        out["least"] = torch.tensor(parallel.all_min(10 + 5 * rank))  # every rank gets 10
        if rank > 0:
            assert out["least"].item() == 10
        if rank == 0:
            torch.save(out, out_file)
        dist.barrier()
    finally:
        dist.destroy_process_group()


def test_two_processes_build_the_kernel_one_process_builds(tmp_path):
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out_file = str(tmp_path / "two.pt")
    mp.spawn(_dist_worker, args=(2, str(tmp_path / "init"), out_file), nprocs=2, join=True)
    two = torch.load(out_file)
    model, x = _problem("resnet18", n=5)
    want = _contraction(model, x)
    assert two.pop("least").item() == 10
    assert set(two) == {"structured", "contracted", "cross-structured", "cross-contracted"}
    for key, K in two.items():
        expected = _columns(want, len(x), CHOSEN[:2]) if key.startswith("cross") else want
        assert _rel(K, expected) < 1e-12, key
