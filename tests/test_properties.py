"""Property-based tests of the public functions (hypothesis, as opacus tests its per-sample
rules): any shape of data, class count and cohort size, one-sample and empty cohorts included,
gives the brute-force float64 answer or a clear error."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import forgetbox
from forgetbox import methods, ntk, reference
from forgetbox.cohort import Cohort, CohortError
from forgetbox.functional import flatten, parameters_of
from forgetbox.models import MLP
from forgetbox.training import FinetuneConfig

F64 = torch.float64


@given(
    n=st.integers(1, 30),
    indices=st.lists(st.integers(-3, 33), max_size=12),
    earlier=st.lists(st.integers(0, 29), max_size=5, unique=True),
)
@settings(max_examples=300, deadline=None)
def test_a_cohort_is_accepted_exactly_when_it_is_valid(n, indices, earlier):
    earlier = [e for e in earlier if e < n]
    valid = (
        len(indices) > 0
        and all(0 <= i < n for i in indices)
        and len(set(indices)) == len(indices)
        and not set(indices) & set(earlier)
        and len(indices) + len(earlier) < n
    )
    if not valid:
        with pytest.raises(CohortError):
            Cohort.check(indices, n, earlier)
        return
    c = Cohort.check(indices, n, earlier)
    assert c.new.tolist() == indices and c.earlier.tolist() == earlier
    assert c.retained().sum().item() == n - len(indices) - len(earlier)
    assert Cohort.check(c, n) is c  # a checked cohort is not checked again
    assert Cohort.check(c, n, earlier) is c
    with pytest.raises(CohortError, match="checked against another"):  # another D
        Cohort.check(c, n + 1)
    with pytest.raises(CohortError, match="checked against another"):  # other requests
        Cohort.check(c, n, [*earlier, n])


def _problem(n: int, c: int, d: int, seed: int):
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    model = MLP(c, d, width=0.1).double()
    x = torch.randn(n, d, generator=gen, dtype=F64)
    y = torch.randint(0, c, (n,), generator=gen)
    return model, x, y


@given(
    n_retain=st.integers(1, 6),
    n_forget=st.integers(1, 3),
    c=st.integers(2, 4),
    d=st.integers(1, 4),
    solver=st.sampled_from(["dense", "cg", "param"]),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=25, deadline=None)
def test_the_ntk_step_equals_the_brute_force_for_any_shape(n_retain, n_forget, c, d, solver, seed):
    model, x, y = _problem(n_retain + n_forget, c, d, seed)
    retain, forget = (x[:n_retain], y[:n_retain]), (x[n_retain:], y[n_retain:])
    lin = ntk.Linearization(weight_decay=0.1, anchored=False, dtype=F64)
    opts = ntk.NTKOptions(solver=solver, cg_tol=1e-13, nystrom_rank=0)
    got = ntk.ntk_direction(model, retain, forget, lin, options=opts)
    params = parameters_of(model, F64)
    want, want_retain = reference.dense_delta(model, params, retain, forget, 0.1)
    p = sum(t.numel() for t in params.values())
    assert got.delta.shape == (p,) and got.u_retain.shape == (p,)
    assert got.extras["n_forget"] == n_forget and got.extras["n_retain"] == n_retain
    torch.testing.assert_close(got.delta, want, rtol=1e-7, atol=1e-10)
    torch.testing.assert_close(got.u_retain, want_retain, rtol=1e-7, atol=1e-10)


# every method that takes a standard network; the certified one takes a linearized one
STANDARD_METHODS = methods.PAPER_METHODS + methods.BASELINE_METHODS


def test_the_standard_methods_are_every_method_but_the_certified_one():
    assert set(methods.METHODS) - set(STANDARD_METHODS) == {"certified"}


@given(method=st.sampled_from(STANDARD_METHODS), seed=st.integers(0, 2**16))
@settings(max_examples=14, deadline=None)
def test_every_method_forgets_a_one_sample_cohort(method, seed):
    model, x, y = _problem(8, 3, 4, seed)
    w0 = MLP(3, 4, width=0.1).double()
    cfg = methods.ForgetConfig(
        linearization=ntk.Linearization(dtype=F64),
        train=FinetuneConfig(max_epochs=2),
        finetune_epochs=1,
        newton_max_iter=20,
    )
    # held-out samples of the forgotten sample's class, which scrub_r's stop rule reads
    gen = torch.Generator().manual_seed(seed + 1)
    held_out = (torch.randn(3, 4, generator=gen, dtype=F64), y[:1].repeat(3))
    res = methods.forget(
        method, model, w0, (x[1:], y[1:]), (x[:1], y[:1]), cfg, seed=seed, validation=held_out
    )
    w = flatten(parameters_of(res.model))
    assert w.shape == flatten(parameters_of(model)).shape and torch.isfinite(w).all()


def test_an_empty_cohort_is_refused_by_every_public_entry_point():
    model, x, y = _problem(6, 3, 4, 0)
    lin = ntk.Linearization(anchored=False, dtype=F64)
    with pytest.raises(ValueError, match="forget set is empty"):
        ntk.ntk_direction(model, (x, y), (x[:0], y[:0]), lin)
    with pytest.raises(ValueError, match="empty"):
        forgetbox.scrub(model, pretrained=model, data=(x, y), forget_indices=[])
    with pytest.raises(ValueError, match="empty"):
        forgetbox.scrub(model, pretrained=model, retain=(x, y), forget=(x[:0], y[:0]))
    prep = forgetbox.prepare(model, (x, y), config=methods.ForgetConfig(linearization=lin))
    with pytest.raises(CohortError, match="empty"):
        prep.cohort([])


@given(
    n=st.integers(1, 40),
    shape=st.lists(st.integers(1, 4), min_size=1, max_size=3),
    seed=st.integers(0, 2**16),
    integer=st.booleans(),
)
@settings(max_examples=60, deadline=None)
def test_the_data_hash_is_the_same_streamed_or_in_memory_and_tells_order(n, shape, seed, integer):
    from forgetbox.hashing import data_set_sha256, data_sha256
    from forgetbox.inputs import Rows

    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, *shape, generator=gen)
    if integer:
        x = (x * 50).round().to(torch.int16)
    y = torch.randint(0, 5, (n,), generator=gen)
    digest = data_sha256(x, y, batch=7)
    assert digest == data_sha256(Rows(x.numpy()), y, batch=3)  # streamed, other batches
    perm = torch.randperm(n, generator=gen)
    assert data_set_sha256(x[perm], y[perm]) == data_set_sha256(x, y)
    if not torch.equal(perm, torch.arange(n)) and not torch.equal(x[perm], x):
        assert data_sha256(x[perm], y[perm]) != digest
    changed = x.clone().double() if not integer else x.clone()
    changed.view(-1)[0] += 1
    assert data_sha256(changed, y) != digest and data_set_sha256(changed, y) != data_set_sha256(
        x, y
    )
