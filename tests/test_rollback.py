"""Deletion records that cannot be rolled back or re-pointed (issue 29): each way an insider
with write access would make forgetbox un-forget is refused, and the refusal changes no file.

Every scenario serves real requests through the command line on the small digits model of
``conftest.trained``, then edits the deployment as an attacker would.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from forgetbox import cli
from forgetbox.deletion.ledger import head_of
from tests.conftest import argv

KEY = "k" * 32


def _files(*folders: Path) -> dict[str, bytes]:
    """Every file under ``folders`` (hidden ones too), by path, with its bytes."""
    return {
        str(p): p.read_bytes() for f in folders if f.exists() for p in f.rglob("*") if p.is_file()
    }


def _scrub(root: Path, out: Path, cohort: str, *extra: str, weights: Path | None = None) -> int:
    """One request through the command line: ``cohort`` is the text of its index file (written
    outside every folder the tests watch)."""
    forget = Path(tempfile.mkdtemp()) / "forget.txt"
    forget.write_text(cohort)
    args = [*argv("scrub", root, out), "--method", "ntk", "--forget", str(forget), *extra]
    if weights is not None:
        args[args.index("--weights") + 1] = str(weights)
    return cli.main(args)


def _refused(capsys, call, *folders: Path, match: str) -> None:
    """``call`` exits 2 with one line naming ``match``, and no file under ``folders`` changed."""
    before = _files(*folders)
    capsys.readouterr()
    assert call() == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and match in err[0], err
    assert _files(*folders) == before


def _key(tmp_path: Path) -> Path:
    path = tmp_path / "ledger.key"
    path.write_text(KEY)
    return path


def _two_requests(root: Path, out: Path, *extra: str) -> None:
    assert _scrub(root, out, "0 3 5 8", *extra) == 0
    assert _scrub(root, out, "1 2", *extra, weights=out / "scrubbed.safetensors") == 0


def _truncate(out: Path, *, fix_head: bool, remove_files: bool) -> None:
    """Remove the ledger's last entry as an attacker without the key would (the head
    recomputed when ``fix_head``; the request's files removed when ``remove_files``)."""
    doc = json.loads((out / "ledger.json").read_text())
    last = doc["entries"].pop()
    if fix_head:
        doc["head"] = head_of(doc["deployment"], doc["entries"], None)
    (out / "ledger.json").write_text(json.dumps(doc))
    if remove_files:
        n = last["request"]
        for p in out.glob(f"*-{n:04d}.*"):
            p.unlink()


def test_a_truncated_ledger_is_refused_naming_the_files_left(trained, tmp_path, capsys):
    root, *_ = trained
    out = tmp_path / "out"
    _two_requests(root, out)
    _truncate(out, fix_head=False, remove_files=False)
    w1 = out / "scrubbed-0001.safetensors"
    call = lambda: _scrub(root, out, "4 6", weights=w1)  # noqa: E731
    _refused(capsys, call, out, root, match="the head records 2 entries but the chain has 1")
    doc = json.loads((out / "ledger.json").read_text())  # the attacker also rewrites the head
    doc["head"] = head_of(doc["deployment"], doc["entries"], None)
    (out / "ledger.json").write_text(json.dumps(doc))
    _refused(capsys, call, out, root, match="scrubbed-0002.safetensors")


def test_with_a_key_a_truncation_is_refused_even_without_the_files(trained, tmp_path, capsys):
    root, *_ = trained
    out, key = tmp_path / "out", _key(tmp_path)
    _two_requests(root, out, "--ledger-key-file", str(key))
    _truncate(out, fix_head=True, remove_files=True)  # no file beyond entry 1 remains
    w1 = out / "scrubbed-0001.safetensors"
    call = lambda: _scrub(root, out, "4 6", "--ledger-key-file", str(key), weights=w1)  # noqa: E731
    _refused(capsys, call, out, root, match="head's HMAC does not verify")


def test_a_receipt_proves_a_rollback_of_a_rewritten_chain(trained, tmp_path, capsys):
    """Without a key, removing a request and all its files leaves a consistent folder that a
    new request accepts; the data subject's receipt still shows the rollback."""
    root, *_ = trained
    out = tmp_path / "out"
    _two_requests(root, out)
    held = tmp_path / "subject-receipt.json"
    shutil.copy(out / "receipt-0002.json", held)
    receipt = json.loads(held.read_text())
    assert receipt["request"] == 2 and receipt["authenticated"] is False
    assert cli.main(["verify", str(out), "--receipt", str(held)]) == 0
    _truncate(out, fix_head=True, remove_files=True)
    capsys.readouterr()
    assert cli.main(["verify", "--out", str(out), "--receipt", str(held)]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert any(
        line.startswith("FAIL") and "request 2 is not in the ledger" in line for line in lines
    )
    assert cli.main(["verify", str(out), "--receipt", str(out / "receipt-0001.json")]) == 0


@pytest.mark.parametrize(
    "edit,match",
    [
        (lambda x, y: (x[::-1].copy(), y[::-1].copy()), "in another order"),
        (
            lambda x, y: (x + np.float32(0.5) * (np.arange(len(x)) == 7)[:, None, None, None], y),
            "not the data",
        ),
        (lambda x, y: (np.concatenate([x, x[:3]]), np.concatenate([y, y[:3]])), "--data-appended"),
    ],
    ids=["reordered", "replaced", "appended"],
)
def test_data_other_than_the_recorded_is_refused(trained, tmp_path, capsys, edit, match):
    root, *_ = trained
    work = tmp_path / "root"
    shutil.copytree(root, work)
    out = work / "out"
    assert _scrub(work, out, "0 3") == 0
    arrays = dict(np.load(work / "data.npz"))
    arrays["x_train"], arrays["y_train"] = edit(arrays["x_train"], arrays["y_train"])
    np.savez(work / "data.npz", **arrays)
    w1 = out / "scrubbed.safetensors"
    _refused(capsys, lambda: _scrub(work, out, "4", weights=w1), work, match=match)


def test_appended_samples_are_accepted_when_said_and_recorded(trained, tmp_path):
    root, *_ = trained
    work = tmp_path / "root"
    shutil.copytree(root, work)
    out = work / "out"
    assert _scrub(work, out, "0 3") == 0
    n = len(np.load(work / "data.npz")["y_train"])
    arrays = dict(np.load(work / "data.npz"))
    arrays["x_train"] = np.concatenate([arrays["x_train"], arrays["x_train"][:4] * 0.5])
    arrays["y_train"] = np.concatenate([arrays["y_train"], arrays["y_train"][:4]])
    np.savez(work / "data.npz", **arrays)
    w1 = out / "scrubbed.safetensors"
    assert _scrub(work, out, "4", "--data-appended", weights=w1) == 0
    entries = json.loads((out / "ledger.json").read_text())["entries"]
    assert entries[1]["data_appended_from"] == n and entries[1]["n_train"] == n + 4
    assert cli.main(["verify", str(out), "--data", str(work / "data.npz")]) == 0


def test_an_edited_certificate_is_refused_and_named_by_verify(trained, tmp_path, capsys):
    root, *_ = trained
    out = tmp_path / "out"
    assert _scrub(root, out, "0 3") == 0
    cert = json.loads((out / "certificate-0001.json").read_text())
    cert["bounds"]["reference"] = "retrained"  # a self-prediction passed off as a measurement
    (out / "certificate-0001.json").write_text(json.dumps(cert, indent=2))
    w1 = out / "scrubbed.safetensors"
    _refused(capsys, lambda: _scrub(root, out, "4", weights=w1), out, root, match="certificate")
    assert cli.main(["verify", str(out)]) == 1
    assert "certificate-0001.json does not match" in capsys.readouterr().out


def _prepare(root: Path, folder: Path, *extra: str) -> None:
    args = argv("prepare", root, folder)
    assert cli.main([*args, *extra]) == 0


@pytest.mark.parametrize("keyed", [False, True])
def test_an_edited_prepared_manifest_is_refused(trained, tmp_path, capsys, keyed):
    root, *_ = trained
    prepared, out = tmp_path / "prepared", tmp_path / "deletions"
    extra = ("--ledger-key-file", str(_key(tmp_path))) if keyed else ()
    _prepare(root, prepared, *extra)
    assert _scrub(root, out, "0 3", "--prepared", str(prepared), *extra) == 0
    manifest = json.loads((prepared / "prepared.json").read_text())
    manifest["hashes"]["data_sha256"] = "0" * 64
    (prepared / "prepared.json").write_text(json.dumps(manifest, indent=2))
    call = lambda: _scrub(root, out, "4", "--prepared", str(prepared), *extra)  # noqa: E731
    match = "HMAC does not verify" if keyed else "field 'hashes' is not the kernel's"
    _refused(capsys, call, prepared, out, root, match=match)


def test_a_moved_deployment_keeps_working_and_a_foreign_state_is_refused(trained, tmp_path, capsys):
    root, *_ = trained
    first, moved = tmp_path / "site-a", tmp_path / "site-b"
    _prepare(root, first / "prepared")
    assert _scrub(root, first / "deletions", "0 3", "--prepared", str(first / "prepared")) == 0
    shutil.move(first, moved)  # a container mounted at another path, a copy to new storage
    assert _scrub(root, moved / "deletions", "4", "--prepared", str(moved / "prepared")) == 0
    assert (
        cli.main(["verify", str(moved / "deletions"), "--prepared", str(moved / "prepared")]) == 0
    )
    # the same state with a new ledger would answer as if nothing had been forgotten
    fresh = tmp_path / "fresh"
    call = lambda: _scrub(root, fresh, "6", "--prepared", str(moved / "prepared"))  # noqa: E731
    _refused(capsys, call, moved, root, match="cohort-0001.safetensors")
    assert not fresh.exists() or not any(fresh.iterdir())
    # another prepared state with this ledger: another deployment
    _prepare(root, tmp_path / "other")
    call = lambda: _scrub(root, moved / "deletions", "6", "--prepared", str(tmp_path / "other"))  # noqa: E731
    _refused(capsys, call, moved, tmp_path / "other", root, match="belongs to deployment")
