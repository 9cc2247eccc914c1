"""Property-based tests of the index-file and configuration parsers (hypothesis)."""

import string
import tempfile
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from forgetbox.data import DataError, read_index_file
from forgetbox.experiment.config import ExperimentConfig, config_from_dict
from forgetbox.experiment.schema import SPECS

SEPARATORS = st.sampled_from([" ", ",", ", ", "\n", "\t", "\n\n", " ,"])


def _write(text: str) -> Path:
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as fh:
        fh.write(text)
    return Path(fh.name)


@given(
    st.lists(st.integers(0, 999), unique=True, max_size=40),
    st.lists(SEPARATORS, min_size=41, max_size=41),
    st.booleans(),
)
@settings(max_examples=150, deadline=None)
def test_index_files_round_trip(indices, seps, comment):
    text = "".join(f"{i}{sep}" for i, sep in zip(indices, seps, strict=False))
    if comment:
        text = "# cohort of request 7\n" + text + "  # trailing note, 12 13\n"
    assert read_index_file(_write(text)) == indices
    if indices:  # checked as a cohort of 1000 samples, the same list comes back
        assert read_index_file(_write(text), n=1000) == indices


@given(st.lists(st.integers(0, 50), min_size=1, max_size=20, unique=True), st.integers(0, 19))
@settings(max_examples=100, deadline=None)
def test_index_file_errors_name_the_line(indices, where):
    lines = [str(i) for i in indices]
    k = where % len(lines)
    lines[k] = "x" + lines[k]
    with pytest.raises(DataError, match=f"line {k + 1}: "):
        read_index_file(_write("\n".join(lines)), n=100)


@given(st.lists(st.integers(-(2**80), 2**80), min_size=1, max_size=10), st.integers(1, 200))
@settings(max_examples=150, deadline=None)
def test_index_files_accept_exactly_the_valid_sets(values, n):
    """Either the list comes back as written (a cohort: indices in range, unique, leaving some
    of the training set), or the error names a line of the file (or the whole cohort)."""
    text = "\n".join(map(str, values))
    valid = all(0 <= v < n for v in values) and len(set(values)) == len(values)
    if valid and len(values) >= n:
        with pytest.raises(DataError, match="whole training set"):
            read_index_file(_write(text), n=n)
        return
    if valid:
        assert read_index_file(_write(text), n=n) == values
    else:
        with pytest.raises(DataError, match=r"line \d+: "):
            read_index_file(_write(text), n=n)


VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-5, 500),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(string.ascii_lowercase + ":-_", max_size=12),
    st.lists(st.integers(-3, 5), max_size=4),
    st.lists(st.text(string.ascii_lowercase, max_size=8), max_size=3),
    st.lists(st.floats(allow_nan=True), max_size=3),
)


@given(st.dictionaries(st.sampled_from(sorted(SPECS) + ["bogus"]), VALUES, max_size=4))
@settings(max_examples=400, deadline=None)
def test_config_parser_accepts_or_refuses_cleanly(doc):
    """Any TOML-like table gives a valid configuration or a ValueError naming a key, never
    another exception, and an accepted one resolves (or is refused) the same way."""
    try:
        cfg = config_from_dict(doc)
    except ValueError as exc:
        assert any(k in str(exc) for k in doc), (doc, str(exc))
        return
    assert isinstance(cfg, ExperimentConfig)
    for key, value in doc.items():
        if SPECS[key].kind in ("ints", "floats", "strs") and value is not None:
            assert isinstance(getattr(cfg, key), tuple)
    try:
        cfg.resolved()
    except ValueError as exc:
        assert str(exc)
