"""Prepared deletion in parameter space (a Woodbury downdate of J^T J + |D| lambda I) against
the from-scratch dense NTK step in float64."""

import copy

import pytest
import torch

from forgetbox import ntk
from forgetbox.deletion import load_prepared, prepare
from forgetbox.deletion.prepared_params import PreparedParams
from forgetbox.models import LinearModel, SmallCNN


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _linear(n=24, c=4, seed=0):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = LinearModel(c, 6).double()  # p = 28 < n c = 96
    w0 = copy.deepcopy(model)
    with torch.no_grad():
        for p in w0.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=gen, dtype=torch.float64))
    x = torch.randn(n, 1, 2, 3, generator=gen, dtype=torch.float64)
    return model, w0, x, torch.randint(0, c, (n,), generator=gen)


def _scratch(model, w0, x, y, cohort, lam, **kw):
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[cohort] = False
    return ntk.ntk_direction(
        model,
        (x[keep], y[keep]),
        (x[~keep], y[~keep]),
        weight_decay=lam,
        dtype=torch.float64,
        solver="dense",
        pretrained=w0,
        **kw,
    )


@pytest.mark.parametrize("anchored", [True, False])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_param_space_request_equals_the_dense_step(anchored, loss):
    model, w0, x, y = _linear()
    w0 = w0 if anchored else None
    prep = prepare(model, (x, y), weight_decay=0.1, pretrained=w0, loss=loss, solver="param")
    assert isinstance(prep, PreparedParams) and prep.chol.shape == (28, 28)
    got = prep.request(model, (x, y), [2, 5, 11])
    ref = _scratch(model, w0, x, y, torch.tensor([2, 5, 11]), 0.1, loss=loss)
    assert _rel(got.delta, ref.delta) < 1e-8
    assert _rel(got.u_retain, ref.u_retain) < 1e-8
    report = got.reports[0]
    assert report.converged and report.iterations <= 15
    assert report.preconditioner == "woodbury-downdate"


def test_auto_prepares_in_parameter_space_only_when_it_is_smaller():
    model, w0, x, y = _linear()
    assert isinstance(prepare(model, (x, y), weight_decay=0.1, pretrained=w0), PreparedParams)
    small = _linear(n=5)  # n c = 20 < p = 28: the kernel is smaller
    assert not isinstance(prepare(small[0], small[2:], weight_decay=0.1), PreparedParams)


def test_sequential_requests_survive_save_and_load(tmp_path):
    model, w0, x, y = _linear(n=30)
    prep = prepare(model, (x, y), weight_decay=0.05, pretrained=w0, solver="param")
    prep.request(model, (x, y), [1, 4])
    prep.save(tmp_path / "prep")
    again = load_prepared(tmp_path / "prep")
    assert isinstance(again, PreparedParams)
    assert again.forgotten.tolist() == [1, 4] and again.jacobian.shape == (2 * 4, 28)
    second = again.request(model, (x, y), [7, 20])
    ref = _scratch(model, w0, x, y, torch.tensor([1, 4, 7, 20]), 0.05)
    assert _rel(second.delta, ref.delta) < 1e-8
    assert again.columns.shape == (28, 4 * 4)
    with pytest.raises(ValueError, match="already forgotten"):
        again.request(model, (x, y), [4])


def test_a_failed_request_leaves_the_state_unchanged():
    model, w0, x, y = _linear()
    prep = prepare(model, (x, y), weight_decay=0.1, pretrained=w0, solver="param")
    with pytest.raises(ValueError):
        prep.request(model, (x, y), [3, 3])
    assert len(prep.forgotten) == 0 and prep.jacobian is None and prep.columns is None


def test_trained_subset_of_a_cnn_in_parameter_space():
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model = SmallCNN(3, 1, width=0.25).double().eval()
    x = torch.randn(40, 1, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    head = [n for n, _ in model.named_parameters()][-2:]
    p = sum(t.numel() for n, t in model.named_parameters() if n in head)
    assert p < 40 * 3
    prep = prepare(model, (x, y), weight_decay=0.1, trainable=head)
    assert isinstance(prep, PreparedParams) and prep.chol.shape == (p, p)
    sub = copy.deepcopy(model)  # a request names the same trained subset (as scrub does)
    for name, t in sub.named_parameters():
        t.requires_grad_(name in head)
    with pytest.raises(ValueError, match="same trainable subset"):
        prep.request(model, (x, y), [0, 8, 9])  # every parameter marked trained
    got = prep.request(sub, (x, y), [0, 8, 9])
    keep = torch.ones(40, dtype=torch.bool)
    keep[[0, 8, 9]] = False
    ref = ntk.ntk_direction(
        sub,
        (x[keep], y[keep]),
        (x[~keep], y[~keep]),
        weight_decay=0.1,
        dtype=torch.float64,
        solver="dense",
    )
    assert got.delta.shape == (p,)
    assert _rel(got.delta, ref.delta) < 1e-8
