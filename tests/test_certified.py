"""Certified deletion (issue 32) against independent references: the (ε, δ) conversion against
direct numerical integration of the two Gaussians' privacy loss, the removal against an exact
retrain solved by another algorithm, the noise scale's independence of the cohort, and an
attack that stays inside the certificate — and one that does not where it should not."""

from __future__ import annotations

import copy
import math

import numpy as np
import pytest
import torch
from scipy import integrate, stats

import forgetbox
from forgetbox import audit, methods, ntk, privacy
from forgetbox.functional import flatten
from forgetbox.methods import CertifyConfig, ForgetConfig
from forgetbox.models import MLP
from forgetbox.ntk import Linearization, LinearizedModel

F64 = torch.float64
LAM = 0.1


def _delta_by_integration(eps: float, mu: float) -> float:
    """``int max(0, p(x) - e^eps q(x)) dx`` for p = N(mu, 1), q = N(0, 1)."""
    p, q = stats.norm(mu, 1).pdf, stats.norm(0, 1).pdf
    value, _ = integrate.quad(
        lambda x: max(0.0, p(x) - math.exp(eps) * q(x)),
        -30,
        30 + mu,
        limit=400,
        points=[eps / mu + mu / 2],
    )
    return value


@pytest.mark.parametrize("eps,mu", [(0.0, 0.5), (0.1, 0.03), (1.0, 0.27), (3.0, 1.5), (10.0, 2.0)])
def test_the_gdp_conversion_equals_numerical_integration(eps, mu):
    assert privacy.gdp_delta(eps, mu) == pytest.approx(_delta_by_integration(eps, mu), abs=1e-12)


@pytest.mark.parametrize("eps,delta", [(0.1, 1e-5), (1.0, 1e-5), (10.0, 1e-5), (2.0, 1e-3)])
def test_mu_and_epsilon_invert_the_conversion(eps, delta):
    mu = privacy.gdp_mu(eps, delta)
    assert privacy.gdp_delta(eps, mu) == pytest.approx(delta, rel=1e-6)
    assert privacy.gdp_delta(eps, mu * 1.01) > delta  # the largest mu that meets (ε, δ)
    assert privacy.gdp_epsilon(mu, delta) == pytest.approx(eps, rel=1e-6)
    assert privacy.compose([mu, mu, mu, mu]) == pytest.approx(2 * mu)


def _problem(seed: int = 0, n: int = 24):
    """A small MLP, linearized at w0 and trained exactly on D (float64)."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    base = MLP(3, 4, width=0.1).double().eval()
    x = torch.randn(n, 4, generator=gen, dtype=F64)
    y = torch.randint(0, 3, (n,), generator=gen)
    model, info = forgetbox.train_linearized(base, (x, y), Linearization(weight_decay=LAM))
    return base, model, x, y, info


def _exact_retrain(model: LinearizedModel, x, y) -> torch.Tensor:
    """``argmin L_{D_r}`` by Newton in parameter space with autograd's exact Hessian (an
    algorithm independent of the package's kernel-space solver), to machine precision."""
    f, w0, _ = ntk.linearized_parts(model, F64)
    shapes = {k: v.shape for k, v in w0.items()}
    flat0 = flatten(w0)

    def objective(flat):
        parts, at = {}, 0
        for k, shape in shapes.items():
            size = int(np.prod(shape))
            parts[k] = flat[at : at + size].view(shape)
            at += size
        out = ntk.linearized_outputs(f, w0, parts, x, 64)
        reg = 0.5 * LAM * ((flat - flat0) ** 2).sum()
        return torch.nn.functional.cross_entropy(out, y) + reg

    w = flat0.clone()
    for _ in range(30):
        g = torch.autograd.functional.jacobian(objective, w)
        if g.norm() < 1e-14:
            break
        H = torch.autograd.functional.hessian(objective, w)
        w = w - torch.linalg.solve(H, g)
    return w


def test_training_and_removal_reach_the_exact_minimisers():
    base, model, x, y, info = _problem()
    assert info["grad_norm"] < 1e-9
    trained = flatten(model.w()).detach()
    assert (trained - _exact_retrain(model, x, y)).norm() < 1e-9  # L_D's minimiser
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[[1, 5, 9]] = False
    cfg = ForgetConfig(linearization=Linearization(weight_decay=LAM))
    res = methods.forget("certified", model, base, (x[keep], y[keep]), (x[~keep], y[~keep]), cfg)
    record = res.info["certified"]
    r = record["operator_record"]["residual_grad_norm"]
    exact = _exact_retrain(model, x[keep], y[keep])
    solved = res.info["mean"].double()
    # strong convexity: the distance to the unique retrain is at most the residual over lambda
    assert (solved - exact).norm() <= r / LAM + 1e-12
    assert r <= record["residual_budget"] and record["operator_record"]["iterations"] <= 8


def test_the_noise_scale_does_not_depend_on_the_cohort():
    base, model, x, y, _ = _problem()
    cfg = ForgetConfig(linearization=Linearization(weight_decay=LAM))
    sigmas = set()
    for cohort in ([0, 1], [5, 6, 7, 8, 9, 10], [20]):
        keep = torch.ones(len(x), dtype=torch.bool)
        keep[cohort] = False
        res = methods.forget(
            "certified", model, base, (x[keep], y[keep]), (x[~keep], y[~keep]), cfg
        )
        sigmas.add(res.info["certified"]["sigma"])
    want = CertifyConfig().mechanism(F64, LAM)["sigma"]
    assert sigmas == {want}
    assert want == pytest.approx(1e-8 / (LAM * privacy.gdp_mu(1.0, 1e-5)))


def test_past_the_iteration_cap_nothing_is_released():
    base, model, x, y, _ = _problem()
    before = copy.deepcopy(model.state_dict())
    cfg = ForgetConfig(
        linearization=Linearization(weight_decay=LAM),
        certify=CertifyConfig(max_iter=1, residual_budget=1e-12),
    )
    with pytest.raises(methods.RetrainDueError, match="retraining is due"):
        methods.forget("certified", model, base, (x[3:], y[3:]), (x[:3], y[:3]), cfg)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    with pytest.raises(ValueError, match="linearized model"):
        methods.forget("certified", base, base, (x[3:], y[3:]), (x[:3], y[:3]), cfg)


def _releases(model_w: torch.Tensor, sigma: float, draws: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return model_w + sigma * torch.randn(draws, len(model_w), generator=gen, dtype=F64)


def test_an_optimal_attack_stays_inside_the_certificate_and_a_weak_release_fails_it():
    """Many draws of a release and of the reference mechanism (exact retrain, same noise);
    the likelihood-ratio test between the two (the most powerful attack) is scored by
    projecting on their mean difference. The certified release, and the worst release its
    budget allows (at distance r_max / lambda) stay inside TPR <= e^ε FPR + δ, both ways,
    within the rates' intervals; the same worst case with a fifth of the noise does not, nor
    does the original model released with the certified noise."""
    base, model, x, y, _ = _problem(n=20)
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[[0, 4]] = False
    certify = CertifyConfig(epsilon=1.0, residual_budget=1e-6)
    cfg = ForgetConfig(linearization=Linearization(weight_decay=LAM), certify=certify)
    res = methods.forget("certified", model, base, (x[keep], y[keep]), (x[~keep], y[~keep]), cfg)
    sigma = res.info["certified"]["sigma"]
    exact = _exact_retrain(model, x[keep], y[keep])
    unit = torch.randn(len(exact), generator=torch.Generator().manual_seed(5), dtype=F64)
    worst = exact + 1e-6 / LAM * unit / unit.norm()  # the budget's largest distance
    cases = [
        (res.info["mean"].double(), sigma, True),
        (worst, sigma, True),
        (worst, sigma / 5, False),
        (flatten(model.w()).detach(), sigma, False),
    ]
    for k, (candidate, noise, inside) in enumerate(cases):
        gap = candidate - exact
        direction = gap / gap.norm() if gap.norm() > 0 else unit / unit.norm()
        released = _releases(candidate, noise, 4000, 10 + k) @ direction
        reference = _releases(exact, noise, 4000, 20 + k) @ direction
        check = audit.within_certificate(released, reference, epsilon=1.0, delta=1e-5)
        assert check["powered"], check
        assert check["verdict"] == ("inside" if inside else "outside"), (k, check)


def test_a_certified_request_through_the_command_line(trained, tmp_path, capsys):
    """A linearized model saved as safetensors is scrubbed with --certify: the certificate
    states (ε, δ), the ledger composes mu, the folder verifies; a budget the solver cannot
    reach is refused with nothing written."""
    import json

    from forgetbox import cli
    from forgetbox.checkpoints import save_state
    from tests.conftest import argv

    root, model, w0, split = trained
    lin_model, info = forgetbox.train_linearized(
        w0, (split.x_train, split.y_train), Linearization(weight_decay=LAM)
    )
    assert info["grad_norm"] < 1e-4
    save_state(tmp_path / "lin.safetensors", lin_model.state_dict())
    out = tmp_path / "out"
    args = argv("scrub", root, out)
    args[args.index("--weights") + 1] = str(tmp_path / "lin.safetensors")
    args += ["--forget", str(root / "forget.txt"), "--certify", "--epsilon", "2", "--seed", "1"]
    assert cli.main(args) == 0
    cert = json.loads((out / "certificate-0001.json").read_text())
    assert cert["method"] == "certified" and cert["certified"]["epsilon"] == 2.0
    mu = privacy.gdp_mu(2.0, 1e-5)
    assert cert["certified"]["mu"] == pytest.approx(mu)
    assert cert["bounds"]["reference"] == "certified"
    entry = json.loads((out / "ledger.json").read_text())["entries"][0]
    assert entry["mu_total"] == pytest.approx(mu) and entry["bounds_reference"] == "certified"
    assert cli.main(["verify", str(out)]) == 0
    refused = tmp_path / "refused"
    bad = [*args, "--residual-budget", "1e-14", "--certify-max-iter", "1"]
    bad[bad.index("--out") + 1] = str(refused)
    capsys.readouterr()
    assert cli.main(bad) == 2
    assert "retraining is due" in capsys.readouterr().err
    assert not refused.exists() or not any(refused.iterdir())
    prepared = [*args, "--prepared", str(tmp_path / "no-such-state")]  # refused before reading
    prepared[prepared.index("--out") + 1] = str(refused)
    assert cli.main(prepared) == 2
    assert "no-such-state" in capsys.readouterr().err
    assert not refused.exists() or not any(refused.iterdir())


def test_a_prepared_kernel_gives_the_same_release_as_a_one_off_request():
    """The linearized network's Jacobian is J at w0 whatever the cohort: the kernel of D,
    prepared once, answers each request with D_r's rows (the same weights, to rounding)."""
    base, model, x, y, _ = _problem()
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[[2, 3, 11]] = False
    lin, opts = Linearization(weight_decay=LAM), ntk.NTKOptions()
    state = methods.prepare_certified(model, (x, y), opts)
    assert state.K.shape == (len(x) * 3, len(x) * 3)
    gen = torch.Generator
    one = methods.certified_release(
        model, (x[keep], y[keep]), lin, opts, CertifyConfig(), gen().manual_seed(0)
    )
    fast = methods.certified_release(
        model,
        (x[keep], y[keep]),
        lin,
        opts,
        CertifyConfig(),
        gen().manual_seed(0),
        prepared=(state, keep),
    )
    assert (one.solved - fast.solved).norm() < 1e-10
    assert torch.equal(one.released - one.solved, fast.released - fast.solved)  # same noise
    assert fast.record["operator_record"]["residual_grad_norm"] <= fast.record["residual_budget"]


def test_too_few_draws_have_no_power_and_say_so():
    """Eight draws a side cannot refute (ε = 1) even a perfectly separating attack: the verdict
    is 'no power', not 'inside'; with 64 a side it can, and does."""
    far = torch.full((8,), 5.0, dtype=F64)
    near = torch.zeros(8, dtype=F64)
    few = audit.within_certificate(far, near, epsilon=1.0, delta=1e-5)
    assert few["verdict"] == "no power" and not few["powered"]
    many = audit.within_certificate(far.repeat(8), near.repeat(8), epsilon=1.0, delta=1e-5)
    assert many["powered"] and many["verdict"] == "outside"


def test_secret_noise_differs_every_time_and_is_recorded_as_such():
    base, model, x, y, _ = _problem()
    cfg = ForgetConfig(linearization=Linearization(weight_decay=LAM))
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[[1, 2]] = False
    a, b = (
        methods.forget("certified", model, base, (x[keep], y[keep]), (x[~keep], y[~keep]), cfg)
        for _ in range(2)
    )
    assert a.info["certified"]["noise"] == "os-entropy"
    assert not torch.equal(flatten(a.model.w()), flatten(b.model.w()))  # same seed, new noise
    draws = privacy.secure_normal(200_001)
    assert abs(draws.mean()) < 6 / math.sqrt(len(draws)) and abs(draws.var() - 1) < 0.02


def test_the_per_layer_kernel_certifies_the_same_removal_and_is_recorded():
    """Certified training and removal build the kernel at w0 with the engine's per-layer form
    (issue 31): the same minimisers as the contraction path, to float64 rounding, and the
    record says how the kernel was built."""
    base, model, x, y, _ = _problem()
    keep = torch.ones(len(x), dtype=torch.bool)
    keep[[0, 7]] = False
    lin = Linearization(weight_decay=LAM)
    out = {}
    for mode in ("contraction", "structured"):
        opts = ntk.NTKOptions(jacobian=mode)
        gen = torch.Generator().manual_seed(3)
        out[mode] = methods.certified_release(
            model, (x[keep], y[keep]), lin, opts, CertifyConfig(), gen
        )
        state = methods.prepare_certified(model, (x, y), opts)
        out[mode + " state"] = state
    assert (out["contraction"].solved - out["structured"].solved).norm() < 1e-10
    K_c, K_s = out["contraction state"].K, out["structured state"].K
    assert ((K_c - K_s).norm() / K_c.norm()) < 1e-12
    built = out["structured"].record["kernel_build"]
    assert built["jacobian"] == "per-layer" and set(built["forms"].values()) <= {
        "structured",
        "contracted",
    }
    assert out["contraction"].record["kernel_build"] == {"jacobian": "contraction"}
    assert out["structured state"].kernel_build["jacobian"] == "per-layer"


def test_a_prepared_certified_state_answers_requests_as_one_off_requests_do(tmp_path):
    """forgetbox.prepare(..., certified=True) binds the kernel of D to the linearized model and
    D; two requests answered from it (stored and read back in between) release the weights of
    one-off requests from w(D) forgetting the same cohorts, with the same seeded noise."""
    from forgetbox.deletion.prepared_files import load_prepared, save_cohort, save_prepared

    base, model, x, y, _ = _problem(n=20)
    state = forgetbox.prepare(model, (x, y), certified=True)
    assert state.space == "certified" and state.hashes["weights_sha256"]
    folder = tmp_path / "state"
    save_prepared(state, folder)
    certify = CertifyConfig(seeded_noise=True)
    lin = dict(weight_decay=LAM, certify=certify, seed=5)
    first, both = [1, 4], [1, 4, 9, 13]
    last = None  # the cohort file of the previous request and its SHA-256, as a ledger keeps
    for i, (cohort, forgotten) in enumerate((([1, 4], first), ([9, 13], both))):
        stored = load_prepared(folder, cohort=last)
        fast = forgetbox.scrub(model, data=(x, y), forget_indices=cohort, prepared=stored, **lin)
        last = (f"cohort-{i}.safetensors", save_cohort(stored, folder, f"cohort-{i}.safetensors"))
        one = forgetbox.scrub(model, data=(x, y), forget_indices=forgotten, **lin)
        a, b = flatten(fast.model.w()), flatten(one.model.w())
        assert (a - b).norm() < 1e-9 * b.norm()
        assert fast.certificate["certified"]["prepared"] is True
        assert one.certificate["certified"]["prepared"] is False
    assert sorted(load_prepared(folder, cohort=last).forgotten.tolist()) == both
    from forgetbox.cohort import Cohort

    stale = Cohort.check([7], len(x))  # checked as if nothing had been forgotten yet
    with pytest.raises(ValueError, match="checked against another prepared state or request"):
        forgetbox.scrub(model, data=(x, y), forget_indices=stale, prepared=stored, **lin)
    assert sorted(stored.forgotten.tolist()) == both  # unchanged by the refused request
    with pytest.raises(ValueError, match="answers certified requests"):
        forgetbox.scrub(model, data=(x, y), forget_indices=[2], prepared=stored, method="ntk")
    other = forgetbox.prepare(base, (x, y), weight_decay=LAM, pretrained=base)  # an NTK state
    with pytest.raises(ValueError, match="prepare with --certify"):
        forgetbox.scrub(model, data=(x, y), forget_indices=[2], prepared=other, **lin)
    with pytest.raises(ValueError, match="needs a linearized model"):
        forgetbox.prepare(base, (x, y), certified=True)


def test_a_certified_state_through_the_command_line(trained, tmp_path, capsys):
    """forgetbox prepare --certify, then two forgetbox scrub --certify --prepared requests: each
    answered from the stored kernel (recorded as prepared), the ledger composing mu, the folders
    verifying; an NTK request from the certified state is refused with nothing written."""
    import json

    from forgetbox import cli
    from forgetbox.checkpoints import save_state
    from tests.conftest import argv

    root, _, w0, split = trained
    lin_model, _ = forgetbox.train_linearized(
        w0, (split.x_train, split.y_train), Linearization(weight_decay=LAM)
    )
    weights = tmp_path / "lin.safetensors"
    save_state(weights, lin_model.state_dict())
    state, out = tmp_path / "state", tmp_path / "out"

    def with_weights(args):
        args[args.index("--weights") + 1] = str(weights)
        return args

    assert cli.main([*with_weights(argv("prepare", root, state)), "--certify"]) == 0
    manifest = json.loads((state / "prepared.json").read_text())
    assert manifest["space"] == "certified"
    from forgetbox.checkpoints import CheckpointError
    from forgetbox.deletion.prepared_files import load_prepared

    edited = tmp_path / "edited"
    edited.mkdir()
    for f in state.iterdir():
        (edited / f.name).write_bytes(f.read_bytes())
    (edited / "prepared.json").write_text(json.dumps({**manifest, "space": "kernel"}))
    with pytest.raises(CheckpointError, match="field 'space'"):
        load_prepared(edited)
    for i, part in enumerate(("0\n3\n", "5\n8\n")):
        path = tmp_path / f"cohort{i}.txt"
        path.write_text(part)
        args = with_weights(argv("scrub", root, out))
        args += ["--forget", str(path), "--certify", "--prepared", str(state)]
        assert cli.main(args) == 0, capsys.readouterr().err
        cert = json.loads((out / f"certificate-{i + 1:04d}.json").read_text())
        assert cert["method"] == "certified" and cert["certified"]["prepared"] is True
    ledger = json.loads((out / "ledger.json").read_text())["entries"]
    mu = privacy.gdp_mu(1.0, 1e-5)
    assert ledger[-1]["mu_total"] == pytest.approx(mu * 2**0.5)
    assert cli.main(["verify", str(out)]) == 0
    capsys.readouterr()
    before = sorted(p.name for p in [*out.iterdir(), *state.iterdir()])
    ntk_request = with_weights(argv("scrub", root, out))
    (tmp_path / "more.txt").write_text("1\n")
    ntk_request += ["--forget", str(tmp_path / "more.txt"), "--method", "ntk"]
    ntk_request += ["--prepared", str(state)]
    assert cli.main(ntk_request) == 2
    assert "answers certified requests" in capsys.readouterr().err
    assert sorted(p.name for p in [*out.iterdir(), *state.iterdir()]) == before
