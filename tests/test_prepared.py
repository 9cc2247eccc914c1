"""Prepared deletion and the pseudo-NTK against from-scratch and brute-force float64 references."""

import copy

import pytest
import torch

from forgetbox import ntk
from forgetbox.checkpoints import CheckpointError
from forgetbox.deletion import check_binding, load_prepared, prepare, save_prepared
from forgetbox.functional import flatten, load_flat_, model_function, parameters_of
from forgetbox.methods import ForgetConfig
from forgetbox.models import LinearModel
from forgetbox.ntk import Linearization as Lin
from forgetbox.ntk import NTKOptions as Opts
from forgetbox.ntk import problem as ntk_problem

from . import cases

F64 = torch.float64


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _problem(arch: str, n: int = 14):
    c = cases.make(arch, n=n)
    return c.model, c.w0, c.x, c.y


def _from_scratch(model, w0, x, y, cohort, lam, kernel="exact"):
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[cohort] = False
    return ntk.ntk_direction(
        model,
        (x[keep], y[keep]),
        (x[cohort], y[cohort]),
        Lin(weight_decay=lam, dtype=F64),
        pretrained=w0,
        options=Opts(solver="dense", kernel=kernel),
    )


def ntk_config(lin) -> ForgetConfig:
    return ForgetConfig(linearization=lin)


def _request(prep, model, x, indices):
    return prep.request(model, x, prep.cohort(indices))


@pytest.mark.parametrize("arch", ["smallcnn", "mlp"])
@pytest.mark.parametrize("kernel", ["exact", "pseudo"])
def test_prepared_request_equals_from_scratch(arch, kernel):
    model, w0, x, y = _problem(arch)
    lam = 0.1
    prep = prepare(model, (x, y), weight_decay=lam, pretrained=w0, options=Opts(kernel=kernel))
    got = _request(prep, model, x, [3, 9])
    ref = _from_scratch(model, w0, x, y, torch.tensor([3, 9]), lam, kernel)
    assert _rel(got.delta, ref.delta) < 1e-8
    assert _rel(got.u_retain, ref.u_retain) < 1e-8
    assert got.reports[0].converged and got.reports[0].iterations <= 20


def test_sequential_requests_answer_the_union_and_reuse_columns(tmp_path):
    model, w0, x, y = _problem("mlp", n=16)
    lam = 0.05
    prep = prepare(model, (x, y), weight_decay=lam, pretrained=w0)
    _request(prep, model, x, [1, 4])
    save_prepared(prep, tmp_path / "prep")
    again = load_prepared(tmp_path / "prep")
    assert again.forgotten.tolist() == [1, 4] and again.columns.shape == (16 * 3, 6)
    second = _request(again, model, x, [7])
    ref = _from_scratch(model, w0, x, y, torch.tensor([1, 4, 7]), lam)
    assert _rel(second.delta, ref.delta) < 1e-8
    assert again.columns.shape == (16 * 3, 9)  # only the new cohort's columns were added
    with pytest.raises(ValueError, match="already forgotten"):
        _request(again, model, x, [4])
    with pytest.raises(ValueError, match="checked against another"):  # a stale cohort
        again.request(model, x, prep.cohort([9]))


def test_prepared_without_weight_decay_and_unanchored():
    model, _, x, y = _problem("mlp")
    lin = Lin(weight_decay=0.0, loss="mse", anchored=False)
    prep = prepare(model, (x, y), config=ntk_config(lin))
    got = _request(prep, model, x, [0, 5, 6])
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[[0, 5, 6]] = False
    ref = ntk.ntk_direction(
        model,
        (x[keep], y[keep]),
        (x[~keep], y[~keep]),
        lin.replace(dtype=F64),
        options=Opts(solver="dense"),
    )
    assert _rel(got.delta, ref.delta) < 1e-8


def test_pseudo_kernel_matches_brute_force():
    model, _, x, _ = _problem("smallcnn", n=5)
    f = model_function(model, torch.float64)
    params = parameters_of(model, torch.float64)
    rows = []
    for i in range(len(x)):  # gradient of the summed logits, one sample at a time
        p = {k: t.clone().requires_grad_(True) for k, t in params.items()}
        out = f(p, x[i : i + 1]).sum()
        rows.append(torch.cat([g.reshape(-1) for g in torch.autograd.grad(out, list(p.values()))]))
    G = torch.stack(rows)
    ref = G @ G.T / 3
    got = ntk.kernel_matrix(f, params, x, kernel="pseudo")  # the engine's public kernel
    assert got.shape == (5, 5)
    assert _rel(got, ref) < 1e-10


def test_pseudo_equals_exact_on_a_linear_model():
    """A linear model's NTK is (x.x' + 1) I_c: the pseudo-NTK is then exact."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(20, 1, 2, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (20,), generator=gen)
    torch.manual_seed(0)
    model = LinearModel(4, 6).double()
    lin = Lin(anchored=False, dtype=F64)
    retain, forget = (x[:15], y[:15]), (x[15:], y[15:])
    exact = ntk.ntk_direction(model, retain, forget, lin, options=Opts(solver="dense"))
    opts = Opts(solver="dense", kernel="pseudo")
    pseudo = ntk.ntk_direction(model, retain, forget, lin, options=opts)
    assert _rel(pseudo.delta, exact.delta) < 1e-10
    schur = ntk.ntk_direction(model, retain, forget, lin, options=opts.replace(form="schur"))
    assert _rel(schur.delta, exact.delta) < 1e-8
    with pytest.raises(ValueError, match="pseudo-NTK uses the dense solver"):
        ntk.ntk_direction(model, retain, forget, lin, options=opts.replace(solver="cg"))


def test_prepared_refuses_other_model_data_and_bad_cohorts(tmp_path):
    model, w0, x, y = _problem("mlp")
    prep = prepare(model, (x, y), weight_decay=0.1, pretrained=w0)
    other = load_flat_(copy.deepcopy(model), flatten(parameters_of(model)) * 1.01)
    with pytest.raises(CheckpointError, match="other weights"):
        check_binding(prep, other, (x, y))
    with pytest.raises(CheckpointError, match="other data"):
        check_binding(prep, model, (x.flip(0), y))
    for bad, msg in (([], "empty"), ([99], "out of range"), ([1, 1], "duplicates")):
        with pytest.raises(ValueError, match=msg):
            prep.cohort(bad)
    with pytest.raises(ValueError, match="whole training set"):
        prep.cohort(list(range(len(x))))
    with pytest.raises(CheckpointError, match="no kernel.safetensors"):
        load_prepared(tmp_path / "nothing")
    save_prepared(prep, tmp_path / "p")
    (tmp_path / "p" / "kernel.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(CheckpointError, match="not a valid safetensors"):
        load_prepared(tmp_path / "p")


def test_engine_runs_without_tf32_and_restores_the_flags(monkeypatch):
    """cuDNN/CUDA TF32 rounding is amplified by the kernel's conditioning: the engine turns it
    off for its own work and restores the caller's settings."""
    seen = []
    real = ntk_problem.layer_kernel_and_jacobian

    def spy(*args, **kwargs):
        seen.append((torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32))
        return real(*args, **kwargs)

    monkeypatch.setattr(ntk_problem, "layer_kernel_and_jacobian", spy)
    saved = torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    try:
        model, w0, x, y = _problem("mlp")
        _from_scratch(model, w0, x, y, torch.tensor([1]), 0.1)
        prepare(model, (x, y), weight_decay=0.1, pretrained=w0)
        assert seen == [(False, False), (False, False)]
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
