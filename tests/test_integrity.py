"""Deletion state that cannot be edited unnoticed, and requests that change state only when
they succeed."""

import copy
import json

import pytest
import torch
from torch import nn

import forgetbox
from forgetbox import checkpoints, cli, models, training
from forgetbox.checkpoints import CheckpointError
from forgetbox.deletion import (
    Ledger,
    LedgerError,
    load_prepared,
    prepare,
    save_prepared,
    verify_ledger,
)
from forgetbox.deletion.ledger import ledger_document, new_entry
from forgetbox.functional import flatten, parameters_of
from forgetbox.hashing import sha256_indices
from tests.conftest import argv


def _cert(k: int, white: float = 1.0, reference: str = "retrained") -> dict:
    return {
        "created": "2026-12-02T00:00:00+00:00",
        "method": "ntk_fisher",
        "hashes": {"weights_sha256": f"w{k - 1}", "scrubbed_sha256": f"w{k}"},
        "bounds": {
            "reference": reference,
            "white_box_nats": white,
            "black_box": {"forget": {"nats_per_query": 0.1}},
        },
    }


DEPLOYMENT = "0123456789abcdef" * 2
DATA = {"data_sha256": "d" * 64, "data_set_sha256": "s" * 64, "n_train": 100}
FILES = {"certificate_file": "certificate-0001.json", "certificate_sha256": "c" * 64}


def _entry(ledger: Ledger, cert: dict, cohort: list[int], key=None, **kw) -> dict:
    kw = {"input_weights": "original", "files": FILES, "data": DATA, "threshold_nats": 5.0, **kw}
    return new_entry(ledger, cert, cohort, key=key, **kw)


def _ledger(n: int, key=None) -> dict:
    entries = []
    for k in range(1, n + 1):
        cert = _cert(k, white=float(k))
        cert["hashes"]["weights_sha256"] = "w0" if k == 1 else f"w{k - 1}"
        inputs = "original" if k == 1 else "previous"
        ledger = Ledger(DEPLOYMENT, entries)
        entries.append(_entry(ledger, cert, [10 * k, 10 * k + 1], key, input_weights=inputs))
    return json.loads(json.dumps(ledger_document(Ledger(DEPLOYMENT, entries), key)))


def test_a_chained_ledger_verifies_and_sums_only_measured_bounds():
    doc = _ledger(3)
    entries = verify_ledger(doc, n_train=100).entries
    assert [e["running_total_measured_nats"] for e in entries] == [1.0, 3.0, 6.0]
    assert [e["retrain_due"] for e in entries] == [False, False, True]
    assert entries[1]["previous_entry_sha256"] == entries[0]["entry_sha256"]
    estimated = _entry(Ledger(DEPLOYMENT), _cert(1, 7.0, "estimate"), [1], threshold_nats=1.0)
    assert estimated["running_total_measured_nats"] == 0.0
    assert estimated["running_total_estimated_nats"] == 7.0 and not estimated["retrain_due"]


@pytest.mark.parametrize(
    "edit,field",
    [
        (lambda d: d["entries"][1].update(forget_indices=[20]), "entry 2"),
        (lambda d: d["entries"][1].update(method="retrain"), "entry 2, field 'entry_sha256'"),
        (lambda d: d["entries"].pop(0), "entry 1, field 'request'"),
        (lambda d: d["entries"].pop(), "the head records 3 entries but the chain has 2"),
        (lambda d: d["entries"].reverse(), "entry 1, field 'request'"),
        (lambda d: d.update(deployment="f" * 32), "entry 1, field 'previous_entry_sha256'"),
        (lambda d: d["entries"][1].update(data_sha256="e" * 64), "entry 2"),
        (lambda d: d["entries"][2].update(previous_entry_sha256="0" * 64), "entry 3"),
        (lambda d: d["entries"][0].update(n_forget=3), "entry 1"),
    ],
)
def test_any_edit_is_detected_and_named(edit, field):
    doc = _ledger(3)
    edit(doc)
    with pytest.raises(LedgerError, match=field):
        verify_ledger(doc)


def test_a_consistent_rewrite_needs_the_key():
    """Re-signing the whole chain passes a keyless check (the threat model says so); with a
    key it is caught."""
    key = b"k" * 32
    honest = _ledger(2, key=key)
    forged = _ledger(2)  # rebuilt without the key, claims not to be authenticated
    verify_ledger(forged)
    forged["authenticated"] = True
    with pytest.raises(LedgerError, match="entry 1, field 'entry_hmac'"):
        verify_ledger(forged, key=key)
    verify_ledger(honest, key=key)
    with pytest.raises(LedgerError, match="give its --ledger-key-file"):
        verify_ledger(honest)
    with pytest.raises(LedgerError, match="entry 1, field 'entry_hmac'"):
        verify_ledger(honest, key=b"z" * 32)


def test_indices_are_checked_against_their_hash_and_the_data():
    doc = _ledger(1)
    assert doc["entries"][0]["forget_indices_sha256"] == sha256_indices([10, 11])
    with pytest.raises(LedgerError, match="outside the 5 training samples"):
        verify_ledger(doc, n_train=5)


def _problem():
    torch.manual_seed(0)
    model = models.MLP(3, 5, width=0.2).double()
    w0 = copy.deepcopy(model)
    with torch.no_grad():
        for p in w0.parameters():
            p.add_(0.05)
    x = torch.randn(14, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (14,))
    return model, w0, x, y


def test_a_failed_request_leaves_the_cohort_unclaimed(monkeypatch):
    model, w0, x, y = _problem()
    prep = prepare(model, (x, y), weight_decay=0.1, pretrained=w0)
    prep.request(model, x, prep.cohort([1]))

    def fail(*a, **k):
        raise ValueError("the downdate failed")

    monkeypatch.setattr(type(prep), "_solve_retain", fail)
    with pytest.raises(ValueError, match="downdate"):
        prep.request(model, x, prep.cohort([2, 3]))
    assert prep.forgotten.tolist() == [1] and prep.columns.shape[1] == 3
    monkeypatch.undo()
    prep.request(model, x, prep.cohort([2, 3]))
    assert prep.forgotten.tolist() == [1, 2, 3]


def test_prepared_files_are_verified_on_load(tmp_path):
    model, w0, x, y = _problem()
    prep = prepare(model, (x, y), weight_decay=0.1, pretrained=w0)
    prep.request(model, x, prep.cohort([4]))
    save_prepared(prep, tmp_path / "p")
    again = load_prepared(tmp_path / "p")
    assert again.forgotten.tolist() == [4]
    path = tmp_path / "p" / "cohort.safetensors"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 1
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError, match="cohort.safet"):
        load_prepared(tmp_path / "p")
    (tmp_path / "p" / "prepared.json").unlink()
    with pytest.raises(ValueError, match="no prepared.json"):
        load_prepared(tmp_path / "p")


def test_batchnorm_statistics_updated_on_d_are_reported_and_can_be_recomputed(trained):
    root, model, w0, split = trained
    moved = copy.deepcopy(model)
    bn = next(m for m in moved.modules() if isinstance(m, nn.BatchNorm2d))
    bn.running_mean.add_(0.5)  # as if fine-tuning had updated them on D
    retain, forget = (split.x_train[4:], split.y_train[4:]), (split.x_train[:4], split.y_train[:4])
    kw = dict(pretrained=w0, retain=retain, forget=forget, method="ntk")
    frozen = forgetbox.scrub(model, **kw).certificate["batchnorm"]
    assert frozen["running_statistics"].startswith("frozen")
    res = forgetbox.scrub(moved, recompute_batchnorm=True, **kw)
    note = res.certificate["batchnorm"]
    assert note["updated"] and note["recomputed_on_retain"]
    # the recomputed statistics are the exact average over D_r
    probe = copy.deepcopy(res.model)
    training.recompute_batchnorm(probe, retain[0])
    first = next(m for m in res.model.modules() if isinstance(m, nn.BatchNorm2d))
    conv = res.model.features[0][0]
    with torch.no_grad():
        h = conv(retain[0])
    assert torch.allclose(first.running_mean, h.mean((0, 2, 3)), atol=1e-5)


def test_low_precision_models_are_cast_and_noted(trained):
    root, model, w0, split = trained
    half = copy.deepcopy(model).to(torch.bfloat16)
    retain, forget = (split.x_train[4:], split.y_train[4:]), (split.x_train[:4], split.y_train[:4])
    res = forgetbox.scrub(half, pretrained=w0, retain=retain, forget=forget, method="ntk")
    assert any("bfloat16" in n for n in res.certificate["notes"])
    assert next(res.model.parameters()).dtype == torch.float32


def test_a_request_never_overwrites_its_input_weights(trained, tmp_path):
    root, *_ = trained
    out = tmp_path / "o"
    base = [*argv("scrub", root, out), "--method", "ntk"]
    assert cli.main([*base, "--forget", str(root / "forget.txt")]) == 0
    first = (out / "scrubbed-0001.safetensors").read_bytes()
    (tmp_path / "f2.txt").write_text("1 2")
    second = [*base, "--forget", str(tmp_path / "f2.txt")]
    second[second.index("--weights") + 1] = str(out / "scrubbed.safetensors")  # the link
    assert cli.main(second) == 0
    assert (out / "scrubbed-0001.safetensors").read_bytes() == first
    assert (out / "scrubbed.safetensors").resolve().name == "scrubbed-0002.safetensors"
    assert {p.name for p in out.glob("certificate-*.json")} == {
        "certificate-0001.json",
        "certificate-0002.json",
    }


def test_restart_from_original_scrubs_every_cohort_from_the_original(trained, tmp_path):
    root, model, w0, split = trained
    out = tmp_path / "o"
    base = [*argv("scrub", root, out), "--method", "ntk"]
    assert cli.main([*base, "--forget", str(root / "forget.txt")]) == 0
    (tmp_path / "f2.txt").write_text("1 2")
    assert cli.main([*base, "--forget", str(tmp_path / "f2.txt"), "--restart-from-original"]) == 0
    entries = json.loads((out / "ledger.json").read_text())["entries"]
    assert [e["input"] for e in entries] == ["original", "original"]
    cert = json.loads((out / "certificate-0002.json").read_text())
    assert cert["cohort"]["n_forget"] == 6  # both cohorts, from the original weights
    d = (split.x_train, split.y_train)
    kw = dict(pretrained=w0, data=d, forget_indices=[0, 1, 2, 3, 5, 8], method="ntk")
    ref = forgetbox.scrub(model, **kw)
    state = checkpoints.load_state(out / "scrubbed.safetensors")
    got = torch.cat([state[k].reshape(-1) for k in parameters_of(model)])
    want = flatten(parameters_of(ref.model))
    assert ((got - want).norm() / want.norm()).item() < 1e-5


def test_an_unwritable_output_folder_is_refused_before_any_work(trained, tmp_path, monkeypatch):
    from forgetbox import paths

    root, *_ = trained
    monkeypatch.setattr(paths.os, "access", lambda *a: False)  # as on a read-only file system
    args = [*argv("scrub", root, tmp_path / "ro" / "o"), "--forget", str(root / "forget.txt")]
    assert cli.main(args) == 2
    assert not (tmp_path / "ro").exists()


def test_the_number_of_classes_comes_from_the_head(tmp_path):
    """An MLP checkpoint's last 2-D tensor in name order is not its head (``classifier``
    sorts before ``features``): the count is read from the head module."""
    from forgetbox.checkpoints import save_state
    from forgetbox.deletion.files import ModelFiles, load_models

    model = models.build_model("mlp", num_classes=4, input_shape=(6,), width=0.5)
    save_state(tmp_path / "w.safetensors", model.state_dict())
    stored = checkpoints.load_state(tmp_path / "w.safetensors")  # safetensors sorts the names
    last_matrix = [k for k, v in stored.items() if v.ndim == 2][-1]
    assert last_matrix.startswith("features")  # what the old guess took for the head
    files = ModelFiles("mlp", tmp_path / "w.safetensors", tmp_path / "w.safetensors", None, 0.5)
    x, y = torch.zeros(3, 6), torch.tensor([0, 1, 2])
    loaded, _, _ = load_models(files, x, y)
    assert loaded.classifier.out_features == 4
