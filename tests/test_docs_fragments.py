"""Every number the docs quote from a measurement is generated from its JSON
(``benchmarks/fragments.py``): a fragment that differs from what its JSON gives fails here."""

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _fragments():
    spec = importlib.util.spec_from_file_location("fragments", ROOT / "benchmarks/fragments.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_fragment_is_what_its_json_gives():
    fragments = _fragments()
    stale = []
    for path in fragments.documents(ROOT):
        _, changed = fragments.render(path.read_text(), ROOT)
        stale += [f"{path.name}: {name}" for name in changed]
    assert not stale, f"run `python benchmarks/fragments.py`: {stale}"


def test_a_stale_fragment_is_found_and_ratios_read_as_slower():
    fragments = _fragments()
    text = "a\n<!-- fragment: certified-cost -->\nold numbers\n<!-- /fragment -->\nb\n"
    new, changed = fragments.render(text, ROOT)
    assert changed == ["certified-cost"] and "old numbers" not in new
    assert fragments.render(new, ROOT)[1] == []
    assert fragments.speed(0.8) == "1.2× slower" and fragments.speed(4.0) == "4.0× faster"


def test_a_pre_alignment_caveat_cannot_outlive_a_rerun(monkeypatch):
    fragments = _fragments()
    name, commit = "cifar5-allcnn-evaluate", "5a2650e"
    monkeypatch.setitem(fragments.PRE_ALIGNMENT, name, commit)
    scored = {"provenance": {"source": {"commit": commit + "0" * 33}}}
    assert "before the scores were aligned" in fragments.scored_before_alignment(scored, name)
    assert fragments.scored_before_alignment(scored, "digits-evaluate") == ""
    rerun = {"provenance": {"source": {"commit": "f" * 40}}}
    try:
        fragments.scored_before_alignment(rerun, name)
    except ValueError as exc:
        assert "drop it from PRE_ALIGNMENT" in str(exc)
    else:
        raise AssertionError("a rescored evaluation kept its caveat")


def test_the_certificates_cap_on_balanced_accuracy_is_the_largest_the_region_allows():
    import math

    import torch

    cap = _fragments().largest_balanced_accuracy
    assert abs(cap(1.0, 0.0) - math.e / (1 + math.e)) < 1e-15
    for eps, delta in ((1.0, 1e-5), (0.5, 0.01), (3.0, 0.0)):
        # every (FPR, TPR) on a fine grid inside both (ε, δ) constraints
        fpr, tpr = torch.meshgrid(
            torch.linspace(0, 1, 2001, dtype=torch.float64),
            torch.linspace(0, 1, 2001, dtype=torch.float64),
            indexing="ij",
        )
        ok = (tpr <= math.exp(eps) * fpr + delta) & (1 - fpr <= math.exp(eps) * (1 - tpr) + delta)
        best = ((tpr + 1 - fpr) / 2)[ok].max().item()
        assert best <= cap(eps, delta) + 1e-12 and best > cap(eps, delta) - 1e-3


# tables without measured numbers (formulas), allowed outside fragments
FORMULA_TABLES = ("| path | time | memory (beyond the model and one data chunk) |",)


def test_every_table_of_measurements_is_generated():
    import re

    marker = re.compile(r"<!-- fragment: [a-z0-9_-]+ -->\n.*?<!-- /fragment -->", re.S)
    for name in ("docs/benchmarks.md", "docs/cost-model.md"):
        outside = marker.sub("", (ROOT / name).read_text()).splitlines()
        heads = [outside[i - 1] for i, line in enumerate(outside) if line.startswith("|---")]
        typed = [h for h in heads if h not in FORMULA_TABLES]
        assert not typed, f"{name}: tables typed by hand (generate them in benchmarks/table.py)"


def _judged(flag):
    return {"difference": 0.1, "interval": [-0.1, 0.3], "distinguishable": flag}


def test_the_readme_table_counts_an_interval_only_where_there_is_one(tmp_path):
    """≈ only for an interval that includes 0 (None: no interval, 'n/a'); a score the original
    is not told apart by is called no evidence; diverged models are counted per method."""
    fragments = _fragments()
    ar = {
        "original": {"klom_forget": _judged(False), "challenge_points": _judged(True)},
        "ntk": {"klom_forget": _judged(None), "challenge_points": _judged(False)},
        "scrub": {"klom_forget": _judged(True), "challenge_points": _judged(False)},
    }
    assert fragments.unresolved(ar) == {
        "the challenge's points": ["ntk", "scrub"],
        "KLoM on D_f": [],
    }
    assert fragments.blind_scores(ar) == ["klom_forget"]
    assert "KLoM on D_f either" in fragments.blind_words(ar)
    assert fragments.blind_words({"original": {"klom_forget": _judged(None)}}) == ""

    readouts = {"error_test": {"median": 0.3}}
    method = {"readouts": readouts, "seconds": [2.0, 4.0, 6.0]}
    d = {
        "config": {
            "evaluate": {"models": 3},
            "experiment": {"forget_class": 0, "num_to_forget": 5},
        },
        "task": {"n_forget": 5, "n_train": 50},
        "bands": {"error_test": {"low": 0.25, "high": 0.35}},
        "against_retrain": ar,
        "methods": {
            "original": method,
            "retrain": {**method, "seconds": [8.0, 8.0, 9.0]},
            "ntk": {**method, "diverged": [1]},
            "scrub": method,
        },
    }
    rows = {
        line.split(" | ")[0]: line
        for line in fragments._problem_table(d, "P", {("scrub", "challenge_points"): True})
    }
    ntk = rows["| ntk (2 of 3 models; 1 diverged)"]
    assert "n/a" in ntk and "2.0× faster" in ntk  # median 4 s against the retrain row's 8 s
    assert "≠ when rerun on another processor" in rows["| scrub"]
    assert rows["| original"].split(" | ")[2] == "—"  # not timed
