"""Verdicts that never outrun their numbers (issue 30): a condition is decided only when its
margin is at least the readout's resolution (one sample of the set it counts) and the seeds'
spread; a vacuous bound or a path minimum at the grid's end decides nothing; a committed
ensemble of the same setup cross-checks the verdicts."""

import json
import math
from pathlib import Path

import numpy as np
import pytest

from forgetbox.audit.band import band_of
from forgetbox.experiment import claims
from forgetbox.experiment.cross_check import (
    cross_check,
    ensemble_readings,
    ensemble_spread,
    matching_evaluations,
)
from forgetbox.experiment.evidence import Margin, bootstrap_half_width, resolution, sizes, spread
from forgetbox.experiment.rerender import rerender

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"
CONFIG = {
    "dataset": "cifar10-npz",
    "model": "allcnn",
    "width": 0.4,
    "profile": "cpu",
    "forget_class": 0,
    "num_to_forget": 25,
    "train_per_class": 100,
    "test_per_class": 100,
    "relearn_max_epochs": 30,
}
# per-seed values, three seeds: a run where every claim that can hold does, by several samples
SEEDS = {
    "original": {"error_forget": [0, 0, 0], "mia_forget_member_rate": [0.92, 0.92, 0.96]},
    "retrain": {"error_forget": [0.40, 0.40, 0.44], "mia_forget_member_rate": [0.40, 0.44, 0.40]},
    "finetune": {"error_forget": [0, 0, 0.04], "mia_forget_member_rate": [0.88, 0.92, 0.88]},
    "ntk": {"error_forget": [0.40, 0.44, 0.40], "mia_forget_member_rate": [0.44, 0.40, 0.40]},
    "ntk_fisher": {
        "error_forget": [0.40, 0.40, 0.44],
        "mia_forget_member_rate": [0.40, 0.40, 0.44],
    },
}


def _run(seeds=SEEDS, config=CONFIG, shift=None):
    """Results with per-seed rows; ``shift``: ``{(method, key): added to every seed}``."""
    methods = {}
    for m, keys in seeds.items():
        rows = [{"seed": s} for s in range(len(next(iter(keys.values()))))]
        for k, vals in keys.items():
            for row, v in zip(rows, vals, strict=True):
                row[k] = v + (shift or {}).get((m, k), 0.0)
        mean = {k: float(np.mean([r[k] for r in rows])) for k in keys}
        std = {k: float(np.std([r[k] for r in rows], ddof=1)) if len(rows) > 1 else 0.0
               for k in keys}  # fmt: skip
        methods[m] = {"per_seed": rows, "mean": mean, "std": std}
    return {"config": dict(config), "seeds": [0, 1, 2], "methods": methods}


def _claim(results, cid):
    return next(c for c in claims.evaluate(results) if c["id"] == cid)


def test_the_bootstrap_half_width_matches_a_hand_count():
    # resamples of (0, 0, 1): 27 equally likely means, 8 x 0, 12 x 1/3, 6 x 2/3, 1 x 1; the
    # 97.5 % quantile (linear) lies 0.35 of the way from the 26th to the 27th: 2/3 + 0.35 / 3
    assert bootstrap_half_width([0.0, 0.0, 1.0]) == pytest.approx(2 / 3 + 0.35 / 3 - 1 / 3)
    assert bootstrap_half_width([0.5, 0.5]) == 0.0
    assert bootstrap_half_width([1.0]) == 0.0


def test_the_spread_is_the_larger_of_the_standard_deviation_and_the_bootstrap():
    v = [0.64, 0.64, 0.76]  # bootstrap means 8 x 0.64, 12 x 0.68, 6 x 0.72, 1 x 0.76
    assert bootstrap_half_width(v) == pytest.approx(0.72 + 0.35 * 0.04 - 0.68)
    assert spread(v) == pytest.approx(np.std(v, ddof=1))  # 0.069, wider than 0.054
    # on a few seeds the 95 % bootstrap interval of the mean is mostly the narrower of the two
    for skewed in ([0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0], [0.0] * 5 + [1.0], [0.0, 0.0, 1.0, 5.0]):
        assert bootstrap_half_width(skewed) <= np.std(skewed, ddof=1) + 1e-12
        assert spread(skewed) == pytest.approx(np.std(skewed, ddof=1))
    # but not always: of the 256 resamples of (0, 0, -2, 10), the 249th and 250th (sorted) both
    # have three 10s and a 0, mean 7.5, so the upper side is 7.5 - 2 = 5.5 > sd 5.42
    wide = [0.0, 0.0, -2.0, 10.0]
    assert bootstrap_half_width(wide) == pytest.approx(5.5)
    assert spread(wide) == pytest.approx(5.5) and np.std(wide, ddof=1) < 5.5
    assert spread([0.3]) == math.inf  # one seed: no spread known
    assert spread(None, 0.05) == 0.05  # only the recorded standard deviation
    many = list(np.linspace(0, 1, 12))
    assert spread(many) == pytest.approx(np.std(many, ddof=1))  # the bootstrap is narrower


def test_sizes_and_resolutions_come_from_the_task_or_the_configuration():
    assert sizes({"config": CONFIG}) == {"forget": 25, "retain": 475, "test": 500}
    task = {"n_forget": 20, "n_retain": 80, "n_test": 676, "n_train": 100, "num_classes": 5}
    assert sizes({"config": {"dataset": "digits"}, "task": task}) == {
        "forget": 20,
        "retain": 80,
        "test": 676,
    }
    whole = dict(CONFIG, dataset="digits", num_to_forget=None, train_per_class=20)
    assert sizes({"config": whole})["forget"] == 20  # the whole class
    assert sizes({"config": whole})["test"] is None  # digits' test set: the rest, not recorded
    assert resolution({"config": CONFIG}, "error_forget")[0] == pytest.approx(1 / 25)
    assert resolution({"config": CONFIG}, "error_retain")[0] == pytest.approx(1 / 475)
    assert resolution({"config": CONFIG}, "relearn_epochs")[0] == 1.0
    assert resolution({}, "error_forget")[0] == 0.0


def test_a_margin_decides_only_beyond_its_resolution_and_spread():
    assert Margin("x", 0.02, 0.04, 0.0).holds is None  # half a sample
    assert Margin("x", -0.02, 0.04, 0.0).holds is None
    assert Margin("x", 0.12, 0.04, 0.01).holds is True  # three samples, small spread
    assert Margin("x", -0.12, 0.04, 0.01).holds is False
    assert Margin("x", 0.12, 0.04, 0.2).holds is None  # the spread is wider
    assert Margin("x", 0.12, 0.04, math.inf).holds is None  # one seed
    assert Margin("x", 0.0, 0.0, 0.0).holds is None


def test_the_crafted_run_holds_claims_1_2_and_4_by_several_samples():
    r = _run()
    for cid in (1, 2, 4):
        c = _claim(r, cid)
        assert c["verdict"] == "holds", c
        assert "margin:" in c["evidence"] and "needs" in c["evidence"]


@pytest.mark.parametrize(
    "shift,expected",
    [
        (0.0, "holds"),  # ntk at retrain's mean, one sample from either edge
        (0.02, "inconclusive"),  # 0.02 inside the band's top: half a sample
        (0.06, "inconclusive"),  # 0.02 outside: half a sample
        (0.24, "fails"),  # 0.2 outside: five samples, small spread
    ],
)
def test_claim_1_needs_a_margin_of_one_d_f_sample(shift, expected):
    # band: retrain 0.413 +- max(std 0.023, 0.02, 1/25) = [0.373, 0.453]; ntk at 0.413 + shift
    r = _run(shift={("ntk", "error_forget"): shift})
    assert _claim(r, 1)["verdict"] == expected


def test_claim_4_fine_tune_half_a_sample_above_the_band_is_inconclusive():
    # the band's top is 0.463 (retrain 0.413 + the tolerance 0.05); finetune lowered from 0.893
    # to 0.483, 0.02 above it: half a sample
    r = _run(shift={("finetune", "mia_forget_member_rate"): -0.41})
    c = _claim(r, 4)
    assert c["verdict"] == "inconclusive"
    assert "finetune above band +0.02" in c["evidence"]


def test_a_wide_seed_spread_makes_a_clear_mean_inconclusive():
    seeds = json.loads(json.dumps(SEEDS))
    seeds["ntk"]["error_forget"] = [0.10, 0.40, 0.74]  # mean 0.413, inside, seeds far apart
    assert _claim(_run(seeds), 1)["verdict"] == "inconclusive"


def test_one_seed_decides_nothing():
    seeds = {m: {k: v[:1] for k, v in keys.items()} for m, keys in SEEDS.items()}
    r = _run(seeds)
    for m in r["methods"].values():
        m["per_seed"] = m["per_seed"][:1]
    assert _claim(r, 1)["verdict"] == "inconclusive"
    assert "one seed" in _claim(r, 1)["evidence"]


def _bounds_run(white, black, content_factor):
    """ntk_fisher's bounds on three seeds in a run whose cohort holds ``content_factor`` x the
    white-box bound of seed 0."""
    n = 25
    content = n * 3 * 32 * 32 * math.log(256)
    scale = content / (content_factor * white[0])
    r = _run()
    rows = r["methods"]["ntk_fisher"]["per_seed"]
    for row, w, b in zip(rows, white, black, strict=True):
        row |= {
            "info_weights_nats": w * scale,
            "info_activations_nats_forget": b * scale,
            "info_activations_nats_retain": b * scale / 3,
            "info_activations_nats_test": b * scale / 4,
        }
    r["tradeoff"] = [
        {"method": m, "seed": s, "alpha": 1e-6, "info_weights_nats": w * scale * f}
        for s, w in enumerate(white)
        for m, f in (("fisher", 2.0), ("ntk_fisher", 1.0))
    ]
    return r


@pytest.mark.parametrize("cid", [6, 7, 9])
def test_a_vacuous_bound_makes_a_bound_comparison_inconclusive(cid):
    white, black = [100.0, 120.0, 110.0], [1.0, 1.2, 1.1]
    assert _claim(_bounds_run(white, black, 10.0), cid)["verdict"] == "holds"
    vacuous = _claim(_bounds_run(white, black, 0.001), cid)  # black box 10x the content
    assert vacuous["verdict"] == "inconclusive"
    assert "vacuous" in vacuous["evidence"]


def test_a_path_minimum_at_the_grids_end_is_inconclusive():
    def path(forget):
        return [
            {"method": "ntk", "seed": s, "alpha": a, "forget": f + j, "retain": 0.05, "test": 0.1}
            for s, j in enumerate((0.0, 0.004, -0.004))
            for a, f in zip((0.0, 0.5, 1.0, 1.5), forget, strict=True)
        ]

    r = _run()
    r["activation_path"] = path([0.6, 0.3, 0.2, 0.25])
    assert _claim(r, 8)["verdict"] == "holds"
    r["activation_path"] = path([0.6, 0.3, 0.2, 0.19])  # still falling at 1.5
    c = _claim(r, 8)
    assert c["verdict"] == "inconclusive" and "end of the alpha grid" in c["evidence"]


@pytest.mark.parametrize(
    "run,cid",
    [
        ("cifar5-allcnn-cpu", 4),  # finetune 0.773 above the top 0.743: under one sample
        ("cifar5-resnet18-cpu", 4),  # rerun: ntk inside the band by less than the spread
        ("tiny5-resnet18-cpu", 1),  # ntk outside the band by 0.033
        ("cifar5-allcnn-cpu-authors", 8),  # by 0.007, the minimum at the grid's end
    ],
)
def test_the_committed_verdicts_issue_30_named_are_inconclusive(run, cid):
    r = json.loads((DOCS / run / "results.json").read_text())
    assert _claim(r, cid)["verdict"] == "inconclusive"


def _evaluation(ntk_rate, config=CONFIG, models=8):
    """A crafted evaluation.json: the retrain row's member-rate band [0.36, 0.48]."""
    medians = {"original": 0.92, "finetune": 0.9, "ntk": ntk_rate, "ntk_fisher": ntk_rate}
    methods = {}
    for m, v in medians.items():
        readouts = {
            "mia_forget_member_rate": {"median": v, "values": [v] * models, "models_outside": 0},
            "error_forget": {"median": 0.4, "values": [0.4] * models, "models_outside": 0},
        }
        if m in ("original", "finetune"):
            readouts["error_forget"] |= {"median": 0.0, "values": [0.0] * models}
        methods[m] = {"readouts": readouts}
    return {
        "kind": "forgetbox-evaluation/1",
        "config": {"experiment": dict(config), "evaluate": {"models": models}},
        "methods": methods,
        "bands": {
            "mia_forget_member_rate": {"low": 0.36, "high": 0.48, "median": 0.42},
            "error_forget": {"low": 0.32, "high": 0.48, "median": 0.4},
            "l1_to_retrain_forget": {"low": 0.1, "high": 0.3, "median": 0.2},
        },
    }


def test_the_ensemble_contradicts_a_verdict_it_reads_the_other_way(tmp_path):
    run = _run()
    run["claims"] = claims.evaluate(run)
    assert _claim(run, 4)["verdict"] == "holds"
    agrees = cross_check(run, tmp_path, _evaluation(0.42))
    assert {c["id"]: c["flag"] for c in agrees["claims"]}[4] == "agrees"
    leaks = cross_check(run, tmp_path, _evaluation(0.60))  # ntk 0.12 above the ensemble's band
    row = next(c for c in leaks["claims"] if c["id"] == 4)
    assert (row["run"], row["ensemble"], row["flag"]) == ("holds", "fails", "contradicted")
    assert leaks["l1_floor"]["forget"]["median"] == 0.2
    # half a sample above the ensemble's band: the ensemble decides nothing
    assert ensemble_readings(run, _evaluation(0.50))[4][0] is None


def _with_retrain_row(ev, key, retrain, **methods):
    """``ev`` with the retrain row's per-model values of ``key`` (the band made from them) and
    the given methods' values."""
    ev = json.loads(json.dumps(ev))
    b = band_of(retrain)
    ev["bands"][key] |= {"low": b.low, "high": b.high, "median": b.median}
    ev["methods"]["retrain"] = {"readouts": {key: {"median": b.median, "values": list(retrain)}}}
    for m, v in methods.items():
        ev["methods"][m]["readouts"][key] |= {"median": float(np.median(v)), "values": list(v)}
    return ev


def test_the_ensemble_decides_only_beyond_the_spread_of_its_models():
    run = _run()
    run["claims"] = claims.evaluate(run)
    key = "mia_forget_member_rate"
    retrain = [0.36, 0.38, 0.4, 0.42, 0.42, 0.44, 0.46, 0.48]
    # the spread of one method's median is the seeded bootstrap of evidence.py, drawn alike
    ev = _with_retrain_row(_evaluation(0.6), key, retrain)
    med = ensemble_spread(ev, lambda s: s["r"], {"r": ("retrain", key, "median")})
    assert med == pytest.approx(bootstrap_half_width(retrain, np.median), abs=1e-12) and med > 0
    # ntk tight, well above the band: above it by more than one sample and the spread
    tight = _with_retrain_row(_evaluation(0.6), key, retrain, ntk=[0.6] * 8, ntk_fisher=[0.6] * 8)
    holds, text = ensemble_readings(run, tight)[4]
    assert holds is False
    # the same median from models that scatter: the margin no longer clears the spread
    wide = [0.4, 0.44, 0.5, 0.58, 0.62, 0.7, 0.72, 0.9]
    loose = _with_retrain_row(_evaluation(0.6), key, retrain, ntk=wide, ntk_fisher=wide)
    holds, text = ensemble_readings(run, loose)[4]
    assert holds is None and "bootstrap over the K models" in text
    # without the retrain row's values the spread is unknown and only the resolution counts
    assert ensemble_readings(run, _evaluation(0.6))[4][0] is False


def test_only_an_evaluation_of_the_same_setup_is_matched(tmp_path):
    others = (
        ("other", dict(CONFIG, num_to_forget=None)),
        ("linearized", dict(CONFIG, linearized=True)),  # the certified path's evaluation
        ("subset", dict(CONFIG, trainable="classifier.*")),
        ("tuned noise", dict(CONFIG, alpha_fisher=1e-7)),  # claim 3 compares fisher's cost
    )
    for name, cfg in (("same", CONFIG), *others):
        (tmp_path / name).mkdir()
        (tmp_path / name / "evaluation.json").write_text(json.dumps(_evaluation(0.6, cfg)))
    found = matching_evaluations(_run(), tmp_path.iterdir())
    assert [f.name for f, _ in found] == ["same"]


def test_the_cross_check_takes_the_largest_ensemble_of_the_setup(tmp_path):
    for name, k in (("a-small", 8), ("b-large", 16), ("c-large-too", 16)):
        ev = _evaluation(0.6, models=k)
        (tmp_path / name).mkdir()
        (tmp_path / name / "evaluation.json").write_text(json.dumps(ev))
    out = claims.judge(_run(), evaluations=list(tmp_path.iterdir()))
    assert out["cross_check"]["evaluation"] == "b-large"


def test_rerender_writes_the_cross_check_into_the_report(tmp_path):
    run_dir, ev_dir = tmp_path / "run", tmp_path / "evaluate"
    run_dir.mkdir()
    ev_dir.mkdir()
    committed = json.loads((DOCS / "cifar5-allcnn-cpu" / "results.json").read_text())
    (run_dir / "results.json").write_text(json.dumps(committed))
    ev = json.loads((DOCS / "cifar5-allcnn-evaluate" / "evaluation.json").read_text())
    (ev_dir / "evaluation.json").write_text(json.dumps(ev))
    rerender(run_dir)
    out = json.loads((run_dir / "results.json").read_text())
    row = next(c for c in out["cross_check"]["claims"] if c["id"] == 4)
    assert row["ensemble"] == "fails"  # ntk 0.78 against the ensemble's band [0.64, 0.72]
