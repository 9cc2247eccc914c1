"""Forgetting methods: Fisher against brute force, noise statistics, closed forms."""

from dataclasses import replace

import pytest
import torch

from forgetbox import methods, training
from forgetbox.functional import flatten, model_function, parameters_of
from forgetbox.methods import ForgetConfig, NoiseConfig, registry
from forgetbox.models import MLP
from forgetbox.ntk import Linearization as Lin
from forgetbox.training import FinetuneConfig

from . import cases

F64 = torch.float64


@pytest.fixture
def gen():
    return torch.Generator().manual_seed(0)


def test_fisher_diagonal_matches_per_sample_per_class_brute_force(gen):
    torch.manual_seed(0)
    model = MLP(3, 4, width=0.1).double()
    x = torch.randn(7, 4, generator=gen, dtype=torch.float64)
    f = model_function(model, torch.float64)
    params = parameters_of(model, torch.float64)
    expected = torch.zeros(sum(t.numel() for t in params.values()), dtype=torch.float64)
    for i in range(len(x)):
        for k in range(3):
            p = {n: t.clone().requires_grad_(True) for n, t in params.items()}
            logp = torch.log_softmax(f(p, x[i : i + 1]), -1)[0]
            grads = torch.autograd.grad(logp[k], list(p.values()))
            g = torch.cat([t.reshape(-1) for t in grads])
            expected += logp[k].exp().detach() * g**2
    expected /= len(x)
    got = methods.fisher_diagonal(model, x, chunk=3)
    assert torch.allclose(got, expected, rtol=1e-10, atol=1e-14)


def test_noise_variance_safeguards_by_hand():
    model = MLP(2, 3, width=0.05).double()
    like = parameters_of(model)
    F = torch.linspace(1e-9, 5.0, sum(t.numel() for t in like.values()), dtype=torch.float64)
    cfg = NoiseConfig()
    var = methods.noise_variance(F, like, alpha=1e-3, head="classifier", config=cfg)
    start = 0
    for name, t in like.items():
        Fi = F[start : start + t.numel()].view_as(t)
        cap = cfg.head_cap if name.startswith("classifier.") else cfg.cap
        v = 1e-3 * torch.minimum(1 / (Fi + cfg.floor), torch.tensor(cap, dtype=torch.float64))
        if v.ndim > 1:  # an MLP: the fan-in of each unit is dimension 1
            v = v.mean(1, keepdim=True).expand_as(v)
        if name.startswith("classifier.") or v.ndim == 1:
            v = v * cfg.boost
        assert torch.allclose(var[start : start + t.numel()].view_as(t), v), name
        start += t.numel()


def test_noise_draws_have_the_requested_variance(gen):
    model = MLP(2, 3, width=0.05).double()
    mean = flatten(parameters_of(model))
    var = torch.rand(mean.numel(), generator=gen, dtype=torch.float64) * 1e-2 + 1e-4
    draws = torch.stack(
        [
            flatten(parameters_of(methods.noisy_weights(model, mean, var, gen, ForgetConfig())))
            for _ in range(3000)
        ]
    )
    ratio = draws.var(0) / var
    # the sample variance of 3000 normals has relative sd sqrt(2/2999) = 0.026
    assert (ratio - 1).abs().max() < 6 * (2 / 2999) ** 0.5
    assert (draws.mean(0) - mean).abs().max() < 6 * (var.max() / 3000) ** 0.5


def _linear_problem(gen=None):
    """w0, w(D) at the exact ridge solution on D, D_r, D_f and the ridge solution on D_r."""
    c = cases.make("ridge")
    return c.w0, c.model, c.retain, c.forget, c.target


def _mse(**lin) -> Lin:
    return Lin(loss="mse", dtype=F64, **lin)


def test_newton_on_linear_mse_is_ridge_retrain(gen):
    w0, trained, retain, forget, target = _linear_problem(gen)
    cfg = ForgetConfig(linearization=Lin(loss="mse"), newton_tol=1e-13, newton_max_iter=500)
    res = methods.forget("newton", trained, w0, retain, forget, cfg)
    got = flatten(parameters_of(res.model))
    assert (got - target).norm() / target.norm() < 1e-8


def test_ntk_method_on_linear_mse_is_ridge_retrain(gen):
    w0, trained, retain, forget, target = _linear_problem(gen)
    cfg = ForgetConfig(linearization=_mse(around="pretrained"), use_trapezium=False)
    res = methods.forget("ntk", trained, w0, retain, forget, cfg)
    got = flatten(parameters_of(res.model))
    assert (got - target).norm() / target.norm() < 1e-8
    assert res.scale == 1.0


def test_authors_leg_triples_a_converged_step_and_fig5_leg_keeps_it(gen):
    # At a stationary w(D) the anchored linearization at w(D) has u_D = 0, so the authors' leg
    # m = w(D) - w_lin(D_r) = -delta: the isosceles trapezium predicts ||delta|| + 2 ||delta||.
    # On a linear MSE model the unscaled step is the exact retrain, so the default scrub lands at
    # w(D) + 3 (w(D_r) - w(D)); Fig. 5's leg (m = w(D) - w_lin(D) = 0) leaves the step as it is.
    w0, trained, retain, forget, target = _linear_problem(gen)
    w_d = flatten(parameters_of(trained))
    for leg, want in (("retain", 3.0), ("full", 1.0)):
        cfg = ForgetConfig(linearization=_mse(), trapezium_leg=leg)
        res = methods.forget("ntk", trained, w0, retain, forget, cfg)
        assert res.scale == pytest.approx(want, rel=1e-9), leg
        got = flatten(parameters_of(res.model))
        assert (got - (w_d + want * (target - w_d))).norm() / target.norm() < 1e-8


def test_step_scale_replaces_the_trapezium(gen):
    w0, trained, retain, forget, target = _linear_problem(gen)
    w_d = flatten(parameters_of(trained))
    base = ForgetConfig(linearization=_mse())
    for cfg, want in (
        (replace(base, step_scale=1.5), 1.5),
        (replace(base, step_scale=2.0, use_trapezium=False), 2.0),
        (replace(base, use_trapezium=False), 1.0),
    ):
        res = methods.forget("ntk", trained, w0, retain, forget, cfg)
        assert res.scale == want
        got = flatten(parameters_of(res.model))
        assert (got - (w_d + want * (target - w_d))).norm() / target.norm() < 1e-8
    assert base.key()["step_scale"] is None
    assert replace(base, step_scale=1.5).key()["step_scale"] == 1.5
    for bad, msg in ((0.0, "must be > 0"), (float("nan"), "is nan"), ("2", "must be a number")):
        with pytest.raises(ValueError, match=msg):
            ForgetConfig(step_scale=bad)


def test_finetune_and_retrain_never_see_the_forget_set(gen, monkeypatch):
    torch.manual_seed(0)
    w0 = MLP(3, 4, width=0.1)
    x = torch.randn(20, 4, generator=gen)
    y = torch.randint(0, 3, (20,), generator=gen)
    retain, forget_set = (x[5:], y[5:]), (x[:5], y[:5])
    seen = []
    real = registry.finetune

    def spy(model, xs, ys, *args, **kwargs):
        seen.append(xs.clone())
        return real(model, xs, ys, *args, **kwargs)

    monkeypatch.setattr(registry, "finetune", spy)
    cfg = ForgetConfig(train=FinetuneConfig(max_epochs=3), finetune_epochs=2)
    for m in ("finetune", "retrain"):
        methods.forget(m, w0, w0, retain, forget_set, cfg)
    assert len(seen) == 2
    for xs in seen:
        assert len(xs) == 15
        dist = torch.cdist(xs.flatten(1), forget_set[0].flatten(1))
        assert dist.min() > 0  # no forget sample is among the data used


def test_noisy_methods_are_seeded_and_differ_across_seeds(gen):
    torch.manual_seed(0)
    model = MLP(3, 4, width=0.1)
    x = torch.randn(12, 4, generator=gen)
    y = torch.randint(0, 3, (12,), generator=gen)
    cfg = ForgetConfig(alpha=1e-4)
    a = methods.forget("fisher", model, model, (x[2:], y[2:]), (x[:2], y[:2]), cfg, seed=1)
    b = methods.forget("fisher", model, model, (x[2:], y[2:]), (x[:2], y[:2]), cfg, seed=1)
    c = methods.forget("fisher", model, model, (x[2:], y[2:]), (x[:2], y[:2]), cfg, seed=2)
    wa, wb, wc = (flatten(parameters_of(r.model)) for r in (a, b, c))
    assert torch.equal(wa, wb)
    assert not torch.equal(wa, wc)
    assert a.noise_variance is not None and a.info["alpha"] == 1e-4


def test_whole_class_forgetting_zeroes_head_row(gen):
    torch.manual_seed(0)
    model = MLP(3, 4, width=0.1)
    x = torch.randn(12, 4, generator=gen)
    y = torch.randint(0, 3, (12,), generator=gen)
    cfg = ForgetConfig(alpha=1e-6, forgotten_class=1)
    res = methods.forget("fisher", model, model, (x, y), (x[:1], y[:1]), cfg, seed=0)
    row = res.model.classifier.weight[1]
    assert row.abs().max() < 10 * 1e-2  # mean 0, sd 1e-2
    assert not torch.allclose(row, model.classifier.weight[1])


def test_finetune_baseline_ignores_the_training_schedule():

    torch.manual_seed(0)
    model, w0 = MLP(3, 4, width=0.2), MLP(3, 4, width=0.2)
    x, y = torch.randn(12, 4), torch.randint(0, 3, (12,))
    base = ForgetConfig(finetune_epochs=3)
    got = [
        flatten(
            parameters_of(
                methods.forget(
                    "finetune",
                    model,
                    w0,
                    (x, y),
                    (x[:2], y[:2]),
                    replace(base, train=FinetuneConfig(lr_schedule=s)),
                ).model
            )
        )
        for s in ("constant", "cosine")
    ]
    assert torch.equal(got[0], got[1])
    assert not torch.equal(got[0], flatten(parameters_of(model)))


def test_trapezium_leg_choices():
    from forgetbox import ntk

    torch.manual_seed(1)
    model, w0 = MLP(3, 4, width=0.2).double(), MLP(3, 4, width=0.2).double()
    x, y = torch.randn(10, 4, dtype=torch.float64), torch.randint(0, 3, (10,))
    retain, forget = (x[2:], y[2:]), (x[:2], y[:2])
    cfg = ForgetConfig(linearization=Lin(dtype=F64))
    step = methods.ntk_step(model, w0, retain, forget, cfg)
    w_d = flatten(parameters_of(model))
    w_lin_r = step.around + step.u_retain
    for leg, w_lin in (("retain", w_lin_r), ("full", w_lin_r - step.delta)):
        c = replace(cfg, trapezium_leg=leg)
        _, _, scale, _ = methods.ntk_point(model, w0, retain, forget, c, direction=step)
        want = ntk.trapezium(step.delta, w_full=w_d, w_lin=w_lin).scale
        assert scale == pytest.approx(want, rel=1e-12)
    scales = [
        methods.ntk_point(
            model, w0, retain, forget, replace(cfg, trapezium_leg=leg), direction=step
        )[2]
        for leg in ("retain", "full")
    ]
    assert abs(scales[0] - scales[1]) > 1e-6
    with pytest.raises(ValueError, match="trapezium_leg"):
        methods.ntk_point(
            model, w0, retain, forget, replace(cfg, trapezium_leg="side"), direction=step
        )


def test_retraining_uses_the_linearizations_weight_decay(gen, monkeypatch):
    """Regression (issue 28): ``ForgetConfig`` held two weight decays, so ``retrain`` with a
    linearization at 0.05 trained at 0.1. The recipe now derives its lambda: the retrained
    model equals fine-tuning at 0.05 bit for bit, and differs from fine-tuning at 0.1."""
    torch.manual_seed(0)
    w0 = MLP(3, 4, width=0.1)
    x, y = torch.randn(20, 4, generator=gen), torch.randint(0, 3, (20,), generator=gen)
    retain, forget_set = (x[5:], y[5:]), (x[:5], y[:5])
    recipe = FinetuneConfig(max_epochs=3)
    cfg = ForgetConfig(linearization=Lin(weight_decay=0.05), train=recipe)
    assert cfg.train.weight_decay == 0.05
    got = flatten(parameters_of(methods.forget("retrain", w0, w0, retain, forget_set, cfg).model))

    def trained_at(lam):
        model = training.finetune(
            w0, *retain, replace(recipe, weight_decay=lam), seed=0, anchor=w0, desc="x"
        ).model
        return flatten(parameters_of(model))

    assert torch.equal(got, trained_at(0.05))
    assert not torch.equal(got, trained_at(0.1))
    with pytest.raises(ValueError, match="train.weight_decay=0.2 conflicts with linearization"):
        ForgetConfig(linearization=Lin(weight_decay=0.05), train=FinetuneConfig(weight_decay=0.2))
    moved = cfg.replace(linearization=Lin(weight_decay=0.2))
    assert moved.train.weight_decay == 0.2 and moved.train.max_epochs == 3
