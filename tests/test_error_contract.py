"""The error contract, closed: files that are damaged or malformed (a truncated ``.npz``, a
prepared state's ``prepared.json``, a run's ``results.json``, an ``evaluation.json``, a
stage-cache entry), numerical failures and exhausted memory, and ``forgetbox evaluate``'s bad
input. Every case: exit status 2, exactly one line on standard error starting ``error: ``, no
traceback, and no file under the case's folder or the shared inputs created, changed or
removed (SHA-256 of every file before and after)."""

import copy
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from forgetbox import cli
from tests.conftest import argv as base_argv
from tests.test_bad_inputs import _tree

DOCS = Path(__file__).resolve().parents[1] / "docs" / "results"
RUN = DOCS / "digits-default" / "results.json"
EVALUATION = DOCS / "digits-evaluate" / "evaluation.json"
TINY = ["--profile", "quick", "--train-per-class", "10", "--num-to-forget", "5"]
EVAL = ["--models", "3", "--shadow-models", "0", "--eval-methods", "original,retrain"]


def _run_cli(args, capsys):
    capsys.readouterr()
    try:
        code = cli.main([str(a) for a in args])
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


def _refused(args, message, roots, capsys):
    """``args`` exits 2 with one line naming ``message``, and nothing under ``roots``
    changes."""
    before = _tree(*roots)
    code, out, err = _run_cli(args, capsys)
    lines = err.strip().splitlines()
    assert code == 2, (args, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    assert message in lines[0], (message, lines[0])
    assert _tree(*roots) == before, "a file was created, changed or removed"
    return lines[0]


@pytest.fixture(scope="module")
def inputs(trained, tmp_path_factory):
    """The shared model and data, a prepared state, and damaged copies of the data file."""
    root = trained[0]
    base = tmp_path_factory.mktemp("contract")
    assert cli.main(base_argv("prepare", root, base / "prep")) == 0
    raw = (root / "data.npz").read_bytes()
    (base / "truncated.npz").write_bytes(raw[: len(raw) // 2])
    header = bytearray(raw)  # the first array's header (Python literal) garbled
    at = raw.index(b"{'descr'")
    header[at : at + 12] = b"{'descr': ((("
    (base / "bad-header.npz").write_bytes(bytes(header))
    np.save(base / "one-array.npy", np.zeros(3))
    shutil.copy(base / "one-array.npy", base / "one-array.npz")
    return root, base


# ------------------------------------------------------------------ damaged data files


@pytest.mark.parametrize(
    "name,message",
    [
        ("truncated.npz", "truncated or corrupt (BadZipFile"),
        ("bad-header.npz", "truncated or corrupt"),
        ("one-array.npz", "a single array (.npy), not an .npz"),
    ],
)
@pytest.mark.parametrize("command", ["scrub", "prepare"])
def test_a_damaged_npz_is_refused_naming_it(inputs, tmp_path, capsys, name, message, command):
    root, base = inputs
    args = base_argv(command, root, tmp_path / "out")
    args[args.index("--data") + 1] = str(base / name)
    if command == "scrub":
        args += ["--forget", str(root / "forget.txt"), "--method", "ntk"]
    line = _refused(args, message, (tmp_path, root, base), capsys)
    assert str(base / name) in line


def test_a_damaged_npz_is_refused_by_run_and_evaluate(inputs, tmp_path, capsys):
    root, base = inputs
    for command in ("run", "evaluate"):
        args = [command, *TINY, "--dataset", f"npz:{base / 'truncated.npz'}"]
        _refused([*args, "--out", tmp_path / command], "truncated or corrupt", (tmp_path,), capsys)


# ------------------------------------------------------------- a prepared state's manifest


def _manifest_case(change):
    def edit(doc):
        doc = copy.deepcopy(doc)
        change(doc)
        return doc

    return edit


MANIFESTS = {
    "files a list": (
        _manifest_case(lambda d: d.update(files=list(d["files"]))),
        "field 'files' must map file names to SHA-256, got list",
    ),
    "files a string": (
        _manifest_case(lambda d: d.update(files="kernel.safetensors")),
        "field 'files' must map",
    ),
    "kernel digest a number": (
        _manifest_case(lambda d: d["files"].update({"kernel.safetensors": 5})),
        "field 'files'['kernel.safetensors'] must be a SHA-256",
    ),
    "kernel not listed": (
        _manifest_case(lambda d: d["files"].pop("kernel.safetensors")),
        "field 'files' lacks 'kernel.safetensors'",
    ),
    "serves an object": (
        _manifest_case(lambda d: d.update(serves={"out": "x"})),
        "field 'serves' must be the folder of the ledger it serves",
    ),
    "serves a number": (_manifest_case(lambda d: d.update(serves=7)), "field 'serves'"),
}


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_a_malformed_manifest_is_refused_naming_the_file_and_field(inputs, tmp_path, capsys, name):
    root, base = inputs
    edit, message = MANIFESTS[name]
    prep = tmp_path / "prep"
    shutil.copytree(base / "prep", prep)
    doc = json.loads((prep / "prepared.json").read_text())
    (prep / "prepared.json").write_text(json.dumps(edit(doc)))
    args = [
        *base_argv("scrub", root, tmp_path / "out"),
        *("--forget", root / "forget.txt", "--method", "ntk", "--prepared", prep),
    ]
    line = _refused(args, message, (tmp_path, root, base), capsys)
    assert f"{prep / 'prepared.json'}:" in line
