"""Each claim's verdict on crafted results: where it holds, fails, or cannot be decided."""

import pytest

from forgetbox.experiment import claims

BASE = {
    "original": {"error_forget": 0.0, "mia_forget_member_rate": 0.9, "relearn_epochs": 1.0},
    "retrain": {"error_forget": 0.4, "mia_forget_member_rate": 0.4, "relearn_epochs": 10.0},
    "finetune": {"error_forget": 0.02, "mia_forget_member_rate": 0.85, "relearn_epochs": 2.0},
    "fisher": {"error_retain": 0.30, "error_test": 0.40, "error_forget": 0.5},
    "ntk": {"error_forget": 0.38, "mia_forget_member_rate": 0.42, "relearn_epochs": 9.0},
    "ntk_fisher": {
        "error_forget": 0.41,
        "error_retain": 0.01,
        "error_test": 0.30,
        "mia_forget_member_rate": 0.38,
        "info_weights_nats": 1e5,
        "info_activations_nats_forget": 50.0,
        "info_activations_nats_retain": 5.0,
        "info_activations_nats_test": 8.0,
    },
}
STD = {"retrain": {"error_forget": 0.05, "mia_forget_member_rate": 0.05, "relearn_epochs": 1.0}}


def _results(changes=None, stds=None, path=None):
    methods = {}
    for m, vals in BASE.items():
        mean = {**vals, **(changes or {}).get(m, {})}
        std = {k: 0.0 for k in mean} | STD.get(m, {}) | (stds or {}).get(m, {})
        methods[m] = {"mean": mean, "std": std}
    for m, vals in (changes or {}).items():
        if m not in methods:
            methods[m] = {"mean": vals, "std": {k: 0.0 for k in vals}}
    return {"methods": methods, "activation_path": path or []}


def _verdict(results, cid):
    return next(c for c in claims.evaluate(results) if c["id"] == cid)["holds"]


def test_the_base_case_satisfies_claims_1_to_7():
    r = _results()
    assert [_verdict(r, i) for i in range(1, 8)] == [True] * 7


@pytest.mark.parametrize(
    "cid,changes,stds,expected",
    [
        (1, {"ntk": {"error_forget": 0.10}}, None, False),  # below the band [0.35, 0.45]
        (1, {"ntk_fisher": {"error_forget": 0.46}}, None, False),  # above it
        (1, {"original": {"error_forget": 0.39}}, None, None),  # the cohort does not matter
        (2, {"finetune": {"error_forget": 0.30}}, None, False),  # finetune forgot (0.3 > 0.2)
        (2, {"original": {"error_forget": 0.41}}, None, None),
        (3, {"fisher": {"error_retain": 0.01, "error_test": 0.1}}, None, False),  # cheaper
        (3, {"fisher": {"error_retain": 0.01, "error_test": 0.3}}, None, None),  # as costly
        (3, {}, {"fisher": {"error_retain": 0.5}}, None),  # the gap does not clear the spread
        (4, {"ntk": {"mia_forget_member_rate": 0.6}}, None, False),  # ntk leaks
        (4, {"finetune": {"mia_forget_member_rate": 0.42}}, None, False),  # finetune in band
        (4, {"original": {"mia_forget_member_rate": 0.42}}, None, None),
        (5, {"ntk": {"relearn_epochs": 0.5}}, None, False),  # ntk re-learns like original
        (5, {"ntk": {"relearn_epochs": 1.5}}, None, None),  # closer than original by 0.5 epoch
        (5, {"original": {"relearn_epochs": 10.5}}, None, None),
        (6, {"ntk_fisher": {"info_activations_nats_forget": 2e4}}, None, False),  # only 5x
        (7, {"ntk_fisher": {"info_activations_nats_test": 60.0}}, None, False),
        (7, {"ntk_fisher": {"info_activations_nats_retain": 50.0}}, None, False),  # a tie
    ],
)
def test_claim_verdicts_on_crafted_results(cid, changes, stds, expected):
    assert _verdict(_results(changes, stds), cid) is expected


def test_missing_methods_are_not_evaluated():
    r = _results()
    for m in ("ntk", "ntk_fisher", "finetune", "fisher"):
        del r["methods"][m]
    got = {c["id"]: c for c in claims.evaluate(r)}
    for cid in range(1, 9):
        assert got[cid]["holds"] is None and "not evaluated" in got[cid]["evidence"], cid


def _path(forget, retain, alphas=(0.0, 0.5, 1.0, 1.5), jitter=(0.0, 0.005, -0.005)):
    """Three seeds of one path, ``jitter`` apart (one seed has no spread: issue 30)."""
    return [
        {"method": "ntk", "seed": s, "alpha": a, "forget": f + j, "retain": r + j, "test": 0.1}
        for s, j in enumerate(jitter)
        for a, f, r in zip(alphas, forget, retain, strict=True)
    ]


@pytest.mark.parametrize(
    "forget,retain,expected",
    [
        ([0.50, 0.30, 0.20, 0.22], [0.05, 0.05, 0.06, 0.06], True),  # falls to its minimum
        ([0.50, 0.30, 0.40, 0.45], [0.05, 0.05, 0.06, 0.06], False),  # minimum before 1
        ([0.50, 0.30, 0.20, 0.22], [0.05, 0.15, 0.25, 0.30], False),  # D_r moves as much
        ([0.05, 0.05, 0.05, 0.05], [0.05, 0.05, 0.05, 0.05], None),  # D_f no farther than D_r
        ([0.50, 0.30, 0.20, 0.19], [0.05, 0.05, 0.06, 0.06], None),  # minimum at the grid's end
    ],
)
def test_claim_8_on_crafted_paths(forget, retain, expected):
    r = _results(path=_path(forget, retain))
    r["methods"]["original"]["mean"]["l1_to_retrain_forget"] = forget[0]
    r["methods"]["retrain"]["mean"]["l1_to_retrain_forget"] = 0.0
    if expected is None:
        r["methods"]["original"]["std"]["l1_to_retrain_forget"] = 0.1
    assert _verdict(r, 8) is expected


def _tradeoff(fisher, ntk_fisher, alphas=(1e-8, 1e-6)):
    """Trade-off rows: ``fisher``/``ntk_fisher`` are per-seed lists of white-box nats, the same
    at every alpha."""
    rows = []
    for a in alphas:
        for method, vals in (("fisher", fisher), ("ntk_fisher", ntk_fisher)):
            for seed, v in enumerate(vals):
                rows.append({"method": method, "seed": seed, "alpha": a, "info_weights_nats": v})
    return rows


@pytest.mark.parametrize(
    "fisher,ntk_fisher,expected",
    [
        ([100.0, 120.0], [10.0, 12.0], True),  # lower on every seed at every alpha
        ([100.0, 120.0], [200.0, 300.0], False),  # higher on every seed
        ([100.0, 120.0], [50.0, 300.0], None),  # the seeds disagree
        ([100.0, 120.0], [100.0, 120.0], None),  # equal: neither lower nor higher
    ],
)
def test_claim_9_compares_at_common_alpha_per_seed(fisher, ntk_fisher, expected):
    r = _results()
    r["tradeoff"] = _tradeoff(fisher, ntk_fisher)
    assert _verdict(r, 9) is expected


def test_claim_9_without_a_trade_off_grid_is_not_evaluated():
    c = next(c for c in claims.evaluate(_results()) if c["id"] == 9)
    assert c["holds"] is None and "not evaluated" in c["evidence"]


def _with_seeds(r, method, rows):
    r["methods"][method]["per_seed"] = [{"seed": s, **row} for s, row in enumerate(rows)]


def test_claims_6_and_7_need_every_seed():
    r = _results()
    nf = BASE["ntk_fisher"]
    good = dict(nf)
    bad = {**nf, "info_activations_nats_forget": 1.0, "info_weights_nats": 1.0}  # 10 x 1 > 1
    _with_seeds(r, "ntk_fisher", [good, bad])
    assert _verdict(r, 6) is None  # one seed each way
    _with_seeds(r, "ntk_fisher", [good, good])
    assert _verdict(r, 6) is True
    _with_seeds(r, "ntk_fisher", [bad, bad])
    assert _verdict(r, 6) is False
    # claim 7: D_f above D_r and test on one seed only -> inconclusive
    low = {**nf, "info_activations_nats_forget": 1.0}
    _with_seeds(r, "ntk_fisher", [good, low])
    assert _verdict(r, 7) is None
    _with_seeds(r, "ntk_fisher", [low, low])
    assert _verdict(r, 7) is False


def test_claims_6_7_and_9_decide_nothing_on_one_seed():
    r = _results()
    _with_seeds(r, "ntk_fisher", [dict(BASE["ntk_fisher"])])
    r["tradeoff"] = _tradeoff([100.0], [10.0])
    assert [_verdict(r, i) for i in (6, 7, 9)] == [True, True, True]  # no seeds record
    r["seeds"] = [0]
    for cid in (6, 7, 9):
        c = next(c for c in claims.evaluate(r) if c["id"] == cid)
        assert c["holds"] is None and "one seed: no spread" in c["evidence"]
    r["seeds"] = [0, 1]
    _with_seeds(r, "ntk_fisher", [dict(BASE["ntk_fisher"])] * 2)
    r["tradeoff"] = _tradeoff([100.0, 120.0], [10.0, 12.0])
    assert [_verdict(r, i) for i in (6, 7, 9)] == [True, True, True]


def test_a_readout_at_its_cap_makes_claim_5_inconclusive():
    r = _results()
    r["config"] = {"relearn_max_epochs": 20}
    assert _verdict(r, 5) is True  # retrain's 10 epochs are below the cap
    _with_seeds(r, "retrain", [{"relearn_epochs": 20.0}, {"relearn_epochs": 0.0}])
    c = next(c for c in claims.evaluate(r) if c["id"] == 5)
    assert c["holds"] is None and "cap of 20" in c["evidence"]  # one seed at the cap


@pytest.mark.parametrize(
    "which,train_error,expected_inconclusive",
    [
        ("retrain", 0.20, {1, 2, 4, 5, 6, 7}),  # every claim comparing with retrain
        ("original", 0.20, {1, 2, 3, 4, 5, 6, 7}),  # every claim
        ("retrain", 0.01, set()),  # converged: no caveat
    ],
)
def test_a_training_warning_downgrades_the_verdicts_that_depend_on_it(
    which, train_error, expected_inconclusive
):
    r = _results()
    r["methods"]["fisher"]["mean"] |= {"error_retain": 0.3}
    other = "original" if which == "retrain" else "retrain"
    r["training"] = [{"seed": 0, which: {"train_error": train_error, "epochs": 100}, other: {}}]
    got = {c["id"]: c for c in claims.evaluate(r)}
    for cid in range(1, 8):
        if cid in expected_inconclusive:
            assert got[cid]["holds"] is None and "downgraded" in got[cid]["evidence"], cid
            assert got[cid]["verdict_before_caveat"] == "holds", cid
        else:
            assert got[cid]["holds"] is True, cid


def test_every_claim_states_its_rule():
    for c in claims.evaluate(_results()):
        assert c["rule"] and c["rule"] == claims.RULES[c["id"]]
