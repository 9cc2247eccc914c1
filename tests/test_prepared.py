"""Prepared deletion and the pseudo-NTK against from-scratch and brute-force float64 references."""

import copy

import pytest
import torch
from torch import nn

from forgetbox import ntk
from forgetbox.checkpoints import CheckpointError
from forgetbox.deletion import load_prepared, prepare
from forgetbox.functional import flatten, load_flat_, model_function, parameters_of
from forgetbox.models import MLP, LinearModel, SmallCNN
from forgetbox.ntk import problem as ntk_problem


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _problem(arch: str, n: int = 14, c: int = 3, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed + 1)
    if arch == "smallcnn":
        model = SmallCNN(c, 1, width=0.25).double()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.3)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
        x = torch.randn(n, 1, 6, 6, generator=gen, dtype=torch.float64)
    else:
        model = MLP(c, 5, width=0.2).double()
        x = torch.randn(n, 5, generator=gen, dtype=torch.float64)
    w0 = copy.deepcopy(model)
    with torch.no_grad():  # w0 near the model, as after fine-tuning
        for p, q in zip(w0.parameters(), model.parameters(), strict=True):
            p.copy_(q + 0.05 * torch.randn(q.shape, generator=gen, dtype=torch.float64))
    y = torch.randint(0, c, (n,), generator=gen)
    return model, w0, x, y


def _from_scratch(model, w0, x, y, cohort, lam, kernel="exact"):
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[cohort] = False
    return ntk.ntk_direction(
        model,
        (x[keep], y[keep]),
        (x[cohort], y[cohort]),
        weight_decay=lam,
        dtype=torch.float64,
        solver="dense",
        pretrained=w0,
        kernel=kernel,
    )


@pytest.mark.parametrize("arch", ["smallcnn", "mlp"])
@pytest.mark.parametrize("kernel", ["exact", "pseudo"])
def test_prepared_request_equals_from_scratch(arch, kernel):
    model, w0, x, y = _problem(arch)
    lam = 0.1
    prep = prepare(model, (x, y), weight_decay=lam, pretrained=w0, kernel=kernel)
    got = prep.request(model, (x, y), [3, 9])
    ref = _from_scratch(model, w0, x, y, torch.tensor([3, 9]), lam, kernel)
    assert _rel(got.delta, ref.delta) < 1e-8
    assert _rel(got.u_retain, ref.u_retain) < 1e-8
    assert got.reports[0].converged and got.reports[0].iterations <= 20


def test_sequential_requests_answer_the_union_and_reuse_columns(tmp_path):
    model, w0, x, y = _problem("mlp", n=16)
    lam = 0.05
    prep = prepare(model, (x, y), weight_decay=lam, pretrained=w0)
    prep.request(model, (x, y), [1, 4])
    prep.save(tmp_path / "prep")
    again = load_prepared(tmp_path / "prep")
    assert again.forgotten.tolist() == [1, 4] and again.columns.shape == (16 * 3, 6)
    second = again.request(model, (x, y), [7])
    ref = _from_scratch(model, w0, x, y, torch.tensor([1, 4, 7]), lam)
    assert _rel(second.delta, ref.delta) < 1e-8
    assert again.columns.shape == (16 * 3, 9)  # only the new cohort's columns were added
    with pytest.raises(ValueError, match="already forgotten"):
        again.request(model, (x, y), [4])


def test_prepared_without_weight_decay_and_unanchored():
    model, _, x, y = _problem("mlp")
    prep = prepare(model, (x, y), weight_decay=0.0, loss="mse")
    got = prep.request(model, (x, y), [0, 5, 6])
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[[0, 5, 6]] = False
    ref = ntk.ntk_direction(
        model,
        (x[keep], y[keep]),
        (x[~keep], y[~keep]),
        weight_decay=0.0,
        loss="mse",
        dtype=torch.float64,
        solver="dense",
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
    got = ntk.kernel_matrix(f, params, x, kernel="pseudo")
    assert got.shape == (5, 5)
    assert _rel(got, ref) < 1e-10


def test_pseudo_equals_exact_on_a_linear_model():
    """A linear model's NTK is (x.x' + 1) I_c: the pseudo-NTK is then exact."""
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(20, 1, 2, 3, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 4, (20,), generator=gen)
    torch.manual_seed(0)
    model = LinearModel(4, 6).double()
    kw = dict(weight_decay=0.1, dtype=torch.float64, solver="dense")
    exact = ntk.ntk_direction(model, (x[:15], y[:15]), (x[15:], y[15:]), **kw)
    pseudo = ntk.ntk_direction(model, (x[:15], y[:15]), (x[15:], y[15:]), kernel="pseudo", **kw)
    assert _rel(pseudo.delta, exact.delta) < 1e-10
    schur = ntk.ntk_direction(
        model, (x[:15], y[:15]), (x[15:], y[15:]), kernel="pseudo", form="schur", **kw
    )
    assert _rel(schur.delta, exact.delta) < 1e-8
    with pytest.raises(ValueError, match="pseudo-NTK uses the dense solver"):
        ntk.ntk_direction(
            model,
            (x[:15], y[:15]),
            (x[15:], y[15:]),
            kernel="pseudo",
            solver="cg",
            weight_decay=0.1,
        )


def test_prepared_refuses_other_model_data_and_bad_cohorts(tmp_path):
    model, w0, x, y = _problem("mlp")
    prep = prepare(model, (x, y), weight_decay=0.1, pretrained=w0)
    other = load_flat_(copy.deepcopy(model), flatten(parameters_of(model)) * 1.01)
    with pytest.raises(CheckpointError, match="other weights"):
        prep.request(other, (x, y), [1])
    with pytest.raises(CheckpointError, match="other data"):
        prep.request(model, (x.flip(0), y), [1])
    for bad, msg in (([], "empty"), ([99], "lie in"), ([1, 1], "duplicates")):
        with pytest.raises(ValueError, match=msg):
            prep.request(model, (x, y), bad)
    with pytest.raises(ValueError, match="whole training set"):
        prep.request(model, (x, y), list(range(len(x))))
    with pytest.raises(CheckpointError, match="no kernel.safetensors"):
        load_prepared(tmp_path / "nothing")
    prep.save(tmp_path / "p")
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
        prepare(model, (x, y), weight_decay=0.1)
        assert seen == [(False, False), (False, False)]
        assert torch.backends.cudnn.allow_tf32 and torch.backends.cuda.matmul.allow_tf32
    finally:
        torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
