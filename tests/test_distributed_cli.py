"""The distributed command line, launched as users launch it: ``torchrun --standalone
--nproc-per-node 2 -m forgetbox scrub ...`` (gloo, CPU) writes what one process writes, on the
dense, matrix-free and parameter-space paths: the scrubbed weights, the certificate's numbers
and the ledger entry. And a rank that fails makes the run fail, with its error on one line
naming the rank and the cause, the other rank stopped rather than left waiting, and nothing
written.

Tolerances, in float64 (``--dtype float64``): the step and everything computed from it agree
to 1e-10 relative (sums split over two ranks only reorder float64 additions). The scrubbed
weights are the model's float32 weights w plus the step rounded to float32: two roundings, so
they may differ by up to three units in the last place of max(|w|, |scrubbed|) (one for the
step, at most two units of that, and one for the sum); their SHA-256 then differs too, so it
is checked against each run's own file instead of across runs. The bounds rest on the Fisher
diagonal, which is computed in the model's float32 (each rank sums its half): they agree to
float32 rounding, 1e-6.
"""

import hashlib
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from forgetbox import cli
from forgetbox.deletion import read_ledger
from tests.conftest import argv as base_argv

REPO = Path(__file__).resolve().parents[1]
PATHS = {
    "dense": ["--solver", "dense"],
    "cg": ["--solver", "cg"],
    "param": ["--solver", "param", "--trainable", "classifier.*,features.2.1.*"],
}
TIMEOUT = 300  # seconds: a run that hangs fails the test instead of blocking it

# fields that must differ between two runs, or that measure the machine, not the result
VOLATILE = {"created", "seconds", "timings_seconds", "peak_memory_bytes"}
# hashes of the float32 weights' bytes (one rounding apart at most; checked per run instead)
WEIGHT_HASHES = {"scrubbed_sha256", "scrubbed_file_sha256", "entry_sha256"}
# each output folder is its own deployment (a random identifier starts its chain), and each
# certificate holds the time it was written
PER_DEPLOYMENT = {"deployment", "previous_entry_sha256", "certificate_sha256"}
# rest on the float32 Fisher diagonal
FISHER_BASED = ("bounds", "white_box_nats", "black_box_forget_nats_per_query", "running_total")


def _torchrun(*args: str) -> list[str]:
    launcher = Path(sys.executable).with_name("torchrun")
    head = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*head, "--standalone", "--nproc-per-node", "2", *args]


def _start(args: list[str], log: Path) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    env["PYTHONPATH"] += os.pathsep + str(REPO)  # tests.distributed_fault's imports
    with open(log, "w") as fh:
        return subprocess.Popen(args, cwd=REPO, env=env, stdout=fh, stderr=subprocess.STDOUT)


def _scrub_args(root: Path, out: Path, path: str) -> list[str]:
    return [
        *base_argv("scrub", root, out),
        *("--forget", str(root / "forget.txt"), "--method", "ntk", "--seed", "3"),
        *("--dtype", "float64", "--reference", str(root / "w0.safetensors"), *PATHS[path]),
    ]


@pytest.fixture(scope="module")
def runs(trained, tmp_path_factory):
    """Every path scrubbed by torchrun with two ranks and in this process alone, and the two
    faulty runs; the launches run side by side."""
    root = trained[0]
    base = tmp_path_factory.mktemp("torchrun")
    procs = {}
    for path in PATHS:
        args = _torchrun("-m", "forgetbox", *_scrub_args(root, base / f"two-{path}", path))
        procs[path] = _start(args, base / f"two-{path}.log")
    for where in ("collective", "finished"):
        script = str(REPO / "tests" / "distributed_fault.py")
        args = _torchrun(script, where, *_scrub_args(root, base / f"fault-{where}", "dense"))
        procs[where] = _start(args, base / f"fault-{where}.log")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each rank has
    try:
        for path in PATHS:
            assert cli.main(_scrub_args(root, base / f"one-{path}", path)) == 0
    finally:
        torch.set_num_threads(threads)
    deadline = time.monotonic() + TIMEOUT
    codes = {}
    for name, proc in procs.items():
        try:
            codes[name] = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            for p in procs.values():
                p.kill()
            pytest.fail(f"torchrun ({name}) still running after {TIMEOUT} s: a rank hangs")
    logs = {name: (base / f"{'two-' if name in PATHS else 'fault-'}{name}.log").read_text()
            for name in procs}  # fmt: skip
    return base, codes, logs


def _close(a, b, rtol: float, at: str) -> None:
    if isinstance(a, float) or isinstance(b, float):
        assert isinstance(a, int | float) and isinstance(b, int | float), (at, a, b)
        assert math.isclose(a, b, rel_tol=rtol, abs_tol=1e-300), (at, a, b, abs(a - b) / abs(a))
    else:
        assert a == b, (at, a, b)


def _compare(a, b, at: str = "") -> None:
    """``a`` and ``b`` equal but for the volatile fields, floats to their tolerance."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and set(a) == set(b), (at, set(a) ^ set(b))
        for k in a:
            if k in VOLATILE or k in WEIGHT_HASHES or k in PER_DEPLOYMENT:
                continue
            if k == "relative_residual":  # CG's, at round-off: noise itself
                assert max(abs(a[k]), abs(b[k])) < 1e-10, (at, a[k], b[k])
                continue
            _compare(a[k], b[k], f"{at}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), at
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _compare(x, y, f"{at}[{i}]")
    else:
        fisher = any(part in at for part in FISHER_BASED)
        _close(a, b, 1e-6 if fisher else 1e-10, at)


@pytest.mark.parametrize("path", list(PATHS))
def test_torchrun_writes_what_one_process_writes(runs, trained, path):
    base, codes, logs = runs
    root = trained[0]
    assert codes[path] == 0, logs[path][-3000:]
    one, two = base / f"one-{path}", base / f"two-{path}"
    assert sorted(p.name for p in one.iterdir()) == sorted(p.name for p in two.iterdir())

    # the scrubbed weights: within float32 rounding of each other (see the module's text)
    a, b = (load_file(d / "scrubbed-0001.safetensors") for d in (one, two))
    trained = load_file(root / "trained.safetensors")
    assert a.keys() == b.keys() == trained.keys()
    moved = 0
    for name in a:
        x, y, w = (t[name].numpy() for t in (a, b, trained))
        if x.dtype.kind != "f":
            assert np.array_equal(x, y), name
            continue
        ulp = np.spacing(np.maximum(np.maximum(np.abs(x), np.abs(y)), np.abs(w)))
        assert np.all(np.abs(x - y) <= 3 * ulp), (name, float(np.max(np.abs(x - y) / ulp)))
        moved += int(np.sum(x != w))
    assert moved > 0  # the step moved the weights (and did so alike)

    # the certificate's numbers, and the ledger entry
    cert = [json.loads((d / "certificate-0001.json").read_text()) for d in (one, two)]
    assert cert[0]["method_info"]["ntk"]["solver"] == path
    assert cert[0]["bounds"]["white_box_nats"] > 0  # measured against --reference
    _compare(cert[0], cert[1])
    ledgers = [read_ledger(d / "ledger.json").entries for d in (one, two)]  # each verifies
    assert [len(e) for e in ledgers] == [1, 1]
    _compare(ledgers[0][0], ledgers[1][0])
    for d, entries in zip((one, two), ledgers, strict=True):  # each hash is its own file's
        digest = hashlib.sha256((d / "scrubbed-0001.safetensors").read_bytes()).hexdigest()
        assert entries[0]["scrubbed_file_sha256"] == digest
    assert not any(line.startswith("error:") for line in logs[path].splitlines())


@pytest.mark.parametrize(
    "where,cause",
    [
        ("collective", "error: rank 1: out of memory: CUDA out of memory. Tried to allocate"),
        ("finished", "error: rank 1: [Errno 5] Input/output error: '/scratch/rank-1/kernel.tmp'"),
    ],
)
def test_a_failing_rank_fails_the_run_naming_itself_and_nothing_is_written(runs, where, cause):
    """Rank 1 fails inside an all-reduce that rank 0 waits in, or after its whole share when
    rank 0 is ready to write: the run ends (no hang), rank 1's error is one line naming the
    rank and the cause, printed once, rank 0 (if it gets to say anything before torchrun
    stops it) says it stopped because another rank failed, and --out was never made."""
    base, codes, logs = runs
    log = logs[where]
    assert codes[where] != 0, log[-3000:]
    errors = [line for line in log.splitlines() if line.startswith("error: ")]
    assert [e for e in errors if e.startswith("error: rank 1: ")] == [errors[0]], errors
    assert errors[0].startswith(cause), errors
    assert all(e.startswith("error: rank 0: stopped: another rank failed") for e in errors[1:]), (
        errors
    )
    assert not any("Traceback" in line for line in log.splitlines() if line.startswith("[rank"))
    assert not (base / f"fault-{where}").exists()
