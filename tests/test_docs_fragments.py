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


def test_a_pre_alignment_caveat_cannot_outlive_a_rerun():
    fragments = _fragments()
    name, commit = next(iter(fragments.PRE_ALIGNMENT.items()))
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
