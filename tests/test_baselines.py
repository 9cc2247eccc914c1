"""The baselines of issue 33 (NegGrad+, SCRUB, SCRUB+R, SalUn, l1-sparse): each on a small
trained digits MLP (finite, D_r kept, D_f moved where the method intends it, seeded), their
settings refused when bad, and each core update against a hand-computed step on a linear
model (float64, tests/cases.py)."""

import argparse
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from forgetbox import data, methods, models, training
from forgetbox.cli.settings_flags import add_forget_flags, forget_config
from forgetbox.evaluation.config import EvaluateConfig
from forgetbox.evaluation.run import evaluated_methods
from forgetbox.experiment.config import ExperimentConfig
from forgetbox.functional import flatten, parameters_of
from forgetbox.methods import (
    BASELINE_METHODS,
    PAPER_METHODS,
    ForgetConfig,
    L1SparseConfig,
    NegGradConfig,
    SalUnConfig,
    ScrubConfig,
    scrub_teacher,
)
from forgetbox.methods import salun as salun_module
from forgetbox.methods.l1_sparse import l1_gamma, l1_norm
from forgetbox.methods.registry import METHOD_TABLE
from forgetbox.methods.unlearning import Student, sgd

from . import cases

FORGET = torch.tensor([0, 3, 5, 8, 13, 21, 34, 55])
# how much D_r error each baseline may add to the original's (fraction of D_r); SalUn's random
# labels cost D_r accuracy on a 100-image problem (10 % measured), the others nothing measurable
RETAIN_SLACK = {
    "neggrad_plus": 0.05,
    "scrub": 0.05,
    "scrub_r": 0.05,
    "salun": 0.25,
    "l1_sparse": 0.05,
}
# the methods that intend to raise the D_f loss (l1-sparse trains on D_r only)
ASCENDS = ("neggrad_plus", "scrub", "scrub_r", "salun")


@pytest.fixture(scope="module")
def problem():
    """A digits MLP (0-4, 20 images per class) fine-tuned to zero training error, w0 its
    initialisation, a cohort of 8 images, and the split's validation set."""
    split = data.digits_split(seed=0, train_per_class=20, val_per_class=10)
    w0 = models.build_model("mlp", num_classes=5, input_shape=(1, 8, 8), generator_seed=0)
    recipe = training.FinetuneConfig(lr=0.05, max_epochs=100, batch_size=32, weight_decay=0.01)
    model = training.finetune(w0, split.x_train, split.y_train, recipe, seed=0).model
    keep = torch.ones(len(split.y_train), dtype=torch.bool)
    keep[FORGET] = False
    retain = split.x_train[keep], split.y_train[keep]
    forget = split.x_train[FORGET], split.y_train[FORGET]
    return model, w0, retain, forget, (split.x_val, split.y_val)


def _run(problem, method, config=None, seed=0):
    model, w0, retain, forget, validation = problem
    return methods.forget(
        method, model, w0, retain, forget, config, seed=seed, validation=validation
    )


def _flat(model):
    return flatten(parameters_of(model))


@pytest.fixture(scope="module")
def results(problem):
    return {m: _run(problem, m) for m in BASELINE_METHODS}


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_baseline_keeps_d_r_and_moves_d_f(problem, results, method):
    model, _, retain, forget, _ = problem
    before = _flat(model).clone()
    res = results[method]
    w = _flat(res.model)
    assert torch.isfinite(w).all() and not torch.equal(w, before)
    assert torch.equal(_flat(model), before)  # w(D) itself is never modified
    err_r0, _ = training.evaluate(model, *retain)
    err_r, _ = training.evaluate(res.model, *retain)
    assert err_r0 == 0.0 and err_r <= err_r0 + RETAIN_SLACK[method]
    if method in ASCENDS:
        assert training.evaluate(res.model, *forget)[1] > training.evaluate(model, *forget)[1]
    assert res.method == method and res.seconds > 0


@pytest.mark.parametrize("method", BASELINE_METHODS)
def test_baseline_is_seeded(problem, results, method):
    again = _flat(_run(problem, method).model)
    assert torch.equal(again, _flat(results[method].model))
    assert not torch.equal(_flat(_run(problem, method, seed=1).model), again)


def test_l1_sparse_shrinks_the_l1_norm(problem):
    cfg = ForgetConfig(l1_sparse=L1SparseConfig(gamma=1e-2))
    none = ForgetConfig(l1_sparse=L1SparseConfig(gamma=0.0))
    norm = [l1_norm(list(_run(problem, "l1_sparse", c).model.parameters())) for c in (cfg, none)]
    assert norm[0] < norm[1]


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: NegGradConfig(beta=1.5), "neggrad.beta must be <= 1"),
        (lambda: NegGradConfig(epochs=0), "neggrad.epochs must be an integer >= 1"),
        (lambda: NegGradConfig(lr=0.0), "neggrad.lr must be > 0"),
        (lambda: NegGradConfig(momentum=1.0), "neggrad.momentum must be < 1"),
        (lambda: NegGradConfig(forget_batch=0), "neggrad.forget_batch"),
        (lambda: NegGradConfig(decay_anchor="w1"), "neggrad.decay_anchor must be one of"),
        (lambda: ScrubConfig(max_steps=11), "scrub.max_steps must be <= scrub.epochs"),
        (lambda: ScrubConfig(temperature=0.0), "scrub.temperature must be > 0"),
        (lambda: ScrubConfig(kl_weight=0.0, ce_weight=0.0), "both 0"),
        (lambda: ScrubConfig(lr_decay_epochs=(5, 5)), "scrub.lr_decay_epochs must increase"),
        (lambda: ScrubConfig(lr_decay=0.0), "scrub.lr_decay must be > 0"),
        (lambda: ScrubConfig(optimizer="lbfgs"), "scrub.optimizer must be one of"),
        (lambda: ScrubConfig(weight_decay=float("nan")), "scrub.weight_decay is nan"),
        (lambda: SalUnConfig(mask_fraction=0.0), "salun.mask_fraction must be > 0"),
        (lambda: SalUnConfig(mask_fraction=1.2), "salun.mask_fraction must be <= 1"),
        (lambda: SalUnConfig(retain_weight=-1.0), "salun.retain_weight must be >= 0"),
        (lambda: L1SparseConfig(gamma=-1e-4), "l1_sparse.gamma must be >= 0"),
        (lambda: L1SparseConfig(batch_size=2.5), "l1_sparse.batch_size"),
    ],
)
def test_bad_settings_are_refused_naming_the_field(make, match):
    with pytest.raises(ValueError, match=match) as info:
        make()
    assert "\n" not in str(info.value)


def test_a_forget_config_holds_the_baseline_settings_whole():
    with pytest.raises(TypeError, match="scrub must be a forgetbox.methods.ScrubConfig"):
        ForgetConfig(scrub={"lr": 0.1})
    with pytest.raises(ValueError, match="salun needs a non-empty forget set"):
        c = cases.make("linear")
        methods.forget("salun", c.model, c.w0, c.retain, (c.x[:0], c.y[:0]))


def test_scrub_r_needs_a_validation_set_with_d_fs_classes(problem):
    model, w0, retain, forget, (x_v, y_v) = problem
    with pytest.raises(ValueError, match="scrub_r needs a validation set"):
        methods.forget("scrub_r", model, w0, retain, forget)
    no_class_0 = (x_v[y_v != 0], y_v[y_v != 0])
    with pytest.raises(ValueError, match="no example of class 0"):
        methods.forget("scrub_r", model, w0, retain, forget, validation=no_class_0)


# -- hand-computed steps on a linear model (float64)


def _ce_grad(model, x, y):
    """The gradient of the mean cross-entropy of a LinearModel, flat (weight, then bias)."""
    X = x.flatten(1)
    P = torch.softmax(X @ model.classifier.weight.T + model.classifier.bias, 1)
    R = (P - F.one_hot(y, P.shape[1]).double()) / len(X)
    return torch.cat([(R.T @ X).reshape(-1), R.sum(0)])


def _kl_grad(student, teacher, x, T):
    """The gradient of T^2 KL(p_t(z/T) || p_s(z/T)) (batch mean) in the student's weights."""
    X = x.flatten(1)
    z = {m: X @ m.classifier.weight.T + m.classifier.bias for m in (student, teacher)}
    R = T * (torch.softmax(z[student] / T, 1) - torch.softmax(z[teacher] / T, 1)) / len(X)
    return torch.cat([(R.T @ X).reshape(-1), R.sum(0)])


def test_one_neggrad_plus_step_is_the_explicit_gradient_step():
    c = cases.make("linear")
    cfg = NegGradConfig(
        epochs=1,
        lr=0.1,
        beta=0.7,
        weight_decay=0.3,
        decay_anchor="pretrained",
        retain_batch=len(c.retain[0]),
        forget_batch=len(c.forget[0]),
    )
    res = methods.forget(
        "neggrad_plus", c.model, c.w0, c.retain, c.forget, ForgetConfig(neggrad=cfg)
    )
    w, a = _flat(c.model), _flat(c.w0)
    g = 0.7 * (_ce_grad(c.model, *c.retain) + 0.3 * (w - a)) - 0.3 * _ce_grad(c.model, *c.forget)
    assert torch.allclose(_flat(res.model), w - 0.1 * g, rtol=1e-12, atol=1e-14)
    assert res.info["neggrad_plus"]["steps"] == 1


def test_distill_kl_is_the_tempered_kl_times_t_squared():
    gen = torch.Generator().manual_seed(0)
    s, t = torch.randn(6, 4, generator=gen, dtype=torch.float64), torch.randn(6, 4, generator=gen)
    want = (
        F.kl_div(F.log_softmax(s / 3, 1), F.softmax(t.double() / 3, 1), reduction="batchmean") * 9
    )
    assert torch.allclose(scrub_teacher.distill_kl(s, t.double(), 3.0), want, rtol=1e-12)
    assert scrub_teacher.distill_kl(s, s, 3.0).abs() < 1e-14


def test_one_scrub_min_step_and_max_step_by_hand():
    c = cases.make("linear")
    cfg = ScrubConfig(temperature=2.5, kl_weight=0.4, ce_weight=0.8)
    for kind in ("min", "max"):
        st = Student.of(c.model, c.w0, decay="zero", lam=0.05, optimizer=sgd(0.2, 0.0))
        w = _flat(c.model)
        x, y = c.retain
        d = _kl_grad(c.model, c.w0, x, 2.5)  # the student starts at w(D); teacher: another model
        if kind == "min":
            scrub_teacher.min_step(st, c.w0, x, y, cfg)
            g = 0.8 * _ce_grad(c.model, x, y) + 0.4 * d
        else:
            scrub_teacher.max_step(st, c.w0, x, cfg)
            g = -d
        assert torch.allclose(_flat(st.model), w - 0.2 * (g + 0.05 * w), rtol=1e-12, atol=1e-14)


def test_scrub_schedule_max_then_min_then_min_only(monkeypatch):
    c = cases.make("linear")
    calls = []

    def record(kind):
        return lambda st, *args: calls.append((kind, st.optimizer.param_groups[0]["lr"]))

    monkeypatch.setattr(scrub_teacher, "max_step", record("max"))
    monkeypatch.setattr(scrub_teacher, "min_step", record("min"))
    cfg = ScrubConfig(lr=1.0, lr_decay=0.5)  # 10 epochs, 3 max, decay after 5, 8, 9
    scrub_teacher.scrub_student(c.model, c.w0, c.retain, c.forget, cfg, seed=0)
    lrs = [1.0] * 5 + [0.5] * 3 + [0.25, 0.125]
    want = [s for e, lr in enumerate(lrs) for s in ([("max", lr)] if e < 3 else []) + [("min", lr)]]
    assert calls == want  # one batch of D_f (5 <= 64) and of D_r (19 <= 32) per epoch


def test_rewind_picks_the_epoch_closest_to_the_reference_earlier_on_ties():
    assert scrub_teacher.rewind_epoch([0.0, 0.25, 0.75, 0.5], 0.375) == 1
    assert scrub_teacher.rewind_epoch([0.5, 0.0, 0.0], 0.0) == 1
    assert scrub_teacher.rewind_epoch([0.0, 0.125, 0.5], 0.625) == 2
    assert scrub_teacher.rewind_epoch([0.3, 0.1, 0.2], 0.19) == 2


def test_class_matched_error_weights_each_class_by_its_share_of_d_f():
    class Table(torch.nn.Module):  # logits looked up by the row index held in x
        def __init__(self, logits):
            super().__init__()
            self.logits = torch.nn.Parameter(logits)

        def forward(self, x):
            return self.logits[x[:, 0].long()]

    y_v = torch.tensor([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = torch.tensor([0, 0, 0, 1, 1, 0, 2, 2])  # class 0: 1/4 wrong, 1: 1/2, 2: 0
    model = Table(F.one_hot(predicted, 3).float())
    x_v = torch.arange(8.0)[:, None]
    got = scrub_teacher.class_matched_error(model, (x_v, y_v), torch.tensor([0, 0, 0, 1]))
    assert got == pytest.approx(0.75 * 0.25 + 0.25 * 0.5)


def test_scrub_r_returns_scrub_stopped_at_the_rewound_epoch(problem):
    model, w0, retain, forget, validation = problem
    cfg = ScrubConfig(lr=2e-3, max_steps=4, epochs=6, lr_decay_epochs=(4,))
    res = _run(problem, "scrub_r", ForgetConfig(scrub=cfg))
    k = res.info["scrub_r"]["rewound_to_epoch"]
    assert 1 <= k < cfg.epochs  # here the rewind matters (2: the D_f error jumps at epoch 3)
    short = replace(cfg, epochs=k, max_steps=min(cfg.max_steps, k))
    assert torch.equal(
        _flat(res.model), _flat(_run(problem, "scrub", ForgetConfig(scrub=short)).model)
    )


def test_saliency_mask_selects_exactly_the_top_fraction_by_gradient_magnitude():
    gen = torch.Generator().manual_seed(0)
    grads = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
    mask = salun_module.saliency_mask(grads, 0.3)
    flat_m = torch.cat([m.reshape(-1) for m in mask])
    flat_g = torch.cat([g.reshape(-1) for g in grads]).abs()
    assert flat_m.sum() == int(17 * 0.3) and set(flat_m.tolist()) <= {0.0, 1.0}
    assert flat_g[flat_m == 1].min() > flat_g[flat_m == 0].max()
    tied = salun_module.saliency_mask([torch.ones(2, 3)], 0.5)[0].reshape(-1)
    assert tied.tolist() == [1, 1, 1, 0, 0, 0]  # ties: the earlier entries
    with pytest.raises(ValueError, match="selects no weight"):
        salun_module.saliency_mask(grads, 0.01)


def test_salun_mask_comes_from_the_forget_gradient_and_freezes_the_rest():
    c = cases.make("linear")
    grads = salun_module.forget_gradient(c.model, c.forget, chunk=2)
    assert torch.allclose(torch.cat([g.reshape(-1) for g in grads]), _ce_grad(c.model, *c.forget))
    mask = torch.cat([m.reshape(-1) for m in salun_module.saliency_mask(grads, 0.5)]).bool()
    res = methods.forget("salun", c.model, c.w0, c.retain, c.forget, seed=3)
    w, w_d = _flat(res.model), _flat(c.model)
    assert torch.equal(w[~mask], w_d[~mask])
    assert (w[mask] != w_d[mask]).all()


def test_random_labels_are_always_another_class_and_reach_every_other_class():
    y = torch.arange(5).repeat(200)
    new = salun_module.random_labels(y, 5, torch.Generator().manual_seed(0))
    assert (new != y).all() and new.min() >= 0 and new.max() <= 4
    assert len(set(zip(y.tolist(), new.tolist(), strict=True))) == 20


def test_l1_penalty_gradient_is_gamma_sign_w():
    w = torch.tensor([[-2.0, 0.0, 0.5], [3.0, -0.1, 0.0]], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([0.7, -0.3], dtype=torch.float64, requires_grad=True)
    gw, gb = torch.autograd.grad(0.01 * l1_norm([w, b]), [w, b])
    assert torch.equal(gw, 0.01 * torch.sign(w.detach())) and torch.equal(
        gb, 0.01 * torch.sign(b.detach())
    )
    assert [l1_gamma(L1SparseConfig(epochs=4, gamma=0.2), t) for t in range(4)] == pytest.approx(
        [0.2, 0.15, 0.1, 0.05]
    )


def test_one_l1_sparse_step_is_the_explicit_gradient_step():
    c = cases.make("linear")
    cfg = L1SparseConfig(
        epochs=1, lr=0.05, gamma=0.01, momentum=0.0, weight_decay=0.02, batch_size=len(c.retain[0])
    )
    res = methods.forget(
        "l1_sparse", c.model, c.w0, c.retain, c.forget, ForgetConfig(l1_sparse=cfg)
    )
    w = _flat(c.model)
    g = _ce_grad(c.model, *c.retain) + 0.01 * torch.sign(w) + 0.02 * w
    assert torch.allclose(_flat(res.model), w - 0.05 * g, rtol=1e-12, atol=1e-14)


# -- wiring: the registry, cache keys, the run and evaluate checks, the flags


def test_baselines_are_methods_but_not_the_papers():
    for m in BASELINE_METHODS:
        member = methods.Method(m)
        assert member in METHOD_TABLE and member.__doc__ and m not in PAPER_METHODS


def test_a_methods_cache_key_holds_only_its_own_baseline_settings():
    cfg = ForgetConfig()
    own = ("neggrad", "scrub", "salun", "l1_sparse")
    assert not set(own) & set(cfg.key()) and not set(own) & set(cfg.key("ntk"))
    assert set(own) & set(cfg.key("scrub_r")) == {"scrub"}
    assert set(own) & set(cfg.key("salun")) == {"salun"}
    changed = cfg.replace(salun=SalUnConfig(lr=0.1))
    assert changed.key("ntk") == cfg.key("ntk") and changed.key("salun") != cfg.key("salun")


def test_run_and_evaluate_accept_the_baselines_with_standard_fine_tuning_only():
    cfg = ExperimentConfig(methods=("salun", "scrub_r")).resolved()
    assert cfg.methods == ("original", "retrain", "salun", "scrub_r")
    assert ExperimentConfig().resolved().methods == PAPER_METHODS
    with pytest.raises(ValueError, match="do not apply with linearized"):
        ExperimentConfig(methods=("salun",), linearized=True).resolved()
    ev = evaluated_methods(ExperimentConfig(), EvaluateConfig(methods=("neggrad_plus",)))
    assert ev.methods == ("neggrad_plus", "retrain")
    assert "salun" not in evaluated_methods(ExperimentConfig(), EvaluateConfig()).methods
    with pytest.raises(ValueError, match="do not apply with linearized"):
        evaluated_methods(ExperimentConfig(linearized=True), EvaluateConfig(methods=("scrub",)))


def test_flags_set_the_baseline_settings_and_are_stated_by_group():
    p = argparse.ArgumentParser()
    add_forget_flags(p)
    args = p.parse_args(["--neggrad-beta", "0.5", "--scrub-optimizer", "sgd", "--l1-gamma", "0"])
    cfg, stated = forget_config(args)
    assert cfg.neggrad.beta == 0.5 and cfg.scrub.optimizer == "sgd" and cfg.l1_sparse.gamma == 0
    assert cfg.salun == SalUnConfig() and cfg.linearization == ForgetConfig().linearization
    assert stated == {"neggrad.beta", "scrub.optimizer", "l1_sparse.gamma"}


def test_forgetbox_run_times_every_baseline_and_gives_scrub_r_the_validation_set(tmp_path):
    from forgetbox import experiment

    cfg = ExperimentConfig(
        out=str(tmp_path),
        profile="quick",
        seeds=(0,),
        train_per_class=10,
        num_to_forget=5,
        methods=BASELINE_METHODS,
    )
    res = experiment.run_experiment(cfg, log=lambda s: 0)
    for m in BASELINE_METHODS:
        row = res["methods"][m]["per_seed"][0]
        assert row["seconds"] > 0 and 0 <= row["error_retain"] <= 1
    assert (tmp_path / "report.html").exists()


def test_a_method_that_diverges_is_refused_in_one_line(problem):
    # NegGrad+ ascends the D_f loss: at an absurd rate the weights overflow
    config = ForgetConfig(neggrad=NegGradConfig(lr=1e6, epochs=3, retain_batch=4))
    with pytest.raises(ValueError, match="neggrad_plus: the weights are not finite"):
        _run(problem, "neggrad_plus", config)
