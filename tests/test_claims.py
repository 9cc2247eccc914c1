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
        (3, {"fisher": {"error_retain": 0.01, "error_test": 0.3}}, None, False),  # no costlier
        (3, {}, {"fisher": {"error_retain": 0.5}}, False),  # the gap does not clear the spread
        (4, {"ntk": {"mia_forget_member_rate": 0.6}}, None, False),  # ntk leaks
        (4, {"finetune": {"mia_forget_member_rate": 0.42}}, None, False),  # finetune in band
        (4, {"original": {"mia_forget_member_rate": 0.42}}, None, None),
        (5, {"ntk": {"relearn_epochs": 1.5}}, None, False),  # ntk re-learns like original
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


def _path(forget, retain):
    alphas = [0.0, 0.5, 1.0, 1.5]
    return [
        {"method": "ntk", "seed": 0, "alpha": a, "forget": f, "retain": r, "test": 0.1}
        for a, f, r in zip(alphas, forget, retain, strict=True)
    ]


@pytest.mark.parametrize(
    "forget,retain,expected",
    [
        ([0.50, 0.30, 0.20, 0.22], [0.05, 0.05, 0.06, 0.06], True),  # falls to its minimum
        ([0.50, 0.30, 0.40, 0.45], [0.05, 0.05, 0.06, 0.06], False),  # minimum before 1
        ([0.50, 0.30, 0.20, 0.22], [0.05, 0.15, 0.25, 0.30], False),  # D_r moves as much
        ([0.05, 0.05, 0.05, 0.05], [0.05, 0.05, 0.05, 0.05], None),  # D_f no farther than D_r
    ],
)
def test_claim_8_on_crafted_paths(forget, retain, expected):
    r = _results(path=_path(forget, retain))
    r["methods"]["original"]["mean"]["l1_to_retrain_forget"] = forget[0]
    r["methods"]["retrain"]["mean"]["l1_to_retrain_forget"] = 0.0
    if expected is None:
        r["methods"]["original"]["std"]["l1_to_retrain_forget"] = 0.1
    assert _verdict(r, 8) is expected
