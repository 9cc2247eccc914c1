"""The error contract, closed: files that are damaged or malformed (a truncated ``.npz``, a
prepared state's ``prepared.json``, a run's ``results.json``, an ``evaluation.json``, a
stage-cache entry), numerical failures and exhausted memory, and ``forgetbox evaluate``'s bad
input. Every case: exit status 2, exactly one line on standard error starting ``error: ``, no
traceback, and no file under the case's folder or the shared inputs created, changed or
removed (SHA-256 of every file before and after)."""

import contextlib
import copy
import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from forgetbox import bounds, cli
from forgetbox.experiment import cache as stage_cache
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
    arrays = dict(np.load(root / "data.npz"))
    np.savez(base / "objects.npz", **arrays | {"y_train": np.array([{"label": 1}] * 60)})
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
        ("objects.npz", "holds Python objects"),  # a pickle: never loaded
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
        "field 'files' must map file names to SHA-256 digests",
    ),
    "files a string": (
        _manifest_case(lambda d: d.update(files="kernel.safetensors")),
        "field 'files' must map file names to SHA-256 digests",
    ),
    "kernel digest a number": (
        _manifest_case(lambda d: d["files"].update({"kernel.safetensors": 5})),
        "field 'files' must map file names to SHA-256 digests",
    ),
    "cohort digest not hexadecimal": (
        _manifest_case(lambda d: d["files"].update({"cohort.safetensors": "z" * 64})),
        "field 'files' must map file names to SHA-256 digests",
    ),
    "hashes missing": (
        _manifest_case(lambda d: d.pop("hashes")),
        "field 'hashes' must hold the state's binding hashes",
    ),
    "deployment a number": (
        _manifest_case(lambda d: d.update(deployment=7)),
        "field 'deployment' must be 32 hexadecimal digits",
    ),
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


# --------------------------------------------------------------------- forgetbox report


def _results_case(change, source=RUN):
    def make(folder: Path) -> None:
        doc = json.loads(source.read_text())
        change(doc)
        folder.mkdir(parents=True)
        name = "results.json" if source == RUN else "evaluation.json"
        (folder / name).write_text(json.dumps(doc))
        (folder / "report.html").write_text("the previous report")  # must stay as it was

    return make


def _first_row(doc, method="ntk"):
    return doc["methods"][method]["per_seed"][0]


REPORTS = {
    "results not JSON": (
        lambda f: (f.mkdir(), (f / "results.json").write_text('{"config": ')),
        "not valid JSON",
    ),
    "methods a list": (
        _results_case(lambda d: d.update(methods=list(d["methods"]))),
        "field methods must be an object, got list",
    ),
    "a seed that is text": (
        _results_case(lambda d: _first_row(d).update(seed="zero")),
        "field methods['ntk'].per_seed[0].seed must be an integer",
    ),
    "a mean that is text": (
        _results_case(lambda d: d["methods"]["ntk"]["mean"].update(error_forget="low")),
        "field methods['ntk'].mean['error_forget'] must be a number",
    ),
    "a trade-off row without alpha": (
        _results_case(lambda d: d["tradeoff"][3].pop("alpha")),
        "field tradeoff[3] lacks 'alpha'",
    ),
    "a PCA path that is a number": (
        _results_case(lambda d: d["pca"]["paths"].update(D_r=3)),
        "field pca.paths.D_r must be a list",
    ),
    "seeds empty": (_results_case(lambda d: d.update(seeds=[])), "field seeds must hold"),
    "config list holding null": (
        _results_case(lambda d: d["config"].update(tradeoff_alphas=[1e-9, None])),
        "field config['tradeoff_alphas'] must be a TOML value (no null inside a list or table)",
    ),
    "training entry a string": (
        _results_case(lambda d: d["training"].__setitem__(1, "converged")),
        "field training[1] must be an object",
    ),
    "compute total missing": (
        _results_case(lambda d: d.update(compute={"this_run_seconds": 3.0})),
        "field compute lacks 'total_seconds'",
    ),
    "a readout that is text": (
        _results_case(lambda d: _first_row(d, "fisher").update(error_forget="high")),
        "field methods['fisher'].per_seed[0].error_forget must be a number",
    ),
    "evaluation of another kind": (
        _results_case(lambda d: d.update(kind="forgetbox-evaluation/0"), EVALUATION),
        "not a scored forgetbox evaluation (kind forgetbox-evaluation/1",
    ),
    "evaluation challenge without score": (
        _results_case(lambda d: d["methods"]["ntk"]["challenge"].pop("score"), EVALUATION),
        "field methods['ntk'].challenge lacks 'score'",
    ),
    "evaluation band bound that is text": (
        _results_case(lambda d: d["bands"]["error_forget"].update(low="0.1"), EVALUATION),
        "field bands['error_forget'].low must be a number",
    ),
    "evaluation KLoM values a number": (
        _results_case(
            lambda d: d["methods"]["original"]["klom"]["val"].update(values=1.0), EVALUATION
        ),  # fmt: skip
        "field methods['original'].klom.val.values must be a list",
    ),
}


@pytest.mark.parametrize("name", list(REPORTS))
def test_report_refuses_a_malformed_results_file_before_writing(tmp_path, capsys, name):
    make, message = REPORTS[name]
    make(tmp_path / "run")
    _refused(["report", tmp_path / "run"], message, (tmp_path,), capsys)


def test_a_failure_while_rendering_writes_nothing(tmp_path, capsys, monkeypatch):
    """What the structure check cannot see (here: a figure that fails once results.json and
    results.csv are rendered, as a malformed file used to make it) leaves the folder as it
    was: everything is rendered into a staging folder first."""
    from forgetbox.report import outputs

    def broken(results, out):
        raise TypeError("'NoneType' object is not subscriptable")

    monkeypatch.setattr(outputs, "draw_all", broken)
    folder = tmp_path / "run"
    folder.mkdir()
    shutil.copy(RUN, folder / "results.json")
    (folder / "report.html").write_text("the previous report")
    line = _refused(["report", folder], "cannot be rendered (TypeError", (tmp_path,), capsys)
    assert "nothing was written" in line
    assert sorted(p.name for p in folder.iterdir()) == ["report.html", "results.json"]


def test_report_checks_every_folder_before_writing_any(tmp_path, capsys):
    good = tmp_path / "good"
    good.mkdir()
    shutil.copy(RUN, good / "results.json")
    _results_case(lambda d: _first_row(d).update(seed=None))(tmp_path / "bad")
    _refused(["report", good, tmp_path / "bad"], "per_seed[0].seed", (tmp_path,), capsys)
    assert sorted(p.name for p in good.iterdir()) == ["results.json"]  # nothing rendered


def test_report_renders_the_committed_files(tmp_path, capsys):
    """The check refuses what is malformed, not what forgetbox writes."""
    for source, page in ((RUN, "report.html"), (EVALUATION, "evaluation.html")):
        folder = tmp_path / source.parent.name
        folder.mkdir()
        shutil.copy(source, folder / source.name)
        code, out, err = _run_cli(["report", folder], capsys)
        assert code == 0, err
        assert (folder / page).stat().st_size > 10_000
        assert not list(folder.glob(".outputs-*"))  # the staging folder is gone


# ------------------------------------------------ numerical failures and exhausted memory


def _scrub(root, out, *extra):
    return [*base_argv("scrub", root, out), "--forget", root / "forget.txt", "--seed", "3", *extra]


def test_a_singular_matrix_is_one_line_naming_what_to_do(trained, tmp_path, capsys, monkeypatch):
    """The output covariances of the black-box bound made singular: torch.linalg.cholesky
    raises LinAlgError (a RuntimeError), which used to escape with a traceback."""
    root = trained[0]
    real = bounds.output_covariances

    def singular(*args, **kwargs):
        logits, covs = real(*args, **kwargs)
        return logits, torch.zeros_like(covs)

    monkeypatch.setattr(bounds, "output_covariances", singular)
    line = _refused(
        _scrub(root, tmp_path / "out", "--method", "ntk_fisher"),
        "a linear solve failed",
        (tmp_path, root),
        capsys,
    )
    assert "increase the weight decay or compute in float64" in line
    assert "--weight-decay, --dtype float64" in line


@pytest.mark.parametrize("where", ["cuda", "cpu"])
def test_out_of_memory_is_one_line_naming_what_to_do(trained, tmp_path, capsys, monkeypatch, where):
    """A device out of memory (torch.OutOfMemoryError) and the CPU allocator's refusal (a
    plain RuntimeError from a real allocation of 1 PB) in the NTK solve."""
    from forgetbox.ntk import direction

    root = trained[0]

    def exhausted(*args, **kwargs):
        if where == "cuda":
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total capacity "
                "of 79.10 GiB of which 1.25 GiB is free."
            )
        torch.empty(2**50, dtype=torch.uint8)  # 1 PB: the allocator refuses

    monkeypatch.setattr(direction, "cholesky_", exhausted)
    line = _refused(
        _scrub(root, tmp_path / "out", "--method", "ntk", "--solver", "dense"),
        "out of memory: ",
        (tmp_path, root),
        capsys,
    )
    assert "--memory-budget-gb" in line and "--solver cg" in line


def test_debug_still_shows_the_traceback_of_a_numerical_failure(trained, tmp_path, monkeypatch):
    from forgetbox.ntk import direction

    def exhausted(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory.")

    monkeypatch.setattr(direction, "cholesky_", exhausted)
    with pytest.raises(torch.OutOfMemoryError):
        cli.main(["--debug", *map(str, _scrub(trained[0], tmp_path / "o", "--solver", "dense"))])


# ------------------------------------------------------------ forgetbox evaluate's bad input


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A tiny evaluation killed (Ctrl-C) while its second stage computed: exit 130, one line,
    no evaluation.json, and in the cache only the one stage finished before (whole)."""
    out = tmp_path_factory.mktemp("interrupted") / "ev"
    calls = []
    real = stage_cache.Cache._timed

    def interrupt(self, key, compute):
        calls.append(key)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, key, compute)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(stage_cache.Cache, "_timed", interrupt)
        err = io.StringIO()
        with contextlib.redirect_stderr(err):
            code = cli.main(["evaluate", *TINY, *EVAL, "--out", str(out)])
    assert code == 130
    lines = err.getvalue().strip().splitlines()
    assert lines[-1].startswith("error: interrupted; nothing half-written was left"), lines
    assert not (out / "evaluation.json").exists()
    cached = sorted(p.name for p in (out / "cache").iterdir())
    assert len(cached) == 1 and cached[0].startswith(calls[0]), cached  # no temporary file
    return out


def _toml(text):
    def make(d, ev):
        d.mkdir()
        (d / "c.toml").write_text(text)
        return ["evaluate", "--config", d / "c.toml", *TINY, "--out", d / "o"]

    return make


def _ev(*flags):
    return lambda d, ev: ["evaluate", *TINY, *EVAL, *flags]


def _out_under_a_file(d, ev):
    d.mkdir()
    (d / "file").write_text("a file")
    return ["evaluate", *TINY, *EVAL, "--out", d / "file" / "ev"]


def _beside_a_file(flag):
    def make(d, ev):
        d.mkdir()
        (d / "file").write_text("a file")
        out = [] if flag == "--out" else ["--out", d / "o"]
        return ["evaluate", *TINY, *EVAL, flag, d / "file", *out]

    return make


def _resumed(change, *flags):
    def make(d, ev):
        out = d / "ev"
        shutil.copytree(ev, out)
        change(out)
        return ["evaluate", *TINY, *EVAL, *flags, "--out", out]

    return make


def _truncate_cache(out):
    (entry,) = (out / "cache").iterdir()
    entry.write_bytes(entry.read_bytes()[:100])


EVALUATE_CASES = {
    "K too small for the challenge score": (_ev("--models", "2"), "models must be >= 3"),
    "K too small for the certificate's check": (
        _ev("--models", "3", "--linearized"),
        "the certificate's check needs models >= 4",
    ),
    "K not an integer": (_ev("--models", "many"), "invalid int value: 'many'"),
    "folds more than shadow models": (
        _ev("--shadow-models", "3", "--folds", "4"),
        "folds must lie in [2, shadow_models]",
    ),
    "shadow models negative": (_ev("--shadow-models", "-1"), "shadow_models must be >= 0"),
    "method unknown": (_ev("--eval-methods", "ntk,magic"), "unknown methods ['magic']"),
    "U-LiRA method unknown": (_ev("--ulira-methods", "turbo"), "unknown methods ['turbo']"),
    "toml unknown key": (_toml("[evaluate]\nshadows = 4\n"), "unknown keys ['shadows']"),
    "toml relearn not a boolean": (
        _toml("[evaluate]\nrelearn = 'yes'\n"),
        "relearn must be true or false",
    ),
    "toml K as text": (_toml("[evaluate]\nmodels = '8'\n"), "models must be an integer"),
    "data file absent": (
        lambda d, ev: ["evaluate", *TINY, *EVAL, "--dataset", "npz:/nonexistent/data.npz"],
        "no such data file",
    ),
    "dataset unknown": (_ev("--dataset", "imagenet"), "dataset must be one of"),
    "cohort larger than its class": (_ev("--num-to-forget", "500"), "cannot forget 500"),
    "device unavailable": (_ev("--device", "cuda"), "no CUDA device"),
    "output under a file": (_out_under_a_file, "is a file, so the folder cannot be created"),
    "output an existing file": (_beside_a_file("--out"), "an existing file, not a folder"),
    "cache folder a file": (_beside_a_file("--cache-dir"), "--cache-dir"),
    "interrupted run resumed with K too small": (
        _resumed(lambda out: None, "--models", "2"),
        "models must be >= 3",
    ),
    "interrupted run resumed over a damaged cache entry": (
        _resumed(_truncate_cache),
        "a damaged stage-cache entry",
    ),
}


@pytest.mark.parametrize("name", list(EVALUATE_CASES))
def test_evaluate_refuses_bad_input(name, interrupted, tmp_path, capsys):
    build, message = EVALUATE_CASES[name]
    case = tmp_path / "case"
    args = build(case, interrupted)
    if "--out" not in args:
        args = [*args, "--out", case / "o"]
    _refused(args, message, (tmp_path, interrupted), capsys)
