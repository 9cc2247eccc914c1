"""Trained subsets of the weights: the scrub, its noise and its bounds in that subspace only,
every other weight returned bit-identical; the parameter-space solver against the kernel one
and the brute force, in float64."""

import copy

import pytest
import torch

import forgetbox
from forgetbox import data, models, ntk, reference
from forgetbox.functional import flatten, parameters_of, select_trainable
from forgetbox.ntk import Linearization as Lin
from forgetbox.ntk import NTKOptions as Opts

HEAD_AND_LAST = "classifier.*,features.2.1.*"


@pytest.fixture(scope="module")
def problem(trained):
    _, model, w0, split = trained
    m64, w64 = copy.deepcopy(model).double(), copy.deepcopy(w0).double()
    idx = torch.tensor([0, 3, 5, 8])
    keep = data.retain_mask(len(split.y_train), idx)
    x = split.x_train.double()
    return m64, w64, (x[keep], split.y_train[keep]), (x[idx], split.y_train[idx])


def _subset(model, patterns=HEAD_AND_LAST):
    m = copy.deepcopy(model)
    select_trainable(m, patterns)
    return m


@pytest.mark.parametrize("anchored", [True, False])
def test_parameter_space_equals_the_kernel_solvers_and_the_brute_force(problem, anchored):
    m64, w64, retain, forget = problem
    sub, w0 = _subset(m64), _subset(w64)
    p = sum(t.numel() for t in parameters_of(sub).values())
    assert p < (len(retain[0]) + len(forget[0])) * 5  # fewer parameters than kernel rows
    lin = Lin(anchored=anchored)
    by = {
        s: ntk.ntk_direction(sub, retain, forget, lin, pretrained=w0, options=Opts(solver=s))
        for s in ("param", "dense", "cg", "auto")
    }
    assert by["auto"].extras["solver"] == "param" and by["param"].reports[0].solver == "param"
    for s in ("dense", "cg"):
        rel = (by["param"].delta - by[s].delta).norm() / by[s].delta.norm()
        assert rel < 1e-8, (s, rel.item())
        rel_u = (by["param"].u_retain - by[s].u_retain).norm() / by[s].u_retain.norm()
        assert rel_u < 1e-8, (s, rel_u.item())
    want, _ = reference.dense_delta(
        sub, parameters_of(sub), retain, forget, 0.1, "ce", parameters_of(w0) if anchored else None
    )
    assert len(want) == p
    assert ((by["param"].delta - want).norm() / want.norm()).item() < 1e-8


def test_a_trained_subset_is_scrubbed_alone_and_the_rest_is_bit_identical(problem):
    m64, w64, retain, forget = problem
    before = copy.deepcopy(m64.state_dict())
    res = forgetbox.scrub(
        m64, pretrained=w64, retain=retain, forget=forget, trainable=HEAD_AND_LAST, seed=1
    )
    after = res.model.state_dict()
    trained = {
        n for n, _ in res.model.named_parameters() if n.startswith(("classifier", "features.2.1"))
    }
    for name, value in before.items():
        if name in trained:
            continue
        assert torch.equal(after[name], value), name  # frozen weights, BatchNorm statistics
    moved = [n for n in trained if not torch.equal(after[n], before[n])]
    assert moved and all(
        n.startswith(("classifier.", "features.2.1.")) for n in moved
    )  # the noise and the step touched the trained subset only
    assert m64.state_dict().keys() == before.keys()
    assert all(torch.equal(m64.state_dict()[k], v) for k, v in before.items())  # input untouched
    cert = res.certificate["trainable"]
    assert cert["parameters"] == len(res.noise_variance) < cert["of"]
    assert set(cert["names"]) == trained
    # the step is the brute-force one in the subspace (with its trapezium scale)
    sub, w0 = _subset(m64), _subset(w64)
    want, _ = reference.dense_delta(
        sub, parameters_of(sub), retain, forget, 0.1, "ce", parameters_of(w0)
    )
    got = res.delta / res.scale
    assert ((got - want).norm() / want.norm()).item() < 1e-7


def test_requires_grad_is_the_default_selection(problem):
    m64, w64, retain, forget = problem
    m = copy.deepcopy(m64)
    for name, p in m.named_parameters():
        p.requires_grad_(name.startswith("classifier"))
    res = forgetbox.scrub(m, pretrained=w64, retain=retain, forget=forget, method="ntk")
    assert res.certificate["trainable"]["names"] == ["classifier.weight", "classifier.bias"]
    assert torch.equal(
        flatten(parameters_of(_subset(res.model, "features.*"))),
        flatten(parameters_of(_subset(m64, "features.*"))),
    )


@pytest.mark.parametrize(
    "patterns,message",
    [("fc.*", "match no parameter"), ([], "must name parameters"), ("", "must name parameters")],
)
def test_a_bad_selection_is_refused_naming_it(problem, patterns, message):
    m64, w64, retain, forget = problem
    with pytest.raises(ValueError, match=message):
        forgetbox.scrub(m64, pretrained=w64, retain=retain, forget=forget, trainable=patterns)


def test_a_mlp_with_fewer_parameters_than_rows_uses_the_parameter_space_by_default():
    gen = torch.Generator().manual_seed(0)
    model = models.build_model("mlp", num_classes=3, input_shape=(4,), width=0.1).double()
    x = torch.randn(60, 4, generator=gen, dtype=torch.float64)
    y = torch.randint(0, 3, (60,), generator=gen)
    lin = Lin(weight_decay=0.05, anchored=False)
    d = ntk.ntk_direction(model, (x[:50], y[:50]), (x[50:], y[50:]), lin)
    assert d.extras["solver"] == "param"
    dense = ntk.ntk_direction(
        model, (x[:50], y[:50]), (x[50:], y[50:]), lin, options=Opts(solver="dense")
    )
    assert ((d.delta - dense.delta).norm() / dense.delta.norm()).item() < 1e-8


def test_frozen_weights_follow_the_computation_dtype(trained, problem):
    """A float32 model scrubbed in float64: the frozen weights are cast with the trained ones
    (the same step as the float64 model's)."""
    model = trained[1]
    m64, _, retain, forget = problem
    sub32 = _subset(model)
    lin = Lin(anchored=False)
    got = ntk.ntk_direction(sub32, retain, forget, lin.replace(dtype=torch.float64))
    want = ntk.ntk_direction(_subset(m64), retain, forget, lin)
    assert got.delta.dtype == torch.float64
    assert ((got.delta - want.delta).norm() / want.delta.norm()).item() < 1e-10
