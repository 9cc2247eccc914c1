"""``preset = "authors"``: the authors' notebook choices, each checked in float64 against the
formulas of ``shared/REFERENCE-NOTES.md`` computed here by brute force (per-sample autograd
Jacobians, per-sample per-class Fisher loops, hand-written SGD steps)."""

import copy
import math
import tomllib

import pytest
import torch
import torch.nn.functional as F
from torch.func import functional_call

import forgetbox
from forgetbox import data, methods, readouts
from forgetbox.cli.experiment_args import read_toml
from forgetbox.experiment import ExperimentConfig
from forgetbox.experiment.config import config_from_dict
from forgetbox.experiment.stages import Stages
from forgetbox.experiment.tasks import Task
from forgetbox.functional import flatten, parameters_of, unflatten
from forgetbox.methods import ForgetConfig
from forgetbox.methods.baseline_config import ScrubConfig
from forgetbox.report import config_toml


def _logits(model, w, x):
    return functional_call(model, unflatten(w, parameters_of(model)), (x,))


def _jacobian(model, w, x):
    """``(n c, p)``, sample-major: one autograd call per sample."""
    rows = [
        torch.autograd.functional.jacobian(lambda v, xi=xi: _logits(model, v, xi[None])[0], w)
        for xi in x
    ]
    return torch.cat(rows)


def _u(model, w, x, y, lam):
    """The authors' unanchored linear solution ``-G Theta^-1 r`` at ``w``."""
    J = _jacobian(model, w, x)
    with torch.no_grad():
        r = (torch.softmax(_logits(model, w, x), 1) - F.one_hot(y, J.shape[0] // len(x))).reshape(
            -1
        )
    theta = J @ J.T + len(x) * lam * torch.eye(len(J), dtype=torch.float64)
    return -J.T @ torch.linalg.solve(theta, r)


def _fisher(model, w, x):
    """Per sample, every class k: p_k times the squared gradient of the loss with label k."""
    total = torch.zeros_like(w)
    for xi in x:
        with torch.no_grad():
            p = torch.softmax(_logits(model, w, xi[None])[0], 0)
        for k in range(len(p)):
            v = w.clone().requires_grad_(True)
            loss = F.cross_entropy(_logits(model, v, xi[None]), torch.tensor([k]))
            (g,) = torch.autograd.grad(loss, v)
            total += p[k] * g**2
    return total / len(x)


def _authors_variance(model, fisher, alpha, num_classes):
    """min(1/(F+1e-8), cap) * alpha (cap 1e2 where the first dimension is the class count,
    1e3 else), averaged over dimension 1 only, then x10 for the last layer and 1-D tensors."""
    out = []
    for name, f in unflatten(fisher, parameters_of(model)).items():
        last = f.shape[0] == num_classes and name.startswith("classifier")
        v = torch.clamp(1 / (f + 1e-8), max=1e2 if last else 1e3) * alpha
        if v.ndim > 1:
            v = v.mean(1, keepdim=True).expand_as(v)
        if last or v.ndim == 1:
            v = v * 10
        out.append(v.reshape(-1))
    return torch.cat(out)


@pytest.fixture(scope="module")
def problem(trained):
    _, model, w0, split = trained
    m64, w64 = copy.deepcopy(model).double(), copy.deepcopy(w0).double()
    idx = torch.tensor([0, 3, 5, 8])
    keep = data.retain_mask(len(split.y_train), idx)
    x = split.x_train.double()
    return m64, w64, (x[keep], split.y_train[keep]), (x[idx], split.y_train[idx])


def test_authors_preset_scrub_matches_their_formulas(problem):
    m64, w64, retain, forget = problem
    lam, alpha = 0.1, 1e-9
    res = forgetbox.scrub(
        m64, pretrained=w64, retain=retain, forget=forget, seed=3, config=ForgetConfig.authors()
    )
    w_d, w_0 = flatten(parameters_of(m64)), flatten(parameters_of(w64))
    xd, yd = torch.cat([retain[0], forget[0]]), torch.cat([retain[1], forget[1]])
    u_r = _u(m64, w_d, *retain, lam)
    delta = u_r - _u(m64, w_d, xd, yd, lam)
    # the authors' trapezium: m = (w(D) - w0) - u_{D_r}, the angle theta between delta and m
    m = (w_d - w_0) - u_r
    theta = math.acos((delta @ m / (delta.norm() * m.norm())).item())
    if math.cos(theta) < 0:
        length = delta.norm() + 2 * math.sin(theta - math.pi / 2) * m.norm()
    else:
        length = delta.norm() + 2 * math.cos(theta) * m.norm()
    scale = (length / delta.norm()).item()
    assert res.scale == pytest.approx(scale, rel=1e-9)
    assert scale > 1.01  # the rescaling does something here
    assert ((res.delta - scale * delta).norm() / (scale * delta).norm()).item() < 1e-8
    # the noise: the brute-force Fisher at the scrubbed point, averaged over input channels
    mean = w_d + res.delta
    var = _authors_variance(m64, _fisher(m64, mean, retain[0]), alpha, 5)
    assert ((res.noise_variance - var).norm() / var.norm()).item() < 1e-8
    fan_in = forgetbox.scrub(m64, pretrained=w64, retain=retain, forget=forget, seed=3)
    assert ((fan_in.noise_variance - var).norm() / var.norm()).item() > 1e-3  # they differ
    noise = torch.randn(len(w_d), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    got = flatten(parameters_of(res.model))
    assert ((got - (mean + var.sqrt() * noise)).norm() / got.norm()).item() < 1e-10


def test_the_first_convolution_with_one_input_channel_is_not_averaged(problem):
    m64, *_ = problem
    like = parameters_of(m64)
    fisher = torch.rand(sum(t.numel() for t in like.values()), dtype=torch.float64) + 0.1
    cfg = methods.NoiseConfig(average="input_channels")
    var = unflatten(
        methods.noise_variance(fisher, like, alpha=1.0, head="classifier", config=cfg), like
    )
    first = next(n for n, t in like.items() if t.ndim == 4)
    assert like[first].shape[1] == 1
    want = 1 / (unflatten(fisher, like)[first] + 1e-8)
    torch.testing.assert_close(var[first], want, rtol=1e-12, atol=0)


def test_authors_finetune_baseline_pulls_toward_its_start(problem):
    """One epoch (one batch: |D_r| < 128) of plain SGD from w(D): the pull toward the start is
    zero at the first step, so the step is the bare cross-entropy gradient."""
    m64, w64, retain, forget = problem
    cfg = ForgetConfig.authors(finetune_epochs=1, finetune_lr=0.01)
    res = methods.forget("finetune", m64, w64, retain, forget, cfg, seed=0)
    w_d = flatten(parameters_of(m64)).requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(_logits(m64, w_d, retain[0]), retain[1]), w_d)
    want = w_d.detach() - 0.01 * g
    torch.testing.assert_close(flatten(parameters_of(res.model)), want, rtol=0, atol=1e-12)
    ours = methods.forget("finetune", m64, w64, retain, forget, ForgetConfig(finetune_epochs=1))
    w_0 = flatten(parameters_of(w64))
    pulled = want - 0.01 * 0.1 * (w_d.detach() - w_0)  # forgetbox: the pull toward w0
    torch.testing.assert_close(flatten(parameters_of(ours.model)), pulled, rtol=0, atol=1e-12)


def test_authors_relearn_time_pulls_toward_its_start_and_counts_from_one(problem):
    m64, _, retain, forget = problem
    xd, yd = torch.cat([retain[0], forget[0]]), torch.cat([retain[1], forget[1]])
    loss_f = readouts.error_and_loss(m64, *forget)[1]
    kw = dict(threshold=loss_f + 1.0, max_epochs=5, seed=0)  # already below the threshold
    assert readouts.relearn_time(m64, xd, yd, *forget, **kw).epochs == 0
    authors = dict(weight_decay=0.1, check_before_training=False)
    assert readouts.relearn_time(m64, xd, yd, *forget, **kw, **authors).epochs == 1
    # two SGD steps by hand (64 samples drawn with replacement, batches of 32): the pull
    # (0.1/2)||w - w_start||^2 acts from the second step on
    rl = readouts.relearn_time(
        m64,
        xd,
        yd,
        *forget,
        threshold=-1.0,
        max_epochs=1,
        seed=7,
        samples_per_epoch=64,
        batch_size=32,
        **authors,
    )
    idx = torch.randint(0, len(xd), (64,), generator=torch.Generator().manual_seed(7))
    w = flatten(parameters_of(m64))
    start = w.clone()
    for b in (idx[:32], idx[32:]):
        v = w.clone().requires_grad_(True)
        loss = F.cross_entropy(_logits(m64, v, xd[b]), yd[b]) + 0.05 * ((v - start) ** 2).sum()
        (g,) = torch.autograd.grad(loss, v)
        w = w - 0.01 * g
    with torch.no_grad():
        want = F.cross_entropy(_logits(m64, w, forget[0]), forget[1]).item()
    assert rl.epochs == 1 and rl.losses == pytest.approx([want], rel=1e-10)


def test_the_run_preset_fills_every_choice_and_flags_override():
    cfg = ExperimentConfig(preset="authors").resolved()
    assert (cfg.anchored, cfg.noise_average, cfg.finetune_anchor) == (
        False,
        "input_channels",
        "start",
    )
    assert (cfg.relearn_weight_decay, cfg.relearn_check_before, cfg.retrain_duplicates) == (
        0.1,
        False,
        True,
    )
    assert cfg.finetune_baseline_lr == 0.01
    mixed = ExperimentConfig(preset="authors", anchored=True, profile="cpu").resolved()
    assert mixed.anchored is True and mixed.noise_average == "input_channels"
    assert mixed.finetune_baseline_lr == 0.01  # the preset's, not the cpu profile's 0.003
    default = ExperimentConfig().resolved()
    assert (default.anchored, default.noise_average, default.retrain_duplicates) == (
        True,
        "fan_in",
        False,
    )
    with pytest.raises(ValueError, match="preset"):
        ExperimentConfig(preset="paper")


def test_the_authors_retrain_data_keeps_d_size_with_duplicates_of_retained_samples():
    split = data.digits_split(seed=0, train_per_class=12, val_per_class=5)
    idx = torch.tensor([0, 3, 5, 8])
    task = Task(split, idx)
    x, y = task.retain_with_duplicates(seed=1)
    xr, yr = task.retain
    assert len(x) == len(split.y_train)
    assert torch.equal(x[: len(xr)], xr) and torch.equal(y[: len(yr)], yr)
    flat_r = {tuple(r.tolist()) for r in xr.flatten(1)}
    assert all(tuple(r.tolist()) in flat_r for r in x[len(xr) :].flatten(1))
    flat_f = {tuple(r.tolist()) for r in split.x_train[idx].flatten(1)}
    assert not any(tuple(r.tolist()) in flat_f for r in x.flatten(1))  # no D_f sample
    again, _ = task.retain_with_duplicates(seed=1)
    assert torch.equal(again, x)


def test_the_preset_reaches_the_methods_config():
    cfg = ExperimentConfig(preset="authors", profile="quick").resolved()
    split = data.digits_split(seed=0, train_per_class=4, val_per_class=2)
    stages = Stages(cfg, cache=None, log=lambda s: 0)
    fcfg = stages.forget_config(Task(split, torch.tensor([0])))
    want = ForgetConfig.authors()
    got = (fcfg.linearization.anchored, fcfg.trapezium_leg, fcfg.finetune_anchor, fcfg.noise)
    assert got == (
        want.linearization.anchored,
        want.trapezium_leg,
        want.finetune_anchor,
        want.noise,
    )


def test_step_scale_reaches_only_the_ntk_methods():
    # a fixed NTK step multiplier must not change (and so invalidate) the other methods' keys
    split = data.digits_split(seed=0, train_per_class=4, val_per_class=2)
    task = Task(split, torch.tensor([0]))
    plain = Stages(ExperimentConfig(profile="quick").resolved(), cache=None, log=lambda s: 0)
    fixed = Stages(
        ExperimentConfig(profile="quick", step_scale=2.0).resolved(), cache=None, log=lambda s: 0
    )
    for method in ("ntk", "ntk_fisher"):
        assert fixed.method_config(task, method).step_scale == 2.0
        assert plain.method_config(task, method).step_scale is None
    for method in ("original", "retrain", "finetune", "fisher", "newton"):
        want = plain.method_config(task, method).key()
        assert fixed.method_config(task, method).key() == want
        assert want["step_scale"] is None


def test_baseline_settings_reach_only_their_methods(tmp_path):
    # [experiment.baselines.<group>] in a TOML file (as forgetbox run and evaluate read it)
    toml = tmp_path / "run.toml"
    toml.write_text(
        '[experiment]\nprofile = "quick"\n'
        "[experiment.baselines.scrub]\nlr = 0.002\nepochs = 4\n"
        "[experiment.baselines.salun]\nmask_fraction = 0.3\n"
    )
    tuned = config_from_dict(read_toml(toml)).resolved()
    split = data.digits_split(seed=0, train_per_class=4, val_per_class=2)
    task = Task(split, torch.tensor([0]))
    plain = Stages(ExperimentConfig(profile="quick").resolved(), cache=None, log=lambda s: 0)
    fixed = Stages(tuned, cache=None, log=lambda s: 0)
    for method in ("scrub", "scrub_r"):
        got = fixed.method_config(task, method)
        assert (got.scrub.lr, got.scrub.epochs) == (0.002, 4)
        assert got.scrub.temperature == ScrubConfig().temperature  # the rest: the paper's
        assert got.key(method) != plain.method_config(task, method).key(method)
    assert fixed.method_config(task, "salun").salun.mask_fraction == 0.3
    for method in ("original", "retrain", "finetune", "fisher", "ntk", "neggrad_plus"):
        want = plain.method_config(task, method).key(method)
        assert fixed.method_config(task, method).key(method) == want
    # written back into config.toml and read again as the same settings
    written = config_toml({"config": tuned.as_dict(), "versions": {}})
    again = config_from_dict(tomllib.loads(written)["experiment"])
    assert again.baselines == tuned.baselines


@pytest.mark.parametrize(
    "baselines,message",
    [
        ({"scrubb": {"lr": 1}}, "unknown baseline 'scrubb'"),
        ({"scrub": {"lrr": 1}}, r"baselines.scrub: unknown settings \['lrr'\]"),
        ({"scrub": {"lr": -1}}, "scrub.lr must be > 0"),
        ({"scrub": 3}, "baselines.scrub must be a table"),
        ([1], "baselines must be a table"),
    ],
)
def test_bad_baseline_settings_are_refused_naming_them(baselines, message):
    with pytest.raises(ValueError, match=message):
        config_from_dict({"baselines": baselines})
