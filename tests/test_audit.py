"""The ensemble attacks and scores against independent references: the challenge's epsilon by a
direct evaluation of its definition, U-LiRA on Gaussians where the optimal test is known, KLoM
against the closed-form KL of two Gaussians and a loop over the reference procedure, ROC
against scikit-learn."""

import math

import numpy as np
import pytest
import torch
from scipy import stats
from sklearn.metrics import roc_auc_score

from forgetbox import audit
from forgetbox.audit import challenge
from forgetbox.audit.ulira import log_ratios, ulira


def _direct_epsilon(u: np.ndarray, r: np.ndarray, delta: float = 1e-5) -> float:
    """The challenge's per-example epsilon written out from its definition: loops over every
    single and double threshold of the official grids, rates by counting."""
    pos, neg = (r, u) if np.median(r) > np.median(u) else (u, r)
    pr, nr = np.ptp(pos), np.ptp(neg)
    if max(pr, nr) > 0 and min(pr, nr) / max(pr, nr) < 0.01:
        return 50.0
    rules = []  # (tpr, fnr, fpr, tnr)
    # double thresholds around the peakier sample
    p2, n2 = (neg, pos) if pr >= nr else (pos, neg)
    width = min(pr, nr)
    lo, hi = p2.min() + width - 2.0, p2.max() + 2.0
    for right in np.linspace(lo, hi, int(np.ceil((hi - lo) * 100))):
        for left in np.linspace(right - width - 2.0, right - width + 2.0, 400):
            tpr = np.mean([(left <= c) and (c <= right) for c in p2])
            fpr = np.mean([(left <= c) and (c <= right) for c in n2])
            rules.append((tpr, 1 - tpr, fpr, 1 - fpr))
    both = np.concatenate([pos, neg])
    for t in np.linspace(both.min(), both.max(), int(np.ceil(np.ptp(both) * 100))):
        tpr, fpr = np.mean(pos >= t), np.mean(neg >= t)
        rules.append((tpr, 1 - tpr, fpr, 1 - fpr))
    best = -1.0
    for tpr, fnr, fpr, tnr in rules:
        if fpr + fnr == 0 and tpr + tnr == 2:
            return 50.0
        if fpr * fnr == 0:
            continue
        cands = [
            math.log(a) - math.log(b)
            for a, b in ((1 - delta - fpr, fnr), (1 - delta - fnr, fpr))
            if a > 0
        ]
        if cands:
            best = max(best, max(0.0, max(cands)))
    return max(best, 0.0)


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
    want = np.array([_direct_epsilon(u[:, i], r[:, i]) for i in range(u.shape[1])])
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9)
    assert len(set(np.round(want, 6))) > 2  # the cases are not all alike


def test_only_a_double_threshold_separates_a_narrow_sample_inside_a_bimodal_one():
    gen = np.random.default_rng(7)
    K = 8
    u = np.stack([gen.normal(0, 0.3, K), gen.normal(0, 0.5, K)], 1)
    r = np.stack([np.r_[gen.normal(-3, 0.5, 4), gen.normal(3, 0.5, 4)], gen.normal(0, 4, K)], 1)
    got = challenge.example_epsilons(torch.tensor(u), torch.tensor(r)).numpy()
    want = np.array([_direct_epsilon(u[:, i], r[:, i]) for i in range(2)])
    np.testing.assert_allclose(got, want, rtol=1e-9)
    assert got[0] == 50.0  # an interval around the narrow sample separates them perfectly
    single = challenge._single_threshold_rates(torch.tensor(u[:, 0]), torch.tensor(r[:, 0]))
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


def _reference_klom(u: np.ndarray, r: np.ndarray) -> float:
    """The reference procedure (data-unlearning-bench), one example at a time."""
    p_arr, q_arr = np.clip(u, -100, 100), np.clip(r, -100, 100)
    start, end = min(p_arr.min(), q_arr.min()), max(p_arr.max(), q_arr.max())
    if start >= end:
        end = start + 1
    bins = np.linspace(start, end, 21)
    pc = np.array([np.sum(np.digitize(p_arr, bins) == i) for i in range(1, 21)])
    qc = np.array([np.sum(np.digitize(q_arr, bins) == i) for i in range(1, 21)])
    p = pc / pc.sum()
    q = qc / qc.sum() if qc.sum() else np.zeros(20)
    q = np.where(p > 0, np.maximum(q, 1e-5), q)
    return float(stats.entropy(pk=p, qk=q))


def test_klom_equals_the_reference_procedure():
    gen = np.random.default_rng(4)
    u = np.concatenate([gen.normal(0, 1, (12, 6)), np.full((12, 1), 3.0)], 1)
    r = np.concatenate([gen.normal(0.5, 2, (12, 6)), np.full((12, 1), 3.0)], 1)
    u[0, 1] = 250.0  # clipped
    r[:4, 2] = r[4, 2]  # ties
    got = audit.klom(torch.tensor(u), torch.tensor(r)).numpy()
    want = np.array([_reference_klom(u[:, i], r[:, i]) for i in range(u.shape[1])])
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
