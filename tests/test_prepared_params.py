"""Prepared deletion in parameter space (a Woodbury downdate of J^T J + |D| lambda I) against
the from-scratch dense NTK step in float64."""

import copy

import pytest
import torch

from forgetbox import ntk
from forgetbox.deletion import load_prepared, prepare, save_prepared
from forgetbox.methods import ForgetConfig
from forgetbox.models import SmallCNN
from forgetbox.ntk import Linearization as Lin
from forgetbox.ntk import NTKOptions as Opts
from forgetbox.ntk import PreparedParams
from forgetbox.ntk import prepared_params as engine

from . import cases

F64 = torch.float64
PARAM = Opts(solver="param")


def _rel(a, b):
    return ((a - b).norm() / b.norm()).item()


def _linear(n=24):
    c = cases.make("linear", n=n)
    return c.model, c.w0, c.x, c.y


def _config(lam=0.1, loss="ce", anchored=True, opts=PARAM) -> ForgetConfig:
    return ForgetConfig(linearization=Lin(weight_decay=lam, loss=loss, anchored=anchored), ntk=opts)


def _scratch(model, w0, x, y, cohort, lam, loss="ce", anchored=True):
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[cohort] = False
    return ntk.ntk_direction(
        model,
        (x[keep], y[keep]),
        (x[~keep], y[~keep]),
        Lin(weight_decay=lam, loss=loss, anchored=anchored, dtype=F64),
        pretrained=w0,
        options=Opts(solver="dense"),
    )


def _request(prep, model, x, indices):
    return prep.request(model, x, prep.cohort(indices))


@pytest.mark.parametrize("anchored", [True, False])
@pytest.mark.parametrize("loss", ["ce", "mse"])
def test_param_space_request_equals_the_dense_step(anchored, loss):
    model, w0, x, y = _linear()
    w0 = w0 if anchored else None
    cfg = _config(loss=loss, anchored=anchored)
    prep = prepare(model, (x, y), pretrained=w0, config=cfg)
    assert isinstance(prep, PreparedParams) and prep.chol.shape == (28, 28)
    got = _request(prep, model, x, [2, 5, 11])
    ref = _scratch(model, w0, x, y, torch.tensor([2, 5, 11]), 0.1, loss, anchored)
    assert _rel(got.delta, ref.delta) < 1e-8
    assert _rel(got.u_retain, ref.u_retain) < 1e-8
    report = got.reports[0]
    assert report.converged and report.iterations <= 15
    assert report.preconditioner == "woodbury-downdate"


def test_auto_prepares_in_parameter_space_only_when_it_is_smaller():
    model, w0, x, y = _linear()
    assert isinstance(prepare(model, (x, y), weight_decay=0.1, pretrained=w0), PreparedParams)
    small = _linear(n=5)  # n c = 20 < p = 28: the kernel is smaller
    state = prepare(small[0], small[2:], pretrained=small[1], weight_decay=0.1)
    assert not isinstance(state, PreparedParams)


def test_sequential_requests_survive_save_and_load(tmp_path):
    model, w0, x, y = _linear(n=30)
    prep = prepare(model, (x, y), pretrained=w0, config=_config(lam=0.05))
    _request(prep, model, x, [1, 4])
    save_prepared(prep, tmp_path / "prep")
    again = load_prepared(tmp_path / "prep")
    assert isinstance(again, PreparedParams)
    assert again.forgotten.tolist() == [1, 4] and again.jacobian.shape == (2 * 4, 28)
    second = _request(again, model, x, [7, 20])
    ref = _scratch(model, w0, x, y, torch.tensor([1, 4, 7, 20]), 0.05)
    assert _rel(second.delta, ref.delta) < 1e-8
    assert again.columns.shape == (28, 4 * 4)
    with pytest.raises(ValueError, match="already forgotten"):
        _request(again, model, x, [4])


def test_a_failed_request_leaves_the_state_unchanged(monkeypatch):
    """A solve that fails half-way (after the cohort's Jacobian and columns were computed)
    leaves the state as it was: the request can be made again and gives the right step."""
    model, w0, x, y = _linear()
    prep = prepare(model, (x, y), pretrained=w0, config=_config())

    def failing(*args, **kwargs):
        raise RuntimeError("the solve failed")

    monkeypatch.setattr(engine, "conjugate_gradient", failing)
    with pytest.raises(RuntimeError, match="the solve failed"):
        _request(prep, model, x, [3, 5])
    assert len(prep.forgotten) == 0 and prep.jacobian is None and prep.columns is None
    monkeypatch.undo()
    got = _request(prep, model, x, [3, 5])
    assert _rel(got.delta, _scratch(model, w0, x, y, torch.tensor([3, 5]), 0.1).delta) < 1e-8


def test_trained_subset_of_a_cnn_in_parameter_space():
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    model = SmallCNN(3, 1, width=0.25).double().eval()
    x = torch.randn(40, 1, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (40,), generator=gen)
    head = [n for n, _ in model.named_parameters()][-2:]
    p = sum(t.numel() for n, t in model.named_parameters() if n in head)
    assert p < 40 * 3
    cfg = _config(anchored=False, opts=Opts())
    prep = prepare(model, (x, y), config=cfg, trainable=head)
    assert isinstance(prep, PreparedParams) and prep.chol.shape == (p, p)
    sub = copy.deepcopy(model)  # a request names the same trained subset (as scrub does)
    for name, t in sub.named_parameters():
        t.requires_grad_(name in head)
    with pytest.raises(ValueError, match="same trainable subset"):
        _request(prep, model, x, [0, 8, 9])  # every parameter marked trained
    got = _request(prep, sub, x, [0, 8, 9])
    keep = torch.ones(40, dtype=torch.bool)
    keep[[0, 8, 9]] = False
    ref = ntk.ntk_direction(
        sub,
        (x[keep], y[keep]),
        (x[~keep], y[~keep]),
        Lin(anchored=False, dtype=F64),
        options=Opts(solver="dense"),
    )
    assert got.delta.shape == (p,)
    assert _rel(got.delta, ref.delta) < 1e-8
