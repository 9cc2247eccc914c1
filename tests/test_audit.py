"""The ensemble attacks and scores against independent references (tests/official_scores.py):
the challenge's epsilon by a direct evaluation of its official definition, on continuous,
tied, lattice-valued and float32-rounded confidences; U-LiRA on Gaussians where the optimal
test is known and in closed form on shadow models with several cohorts; KLoM against the
closed-form KL of two Gaussians and a loop over the reference procedure; ROC against
scikit-learn; and every score that cannot be computed reading as such, never as the best."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from forgetbox import audit
from forgetbox.audit import challenge
from forgetbox.audit.ulira import EXCLUDED, IN, OUT, log_ratios, one_row_per_shadow, ulira
from forgetbox.evaluation import scores, two_level
from forgetbox.evaluation.ensembles import Member
from forgetbox.report import evaluation_page as report
from tests.official_scores import official_epsilon, reference_klom


def test_challenge_epsilon_equals_its_definition_evaluated_directly():
    gen = np.random.default_rng(0)
    K = 6
    u = np.stack(
        [gen.normal(0, 1, K), gen.normal(0.3, 1, K), gen.normal(2.5, 0.6, K), gen.normal(0, 2, K)],
        1,
    )
    r = np.stack(
        [gen.normal(0, 1, K), gen.normal(0, 1, K), gen.normal(0, 0.8, K), gen.normal(1, 0.5, K)],
        1,
    )
    got = challenge.example_epsilons(torch.tensor(u), torch.tensor(r)).numpy()
    want = np.array([official_epsilon(u[:, i], r[:, i]) for i in range(u.shape[1])])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert len(set(np.round(want, 6))) > 2  # the cases are not all alike


def test_only_a_double_threshold_separates_a_narrow_sample_inside_a_bimodal_one():
    gen = np.random.default_rng(7)
    K = 8
    u = np.stack([gen.normal(0, 0.3, K), gen.normal(0, 0.5, K)], 1)
    r = np.stack([np.r_[gen.normal(-3, 0.5, 4), gen.normal(3, 0.5, 4)], gen.normal(0, 4, K)], 1)
    got = challenge.example_epsilons(torch.tensor(u), torch.tensor(r)).numpy()
    want = np.array([official_epsilon(u[:, i], r[:, i]) for i in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert got[0] == 50.0  # an interval around the narrow sample separates them perfectly
    single = challenge._single_threshold_rates(u[:, 0], r[:, 0])
    assert challenge._epsilon_of_rates(single, 1e-5) < 50.0  # no single threshold does


def test_identical_confidences_give_epsilon_zero_and_full_quality():
    c = torch.randn(16, 10, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    eps = challenge.example_epsilons(c, c.clone())
    assert torch.equal(eps, torch.zeros(10, dtype=torch.float64))
    assert challenge.forget_quality(eps, 16) == 1.0
    s = audit.challenge_score(c, c, retain_accuracy=(0.9, 0.9), test_accuracy=(0.6, 0.8))
    assert s.score == pytest.approx(0.75)  # F = 1 times the test-accuracy ratio


def test_separated_confidences_give_the_cap_and_no_points():
    g = torch.Generator().manual_seed(2)
    u = torch.randn(16, 5, generator=g, dtype=torch.float64) + 20
    r = torch.randn(16, 5, generator=g, dtype=torch.float64)
    eps = challenge.example_epsilons(u, r)
    assert torch.equal(eps, torch.full((5,), 50.0, dtype=torch.float64))
    assert challenge.forget_quality(eps, 16) == 0.0


def test_buckets_follow_the_number_of_models():
    # ceil(ln(31)) = 4: eight buckets of width 0.5 worth 1, 1/2, ..., 1/128
    pts = challenge.bucket_points(32)
    assert [s for s, _ in pts] == [0.5 * i for i in range(8)]
    assert [p for _, p in pts] == [2.0**-i for i in range(8)]
    assert challenge.forget_quality(torch.tensor([0.0, 0.7, 3.9, 4.0]), 32) == pytest.approx(
        (1 + 0.5 + 2**-7 + 0) / 4
    )
    assert len(challenge.bucket_points(8)) == 4  # ceil(ln 7) = 2


def _cases(kind: str, count: int = 12, seed: int = 2):
    """``(u, r)``: one example's confidences under K unlearned and K retrained models.
    ``tied``: even K on a 0.25 lattice, ties within and across the samples; ``lattice``: K = 3
    on a 0.01 lattice, the retrained values hugging the unlearned ones, so that whether an edge
    lands on a data value decides; ``float32``: float32-rounded, half the values shared."""
    gen = np.random.default_rng(seed)
    for _ in range(count):
        if kind == "tied":
            K = int(gen.choice([4, 6]))
            u = gen.integers(-6, 6, K) * 0.25
            r = gen.integers(-6, 6, K) * 0.25 + gen.integers(-2, 3) * 0.25
        elif kind == "lattice":
            u = np.sort(gen.integers(-300, 300, 3)) * 0.01
            r = np.array([u[0] - 0.01, u[2] + 0.01, u[2] + 0.05])
        else:
            K = int(gen.choice([5, 6]))
            u = gen.normal(0, 1, K).astype(np.float32).astype(float)
            r = gen.normal(0.5, 1.5, K).astype(np.float32).astype(float)
            r[: K // 2] = u[: K // 2]
        yield u, r


def _lower_median(x: np.ndarray) -> float:
    return torch.tensor(x).median().item()  # the lower of the two middle values


@pytest.mark.parametrize("kind", ["tied", "lattice", "float32"])
def test_challenge_epsilon_on_tied_lattice_and_float32_confidences(kind):
    cases = list(_cases(kind))
    got = [
        challenge.example_epsilons(torch.tensor(u[:, None]), torch.tensor(r[:, None]))
        for u, r in cases
    ]
    want = [official_epsilon(u, r) for u, r in cases]
    np.testing.assert_allclose(torch.cat(got).numpy(), want, rtol=1e-12, atol=1e-12)
    if kind == "tied":  # cases where the lower middle value would take the other side
        assert any(
            (np.median(r) > np.median(u)) != (_lower_median(r) > _lower_median(u)) for u, r in cases
        )
    if kind == "lattice":  # both separable and not: the edges matter
        assert 50.0 in want and min(want) < 1


@pytest.mark.parametrize("kind", ["tied", "lattice", "float32"])
def test_the_double_threshold_counts_are_those_of_every_value_against_every_edge(kind):
    for u, r in _cases(kind):
        peaky, other, left, right = challenge.double_threshold_grid(u, r)
        tp = ((left[None] <= peaky[:, None]) & (peaky[:, None] <= right[None])).sum(0)
        fp = ((left[None] <= other[:, None]) & (other[:, None] <= right[None])).sum(0)
        want = challenge._rates(tp, len(peaky), fp, len(other))
        np.testing.assert_array_equal(challenge._double_threshold_rates(u, r), want)


def test_an_even_number_of_models_takes_the_mean_of_the_two_middle_values():
    u, r = np.array([-1.0, -1.75, -1.0, -1.0]), np.array([-1.0, -0.25, -0.5, -1.0])
    # medians -1 and -0.75: the retrained sample is positive (the lower middle values tie)
    assert challenge.retrained_is_positive(u[:, None], r[:, None]).item()
    got = challenge.example_epsilons(torch.tensor(u[:, None]), torch.tensor(r[:, None])).item()
    # the best rule has FPR 1/2 and FNR 1/4
    assert got == official_epsilon(u, r) == pytest.approx(math.log(2 - 4e-5), rel=1e-12)
    assert official_epsilon(u, r, median=_lower_median) == 0.0  # torch.median's side


def test_a_k3_lattice_example_hinges_on_an_edge_at_a_data_value():
    """Three models per side on a 0.01 lattice: the only interval that holds the unlearned
    confidences and none of the retrained ones has its left edge at -0.17 to within rounding,
    on the right side of it as np.linspace computes it. 1e-15 higher (as forgetbox's earlier
    arithmetic put it) the epsilon falls from the cap to log(2 - 3 delta)."""
    u, r = np.array([-0.17, 0.07, 1.53]), np.array([-0.18, 1.54, 1.58])
    got = challenge.example_epsilons(torch.tensor(u[:, None]), torch.tensor(r[:, None])).item()
    assert got == official_epsilon(u, r) == 50.0
    assert official_epsilon(u, r, nudge_left=1e-15) == pytest.approx(math.log(2 - 3e-5))


def test_an_epsilon_that_cannot_be_computed_is_nan_and_earns_no_points():
    """Both samples at one value: every rule calls all or none of both, so none is usable (the
    official code stops with an error there). NaN and no points, never the best bucket."""
    c = torch.full((4, 2), 3.0, dtype=torch.float64)
    c[:, 1] = torch.tensor([0.0, 1.0, 2.0, 3.0])
    eps = challenge.example_epsilons(c, c.clone())
    assert math.isnan(eps[0]) and eps[1] == 0.0
    assert math.isnan(official_epsilon(c[:, 0].numpy(), c[:, 0].numpy()))
    assert challenge.forget_quality(eps, 4) == 0.5  # (0 + 1) / 2
    s = audit.challenge_score(c, c, retain_accuracy=(1.0, 1.0), test_accuracy=(1.0, 1.0))
    assert s.score == 0.5 and math.isnan(s.epsilons[0])


def _ulira_gaussians(mu_in, sd_in, mu_out, sd_out, models=400, examples=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    status = (torch.rand(models, examples, generator=g) < 0.5).long()  # 1 in, 0 out
    noise = torch.randn(models, examples, generator=g, dtype=torch.float64)
    conf = torch.where(status == 1, mu_in + sd_in * noise, mu_out + sd_out * noise)
    folds = torch.arange(models) % 2
    return ulira(conf, status, folds)


def _optimal_balanced_accuracy(mu_in, sd_in, mu_out, sd_out):
    """The likelihood-ratio test with the true Gaussians, integrated numerically."""
    x = np.linspace(-15, 15, 300001)
    pin, pout = stats.norm.pdf(x, mu_in, sd_in), stats.norm.pdf(x, mu_out, sd_out)
    say_in = np.log(pin + 1e-300) > np.log(pout + 1e-300)
    dx = x[1] - x[0]
    return 0.5 * ((pin * say_in).sum() * dx + (pout * ~say_in).sum() * dx)


@pytest.mark.parametrize(
    "params",
    [(1.0, 1.0, 0.0, 1.0), (2.0, 0.5, 0.0, 1.0), (0.0, 1.0, 0.0, 3.0)],
)
def test_ulira_reaches_the_optimal_test_on_gaussians(params):
    res = _ulira_gaussians(*params)
    want = _optimal_balanced_accuracy(*params)
    se = 0.5 / math.sqrt(min(res.pairs_in, res.pairs_out))
    assert abs(res.balanced_accuracy - want) < 4 * se + 0.01, (res.balanced_accuracy, want)
    if params == (1.0, 1.0, 0.0, 1.0):
        assert want == pytest.approx(stats.norm.cdf(0.5), abs=1e-4)  # closed form


def test_ulira_is_at_chance_when_in_and_out_coincide():
    res = _ulira_gaussians(0.0, 1.0, 0.0, 1.0, seed=3)
    se = 0.5 / math.sqrt(min(res.pairs_in, res.pairs_out))
    assert abs(res.balanced_accuracy - 0.5) < 4 * se
    assert abs(res.roc.auc - 0.5) < 0.03
    assert res.examples == 40 and len(res.per_example) == 40


def test_ulira_keeps_fitting_and_target_models_apart():
    """A model's own confidence never enters the Gaussians it is tested with: one outlier
    model alone in its fold is judged by the others."""
    conf = torch.zeros(6, 1, dtype=torch.float64)
    status = torch.tensor([[1], [1], [1], [0], [0], [0]])
    conf[:3] = torch.tensor([[1.0], [1.2], [0.8]])
    conf[3:] = torch.tensor([[0.0], [0.2], [-0.2]])
    lr = log_ratios(conf, status, torch.tensor([0, 1, 1, 2, 1, 1]))
    # model 0 (in, 1.0) and model 3 (out, 0.0) each fitted on the four others
    assert lr[0, 0] > 0 and lr[3, 0] < 0
    assert torch.isnan(log_ratios(conf, status, torch.arange(6) % 6)).sum() == 0


def _cohort_rows(v_in, v_out, cohorts):
    """One example, 8 shadow models (fold ``s % 2``), ``cohorts`` unlearned models each: shadow
    s < 4 forgot the example in its last cohort (confidence ``v_in[s]``, kept elsewhere), shadow
    s >= 4 never saw it (``v_out[s - 4]`` under every cohort, up to 1e-9: near-duplicates)."""
    conf, status, shadows = [], [], []
    for s in range(8):
        for j in range(cohorts):
            if s < 4:
                st, v = (IN, v_in[s]) if j == cohorts - 1 else (EXCLUDED, 5.0)
            else:
                st, v = OUT, v_out[s - 4] + 1e-9 * j
            conf.append([v])
            status.append([st])
            shadows.append(s)
    shadows = torch.tensor(shadows)
    return torch.tensor(conf, dtype=torch.float64), torch.tensor(status), shadows % 2, shadows


def test_ulira_counts_each_shadow_model_once_per_example_and_side():
    v_in, v_out = [1.0, 1.6, 0.7, 2.4], [0.1, -0.9, 0.5, 0.4]

    def closed_form(s):  # the Gaussians of the other fold's shadow models, one value each
        fit = [t for t in range(8) if t % 2 != s % 2]
        a = [v_in[t] for t in fit if t < 4]
        b = [v_out[t - 4] for t in fit if t >= 4]
        c = v_in[s] if s < 4 else v_out[s - 4]
        return stats.norm.logpdf(c, np.mean(a), np.std(a, ddof=1)) - stats.norm.logpdf(
            c, np.mean(b), np.std(b, ddof=1)
        )

    want = [closed_form(s) for s in range(8)]
    for cohorts in (1, 3):
        conf, status, folds, shadows = _cohort_rows(v_in, v_out, cohorts)
        kept = one_row_per_shadow(status, shadows)
        lr = log_ratios(conf, kept, folds)[:, 0]
        for s in range(8):
            rows = torch.nonzero((shadows == s) & (kept[:, 0] != EXCLUDED)).flatten()
            assert len(rows) == 1 and lr[rows].item() == pytest.approx(want[s], abs=1e-6)
        res = ulira(conf, status, folds, shadows)
        assert (res.pairs_in, res.pairs_out) == (4, 4)
        if cohorts == 3:  # taken as 3 models each, the near-duplicates shrink the "out" spread
            naive = log_ratios(conf, status, folds)[:, 0]
            assert abs(naive[12].item() - want[4]) > 0.05
            with pytest.raises(ValueError, match="several folds"):
                ulira(conf, status, torch.arange(len(folds)) % 2, shadows)


def test_klom_equals_the_reference_procedure():
    gen = np.random.default_rng(4)
    u = np.concatenate([gen.normal(0, 1, (12, 6)), np.full((12, 1), 3.0)], 1)
    r = np.concatenate([gen.normal(0.5, 2, (12, 6)), np.full((12, 1), 3.0)], 1)
    u[0, 1] = 250.0  # clipped
    r[:4, 2] = r[4, 2]  # ties
    got = audit.klom(torch.tensor(u), torch.tensor(r)).numpy()
    want = np.array([reference_klom(u[:, i], r[:, i]) for i in range(u.shape[1])])
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    assert got[-1] == 0.0  # all equal: one bin, no divergence


def test_klom_is_zero_for_identical_samples_and_tends_to_the_gaussian_kl():
    x = torch.randn(50, 3, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    assert torch.all(audit.klom(x, x.clone()) == 0)
    true = 0.5 * 0.8**2  # KL(N(0.8, 1) || N(0, 1))
    errors = []
    for k in (300, 30_000):
        g = torch.Generator().manual_seed(k)
        u = torch.randn(k, 8, generator=g, dtype=torch.float64) + 0.8
        r = torch.randn(k, 8, generator=g, dtype=torch.float64)
        errors.append(abs(audit.klom(u, r).mean().item() - true))
    assert errors[1] < errors[0] and errors[1] < 0.08 * true


def test_klom_cannot_be_computed_when_every_unlearned_margin_is_at_the_top():
    gen = np.random.default_rng(8)
    r = gen.normal(0, 3, (8, 3))
    u = np.empty((8, 3))
    u[:, 0] = 250.0 + gen.uniform(0, 50, 8)  # clipped to 100, above every retrained margin
    u[:, 1] = r[:, 1].max()  # at the top of the joint range
    u[:, 2] = np.r_[np.full(4, r[:, 2].max()), gen.normal(0, 1, 4)]  # half of them at the top
    got = audit.klom(torch.tensor(u), torch.tensor(r)).numpy()
    want = np.array([reference_klom(u[:, i], r[:, i]) for i in range(3)])
    assert np.isnan(got[:2]).all() and np.isnan(want[:2]).all()  # NaN, never 0 (perfect)
    assert np.isfinite(got[2]) and got[2] == pytest.approx(want[2], rel=1e-12)


def test_roc_auc_and_low_fpr_against_scikit_learn_and_counting():
    gen = np.random.default_rng(6)
    pos = np.round(gen.normal(1, 1, 300), 1)  # ties
    neg = np.round(gen.normal(0, 1, 2000), 1)
    res = audit.roc(pos, neg)
    labels = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    assert res.auc == pytest.approx(roc_auc_score(labels, np.r_[pos, neg]), abs=1e-12)
    for target in (0.01, 0.001):
        best = max(
            (np.mean(pos >= t) for t in np.unique(np.r_[pos, neg]) if np.mean(neg >= t) <= target),
            default=0.0,
        )
        assert res.tpr_at(target) == pytest.approx(best)
    assert res.tpr_at_1pct == res.tpr_at(0.01)


def test_population_attack_scores_are_the_loss_and_the_confidence():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.0, 3.0, 0.0]])
    labels = torch.tensor([0, 2])
    p = torch.softmax(logits.double(), -1)
    from forgetbox.audit.population import member_score

    torch.testing.assert_close(member_score(logits, labels, "confidence"), p[[0, 1], [0, 2]])
    torch.testing.assert_close(member_score(logits, labels, "loss"), p[[0, 1], [0, 2]].log())
    res = audit.threshold_attack(logits[:1], labels[:1], logits[1:], labels[1:], "loss")
    assert res.roc.auc == 1.0


def test_same_class_negatives_remove_the_class_effect():
    # D_f is class 0, which is hard for the model whether trained on or not; the other test
    # classes are easy. Against every test example the attack reads difficulty (AUC far below
    # 0.5); against class-0 test examples, drawn from D_f's own distribution, it reads nothing.
    gen = torch.Generator().manual_seed(0)
    n = 400

    def logits(true, n):
        z = torch.randn(n, 3, generator=gen, dtype=torch.float64)
        z[:, 0] += 0.3 if true == 0 else 0.0
        z[torch.arange(n), true] += 0.0 if true == 0 else 4.0
        return z

    zf, yf = logits(0, n), torch.zeros(n, dtype=torch.long)
    zt = torch.cat([logits(0, n), logits(1, n), logits(2, n)])
    yt = torch.cat([torch.full((n,), k) for k in range(3)])
    pooled = audit.threshold_attack(zf, yf, zt, yt, "loss").roc.auc
    zs, ys = audit.same_class_negatives(zt, yt, yf)
    assert torch.equal(ys, torch.zeros(n, dtype=torch.long)) and torch.equal(zs, zt[:n])
    matched = audit.threshold_attack(zf, yf, zs, ys, "loss").roc.auc
    assert pooled < 0.3
    assert abs(matched - 0.5) < 0.06  # two samples of 400 from one law: AUC sd about 0.02
    lo, hi = audit.auc_interval(zf, yf, zs, ys, "loss", draws=400)
    assert lo < matched < hi and lo < 0.5 < hi and hi - lo < 0.15
    lo, hi = audit.auc_interval(zf, yf, zt, yt, "loss", draws=400)
    assert lo < pooled < hi < 0.5
    # pooling copies of one model adds scores, not examples: the interval must not narrow
    twice = audit.auc_interval(
        torch.stack([zf, zf]), yf, torch.stack([zs, zs]), ys, "loss", draws=400
    )
    assert twice == pytest.approx(audit.auc_interval(zf, yf, zs, ys, "loss", draws=400))
    batched, _ = audit.same_class_negatives(torch.stack([zt, zt]), yt, yf)
    assert batched.shape == (2, n, 3)
    with pytest.raises(ValueError, match="shares a class"):
        audit.same_class_negatives(zt[n:], yt[n:], yf)


def test_margin_and_challenge_confidence_agree_until_underflow():
    logits = torch.tensor([[1.0, 0.5, -2.0], [0.0, 0.0, 0.0], [200.0, 0.0, 0.0]])
    y = torch.tensor([0, 1, 0])
    p = torch.softmax(logits.double(), -1)
    want = torch.log(p[[0, 1], [0, 1]]) - torch.log(1 - p[[0, 1], [0, 1]])
    torch.testing.assert_close(audit.margin(logits, y)[:2], want)
    torch.testing.assert_close(audit.challenge_confidence(logits, y)[:2], want)
    assert audit.margin(logits, y)[2].item() == pytest.approx(200.0 - math.log(2))
    assert audit.challenge_confidence(logits, y)[2].item() == pytest.approx(
        -math.log(1e-45), rel=1e-6
    )  # the official formula saturates


def test_the_band_is_the_quantiles_of_the_ensemble():
    v = np.arange(21.0)
    b = audit.band_of(v)
    assert (b.low, b.high, b.median, b.models) == (1.0, 19.0, 10.0, 21)
    assert [audit.side_of(x, b) for x in (0.5, 10, 19.5)] == ["below", "inside", "above"]


def test_a_side_of_the_band_means_a_leak_a_streisand_effect_or_only_a_closer_pairing():
    m = audit.meaning_of
    assert [m("error_forget", s) for s in ("below", "above", "inside")] == [
        "leaks",
        "Streisand",
        "inside",
    ]
    assert [m("mia_forget_member_rate", s) for s in ("above", "below")] == ["leaks", "Streisand"]
    # distances to the seed-paired reference: above leaks, below is only closer (never Streisand)
    assert [m("l1_to_retrain_forget", s) for s in ("above", "below")] == ["leaks", "closer"]
    assert [m("l1_to_retrain_test", s) for s in ("above", "below")] == ["above", "closer"]
    assert m("error_test", "below") == "below" and m("loss_forget", "not computable") == (
        "not computable"
    )


def test_scores_that_cannot_be_computed_never_read_as_the_best():
    b = audit.band_of([0.1, 0.2, 0.3])
    assert audit.side_of(float("nan"), b) == audit.side_of(None, b) == "not computable"
    nan = float("nan")
    members = {
        m: [Member(m, i, i, {}, {"error_forget": v}) for i, v in enumerate(vals)]
        for m, vals in {"a": [nan, 0.2, 0.25], "b": [nan, nan, nan]}.items()
    }
    summary = scores.readout_summary(members, {"error_forget": b})
    a, none = summary["a"]["error_forget"], summary["b"]["error_forget"]
    assert a["median"] == pytest.approx(0.225) and a["not_computable"] == 1
    assert none["median"] is None and none["side"] == none["meaning"] == "not computable"
    d = scores.bootstrap_difference([nan, 1, 2, 3, 4, 5, None], [0, 0, 0, 0, 0, 0, 0])
    assert (d["examples"], d["not_computable"], d["difference"]) == (5, 2, 3.0)
    cell = report._klom({"median": None, "not_computable": 4})
    assert "n/a" in cell and "4 not computable" in cell


def _ensemble_task(n_forget: int = 12, n_train: int = 30):
    """A stand-in task: labels of D, the test and validation sets, and D_f's indices."""
    from types import SimpleNamespace

    y = torch.arange(n_train) % 3
    split = SimpleNamespace(y_train=y, y_test=y[:6], y_val=y[:6])
    return SimpleNamespace(split=split, forget_idx=torch.arange(n_forget))


def _members(name, k, task, seed, shift=0.0, model_spread=0.0, offsets=None):
    """K members whose true-class logit on D is ``2 + shift`` plus noise per example and
    model, and plus one offset per model of scale ``model_spread`` (a trait of the model that
    the example bootstrap holds fixed; ``offsets``: given ones, shared with another ensemble
    as a seed shares them)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(k):
        n = len(task.split.y_train)
        z = torch.randn(n, 3, generator=g, dtype=torch.float64) * 0.5
        offset = model_spread * torch.randn((), generator=g, dtype=torch.float64)
        offset = offset if offsets is None else offsets[i]
        z[torch.arange(n), task.split.y_train] += 2 + shift + offset
        logits = {"train": z, "test": z[:6], "val": z[:6]}
        readouts = {"error_retain": 0.0, "error_test": 0.0}
        out.append(Member(name, i, seed * 100 + i, logits, readouts))
    return out


def _judged(seed: int, shift: float, model_spread: float, draws: int = 200):
    task = _ensemble_task()
    members = {
        "method": _members("method", 8, task, seed, shift, model_spread),
        "retrain": _members("retrain", 8, task, seed + 1, 0.0, model_spread),
    }
    refs = _members("reference", 8, task, seed + 2, 0.0, model_spread)
    blocks = {
        m: {
            "challenge": scores.challenge_part(task, ms, refs),
            "klom": scores.klom_part(task, ms, refs),
        }
        for m, ms in members.items()
    }
    return scores.against_retrain(blocks, two_level.two_level_bootstrap(task, members, refs, draws))


def test_two_finite_retrain_ensembles_are_apart_over_examples_but_not_over_models():
    # every model carries its own offset: two ensembles of one distribution differ on every
    # example alike, which the bootstrap over examples (models held fixed) reads as a difference
    rows = _judged(seed=7, shift=0.0, model_spread=1.5, draws=50)["method"]
    for key in two_level.TWO_LEVEL:
        lo, hi = rows[key]["ci95"]
        assert lo > 0 or hi < 0  # over examples alone: "apart"
        both = rows[key]["models_and_examples"]
        assert both["draws"] == 50 and both["ci95"][0] < 0 < both["ci95"][1]
        assert rows[key]["distinguishable"] is False


def test_ensembles_paired_by_seed_are_resampled_together():
    # index k is the unit: model k of the method, of the paired row and reference k come from
    # seed k and are drawn together. A method identical to the paired row then differs from it
    # by exactly 0 in every draw; against an independent retrain row the same models spread.
    task = _ensemble_task()
    refs = _members("reference", 8, task, 11, model_spread=1.5)
    twin = _members("paired", 8, task, 12, model_spread=1.5)
    members = {"method": [Member("method", m.index, m.seed, m.logits, {}) for m in twin]}
    paired = two_level.two_level_bootstrap(
        task, {**members, "paired": twin}, refs, 30, base="paired"
    )
    apart = two_level.two_level_bootstrap(task, {**members, "retrain": twin}, refs, 30)
    for key in two_level.TWO_LEVEL:
        assert paired["method"][key]["ci95"] == [0.0, 0.0]
        lo, hi = apart["method"][key]["ci95"]
        assert hi - lo > 0.01
    members["method"] = members["method"][::-1]  # not in the references' order
    with pytest.raises(ValueError, match="pair the references' indices"):
        two_level.two_level_bootstrap(task, {**members, "paired": twin}, refs, 5, base="paired")


def test_a_shifted_method_stays_distinguishable_over_models_and_examples():
    rows = _judged(seed=5, shift=3.0, model_spread=0.0, draws=50)["method"]
    assert rows["klom_forget"]["models_and_examples"]["ci95"][0] > 0
    assert rows["challenge_points"]["models_and_examples"]["ci95"][1] < 0
    assert all(rows[key]["distinguishable"] for key in two_level.TWO_LEVEL)
    for key in two_level.TWO_LEVEL:  # centred on the observed difference (a regression check)
        lo, hi = rows[key]["models_and_examples"]["ci95"]
        assert lo <= rows[key]["difference"] <= hi
    # without draws the rows carry no two-level interval
    blocks = {
        m: {"challenge": {"points": [0.0] * 6}, "klom": {"forget": {"values": [1.0] * 6}}}
        for m in ("ntk", "retrain")
    }
    assert "models_and_examples" not in scores.against_retrain(blocks)["ntk"]["klom_forget"]
    assert two_level.two_level_bootstrap(None, {"ntk": []}, [], 0) == {}


def test_the_auc_interval_is_that_of_ranking_every_bootstrap_draw():
    # scores on a coarse lattice (ties within and across the samples), K models per example
    from forgetbox.audit.population import member_score
    from forgetbox.audit.roc import rank_auc

    gen = torch.Generator().manual_seed(3)
    zf = (torch.randn(4, 6, 3, generator=gen) * 2).round()
    zt = (torch.randn(4, 30, 3, generator=gen) * 2).round()
    yf, yt = torch.randint(0, 3, (6,), generator=gen), torch.randint(0, 3, (30,), generator=gen)
    got = audit.auc_interval(zf, yf, zt, yt, "loss", draws=300, seed=5)
    pos = member_score(zf, yf, "loss").reshape(-1, 6).numpy()
    neg = member_score(zt, yt, "loss").reshape(-1, 30).numpy()
    rng = np.random.default_rng(5)
    aucs = [
        rank_auc(pos[:, rng.integers(0, 6, 6)].ravel(), neg[:, rng.integers(0, 30, 30)].ravel())
        for _ in range(300)
    ]
    assert len(np.unique(pos)) < pos.size  # ties
    assert got == tuple(float(q) for q in np.quantile(aucs, (0.025, 0.975)))  # bit for bit
    zf[0, 0, 0] = float("nan")  # a diverged model's logit: no rank, so no interval
    assert all(math.isnan(x) for x in audit.auc_interval(zf, yf, zt, yt, "loss", draws=10))


def _reference_edge_spread(values, retrain, draws=20000, seed=123):
    """The bootstrap half-width of the median's distance outside a band, one resample at a
    time with the statistics module (an independent implementation of audit.edge_margin)."""
    import statistics

    def distance(v, r):
        lo, hi = np.quantile(r, [0.05, 0.95])
        return max(lo - statistics.median(v), statistics.median(v) - hi)

    rng = np.random.default_rng(seed)
    observed = distance(values, retrain)
    dist = []
    for _ in range(draws):
        v = [values[i] for i in rng.integers(0, len(values), len(values))]
        r = [retrain[i] for i in rng.integers(0, len(retrain), len(retrain))]
        dist.append(distance(v, r))
    lo, hi = np.quantile(dist, [0.025, 0.975])
    return observed, max(observed - lo, hi - observed)


@pytest.mark.parametrize("shift", [1.5, -1.5, 0.2])
def test_the_edge_margin_and_its_spread_match_a_resampling_done_by_hand(shift):
    g = np.random.default_rng(7)
    values = list(g.normal(shift, 1.0, 16))
    retrain = list(g.normal(0.0, 0.5, 16))
    margin, spread = audit.edge_margin(values, retrain)
    ref_margin, ref_spread = _reference_edge_spread(values, retrain)
    assert margin == pytest.approx(ref_margin, abs=1e-12)
    assert spread == pytest.approx(ref_spread, rel=0.1)  # 4,000 against 20,000 draws


def test_the_edge_spread_is_the_cross_checks_spread_of_in_the_band():
    from forgetbox.experiment.cross_check import ensemble_spread

    g = np.random.default_rng(3)
    ntk, retrain = list(g.normal(1.0, 0.3, 8)), list(g.normal(0.0, 0.3, 8))
    band = audit.band_of(retrain)
    key = "mia_forget_member_rate"

    def readout(v):
        return {"readouts": {key: {"values": v, "median": float(np.median(v))}}}

    ev = {
        "methods": {"ntk": readout(ntk), "retrain": readout(retrain)},
        "bands": {key: band.__dict__},
    }
    uses = {
        "m": ("ntk", key, "median"),
        "lo": ("retrain", key, "low"),
        "hi": ("retrain", key, "high"),
    }
    inside = ensemble_spread(ev, lambda s: np.minimum(s["m"] - s["lo"], s["hi"] - s["m"]), uses)
    assert audit.edge_margin(ntk, retrain)[1] == pytest.approx(inside, abs=1e-12)


def test_a_median_outside_the_band_by_less_than_its_resolution_or_spread_is_at_the_edge():
    retrain = [0.60, 0.64, 0.64, 0.68, 0.68, 0.68, 0.72, 0.72]  # member rates, |D_f| = 25
    band = audit.band_of(retrain)
    one = audit.resolution_of("mia_forget_member_rate", {"forget": 25})
    assert one == (0.04, "one sample of 25 (D_f)")
    # every model 0.02 above the top of the band: tight, but under one sample of D_f
    near = [band.high + 0.02] * 8
    j = audit.judge("mia_forget_member_rate", "above", near, retrain, one[0])
    assert j["meaning"] == audit.EDGE and j["margin"] == pytest.approx(0.02)
    assert j["needed"] == pytest.approx(max(0.04, audit.edge_margin(near, retrain)[1]))
    # 0.2 above, every model alike: clears one sample and the (retrain row's) spread
    far = [band.high + 0.2] * 8
    j = audit.judge("mia_forget_member_rate", "above", far, retrain, one[0])
    assert j["meaning"] == "leaks" and j["margin"] == pytest.approx(0.2)
    # the same median, scattered models: the spread of the median decides nothing
    wide = [0.0, 0.1, 0.2, band.high + 0.2, band.high + 0.2, 1.0, 1.0, 1.0]
    assert np.median(wide) == pytest.approx(band.high + 0.2)
    j = audit.judge("mia_forget_member_rate", "above", wide, retrain, one[0])
    assert j["meaning"] == audit.EDGE and j["needed"] > j["margin"]
    # inside the band, or not computable: no margin, the meaning as before
    assert audit.judge("error_forget", "inside", retrain, retrain, 0.04) == {"meaning": "inside"}
    assert audit.judge("loss_forget", "not computable", [None] * 8, retrain, 0.0) == {
        "meaning": "not computable"
    }
    # the paired distance below the band stays "closer" once resolved
    j = audit.judge("l1_to_retrain_forget", "below", [0.0] * 8, [0.5] * 8, 0.01)
    assert j["meaning"] == "closer"
    # the page prints the side with the edge, and bolds only a side that is read
    assert report._flag({"meaning": audit.EDGE, "side": "above"}) == " above, at the edge"
    assert report._flag({"meaning": "leaks", "side": "above"}) == " <b>leaks</b>"


def _evaluation(n_forget: int, method_values: list, retrain_values: list) -> dict:
    """A minimal evaluation.json: one readout (the member rate), a method and the retrain row."""
    key = "mia_forget_member_rate"
    band = audit.band_of([v for v in retrain_values if v is not None])

    def row(values):
        finite = [v for v in values if v is not None]
        med = float(np.median(finite)) if finite else None
        side = audit.side_of(med, band)
        return {"readouts": {key: {"values": values, "median": med, "side": side}}}

    return {
        "task": {"n_train": 500, "n_forget": n_forget, "n_test": 500, "n_val": 125},
        "bands": {key: band.__dict__},
        "methods": {"ntk": row(method_values), "retrain": row(retrain_values)},
    }


def test_the_page_judges_each_readout_with_the_size_of_the_set_it_counts():
    key = "mia_forget_member_rate"
    retrain = [
        0.60,
        0.64,
        0.68,
        0.72,
        0.72,
        0.72,
        0.72,
        0.72,
    ]  # the top edge: 0.72 in >97 % of draws
    top = audit.band_of(retrain).high
    tight = [top + 0.02] * 8  # 0.02 above the band, every model alike
    for n_forget, meaning in ((25, audit.EDGE), (100, "leaks")):  # one sample: 0.04, 0.01
        ev = _evaluation(n_forget, tight, retrain)
        report.judge_readouts(ev)
        r = ev["methods"]["ntk"]["readouts"][key]
        assert r["meaning"] == meaning and r["needed"] == pytest.approx(max(1 / n_forget, 0))
        assert ev["methods"]["retrain"]["readouts"][key] == {
            "values": retrain, "median": 0.72, "side": "inside", "meaning": "inside"
        }  # fmt: skip
    # values that could not be computed are left out of the median and the bootstrap
    ev = _evaluation(100, tight[:6] + [None, None], retrain)
    report.judge_readouts(ev)
    r = ev["methods"]["ntk"]["readouts"][key]
    assert r["meaning"] == "leaks" and r["margin"] == pytest.approx(0.02)


def _diverge(members, ks):
    """The members at indices ``ks`` as models whose method diverged (NaN logits)."""
    for m in members:
        if m.index in ks:
            m.logits = {k: torch.full_like(v, float("nan")) for k, v in m.logits.items()}
            m.readouts = dict.fromkeys(m.readouts)
    return members


def test_diverged_models_are_left_out_of_the_scores_with_their_references():
    task = _ensemble_task()
    refs = _members("reference", 8, task, 2)
    one = _diverge(_members("method", 8, task, 0, shift=0.5), {3})
    kept = [m for m in one if m.index != 3]
    kept_refs = [r for r in refs if r.index != 3]
    assert scores.challenge_part(task, one, refs) == scores.challenge_part(task, kept, kept_refs)
    assert scores.klom_part(task, one, refs) == scores.klom_part(task, kept, kept_refs)
    assert scores.challenge_part(task, one, refs)["models_per_side"] == 7
    # two left: no challenge point, KLoM not computable, no two-level interval
    few = _diverge(_members("method", 8, task, 0), set(range(6)))
    ch, kl = scores.challenge_part(task, few, refs), scores.klom_part(task, few, refs)
    assert ch["forget_quality"] == 0.0 and ch["not_computable"] == 12 == len(ch["points"])
    assert kl["forget"]["median"] is None and kl["forget"]["not_computable"] == 12
    members = {"few": few, "one": one, "retrain": _members("retrain", 8, task, 1)}
    got = two_level.two_level_bootstrap(task, members, refs, draws=20)
    assert "few" not in got and got["one"]["klom_forget"]["draws"] > 0
    # every model diverged: nothing to attack, nothing to bin
    gone = _diverge(_members("method", 8, task, 0), set(range(8)))
    assert scores.population(task, gone)["loss"] is None
    assert scores.klom_part(task, gone, refs)["val"]["not_computable"] == 6
