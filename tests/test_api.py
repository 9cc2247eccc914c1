"""Scrub-your-own-model: API vs CLI against the reference, the ledger, safe and atomic files."""

import copy
import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

import forgetbox
from forgetbox import atomic, checkpoints, cli, data, hashing, methods, models, reference
from forgetbox.checkpoints import CheckpointError
from forgetbox.functional import flatten, load_flat_, parameters_of
from tests.conftest import argv as _argv


def _cli(root: Path, out: Path, *extra: str, method: str = "ntk_fisher") -> int:
    argv = [*_argv("scrub", root, out), "--method", method, "--seed", "3", *extra]
    if "--forget" not in extra and "--forget-class" not in extra:
        argv += ["--forget", str(root / "forget.txt")]
    return cli.main(argv)


def test_api_and_cli_give_the_same_weights(trained, tmp_path):
    root, model, w0, split = trained
    idx = torch.tensor([0, 3, 5, 8])
    keep = data.retain_mask(len(split.y_train), idx)
    before = copy.deepcopy(model.state_dict())
    res = forgetbox.scrub(
        model,
        pretrained=w0,
        retain=(split.x_train[keep], split.y_train[keep]),
        forget=(split.x_train[idx], split.y_train[idx]),
        seed=3,
    )
    assert _cli(root, tmp_path / "out") == 0
    cli_state = checkpoints.load_state(tmp_path / "out" / "scrubbed.safetensors")
    api_state = res.model.state_dict()
    for k, v in api_state.items():
        assert torch.equal(cli_state[k], v), k
    cert = json.loads((tmp_path / "out" / "certificate.json").read_text())
    assert cert["method"] == "ntk_fisher"
    assert cert["bounds"]["is_estimate"] is True
    assert set(cert["bounds"]["black_box"]) == {"forget", "retain", "test"}
    assert cert["hashes"]["forget_indices_sha256"] == hashing.sha256_indices([8, 5, 3, 0])
    assert cert["hashes"]["weights_file_sha256"] == hashing.sha256_file(
        root / "trained.safetensors"
    )
    assert res.certificate["hashes"]["weights_sha256"] == cert["hashes"]["weights_sha256"]
    # the input model was not modified (weights and BatchNorm statistics)
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not torch.equal(flatten(parameters_of(res.model)), flatten(parameters_of(model)))


def test_scrub_equals_the_dense_float64_reference(trained):
    """ntk_fisher through the public API, in float64, against an independent computation: the
    brute-force anchored delta_w with the trapezium's closed form, the brute-force Fisher at
    the NTK point through the noise safeguards, and the seeded normal draw."""
    _, model, w0, split = trained
    m64, w64 = copy.deepcopy(model).double(), copy.deepcopy(w0).double()
    idx = torch.tensor([0, 3, 5, 8])
    keep = data.retain_mask(len(split.y_train), idx)
    x = split.x_train.double()
    retain, forget = (x[keep], split.y_train[keep]), (x[idx], split.y_train[idx])
    res = forgetbox.scrub(m64, pretrained=w64, retain=retain, forget=forget, seed=3)
    w_d = flatten(parameters_of(m64))
    params = parameters_of(m64, torch.float64)
    delta, u_r = reference.dense_delta(m64, params, retain, forget, 0.1, "ce", parameters_of(w64))
    leg = w_d - (w_d + u_r)  # from w_lin(D_r) to w(D), the authors' side of the trapezium
    cos = (delta @ leg) / (delta.norm() * leg.norm())
    scale = 1 + 2 * cos.abs() * leg.norm() / delta.norm()
    assert scale > 1.01  # the trapezium does something here
    assert ((res.delta - scale * delta).norm() / (scale * delta).norm()).item() < 1e-7
    probe = load_flat_(copy.deepcopy(m64), w_d + res.delta)
    fisher = reference.fisher_diagonal(probe, retain[0])
    var = methods.noise_variance(fisher, params, alpha=1e-9, head="classifier")
    assert ((res.noise_variance - var).norm() / var.norm()).item() < 1e-8
    noise = torch.randn(len(w_d), generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want = w_d + res.delta + var.sqrt() * noise
    got = flatten(parameters_of(res.model))
    assert ((got - want).norm() / want.norm()).item() < 1e-10


def test_sequential_requests_make_a_verified_chained_ledger(trained, tmp_path):
    root, *_ = trained
    out = tmp_path / "seq"
    assert _cli(root, out, "--retrain-threshold-nats", "1e300") == 0
    first = json.loads((out / "certificate.json").read_text())
    # second request: the scrubbed model (through the stable link) with a new cohort
    (root / "forget2.txt").write_text("1 2\n")
    argv = [
        *_argv("scrub", root, out),
        "--forget",
        str(root / "forget2.txt"),
        "--seed",
        "4",
        "--retrain-threshold-nats",
        "1e300",
    ]
    argv[argv.index("--weights") + 1] = str(out / "scrubbed.safetensors")
    assert cli.main(argv) == 0
    doc = json.loads((out / "ledger.json").read_text())
    ledger = doc["entries"]
    assert doc["format"] == "forgetbox-ledger/3" and doc["authenticated"] is False
    assert doc["head"] == {"entries": 2, "entry_sha256": doc["entries"][1]["entry_sha256"]}
    assert [e["request"] for e in ledger] == [1, 2]
    assert [e["input"] for e in ledger] == ["original", "previous"]
    assert ledger[0]["forget_indices"] == [0, 3, 5, 8] and ledger[1]["forget_indices"] == [1, 2]
    assert ledger[1]["weights_sha256"] == ledger[0]["scrubbed_sha256"]
    assert ledger[1]["previous_entry_sha256"] == ledger[0]["entry_sha256"]
    # every request's weights are kept; the input file was not overwritten
    for e in ledger:
        path = out / e["scrubbed_file"]
        assert hashing.sha256_file(path) == e["scrubbed_file_sha256"]
        model = models.build_model(
            "smallcnn", num_classes=5, input_shape=(1, 8, 8), width=0.5, generator_seed=0
        )
        checkpoints.load_into(model, checkpoints.load_state(path), "test")
        assert hashing.state_sha256(model) == e["scrubbed_sha256"]
    assert (out / "scrubbed.safetensors").resolve().name == "scrubbed-0002.safetensors"
    # NTK bounds without a reference are the method's own prediction: not summed as measured
    assert {e["bounds_reference"] for e in ledger} == {"self"}
    assert ledger[1]["running_total_measured_nats"] == 0.0
    assert ledger[0]["white_box_nats"] == pytest.approx(first["bounds"]["white_box_nats"])
    second = json.loads((out / "certificate.json").read_text())
    n = len(np.load(root / "data.npz")["y_train"])
    assert second["cohort"]["n_retain"] == n - 6  # both cohorts left out of D_r
    assert cli.main(argv) == 2  # a repeated index (and stale weights) is refused
    # a measured bound (against a retrained model) counts and flags a retrain at threshold 0
    (root / "forget3.txt").write_text("4\n")
    third = [*argv[:-1], "0", "--method", "fisher", "--verify-retrain"]
    third[third.index(str(root / "forget2.txt"))] = str(root / "forget3.txt")
    assert cli.main(third) == 0
    last = json.loads((out / "ledger.json").read_text())["entries"][-1]
    assert last["bounds_reference"] == "retrained" and last["retrain_due"] is True
    assert last["running_total_measured_nats"] == pytest.approx(last["white_box_nats"])


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


def test_crafted_pickle_does_not_run(tmp_path):
    _Evil.marker = tmp_path / "pwned"
    path = tmp_path / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"w": _Evil()}, fh)
    with pytest.raises(CheckpointError, match="refused"):
        checkpoints.load_state(path)
    assert not _Evil.marker.exists()
    # a plain tensor checkpoint still loads
    torch.save({"w": torch.ones(2)}, tmp_path / "ok.pt")
    assert torch.equal(checkpoints.load_state(tmp_path / "ok.pt")["w"], torch.ones(2))
    # and the CIFAR batch reader refuses it as well
    with pytest.raises(data.DataError, match="refusing"):
        data.safe_unpickle(path.read_bytes())
    assert not _Evil.marker.exists()


def test_atomic_write_keeps_old_file_on_crash(tmp_path, monkeypatch):
    target = tmp_path / "cert.json"
    atomic.atomic_write_text(target, "old")

    def boom(*a, **k):
        raise KeyboardInterrupt("killed mid-write")

    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(KeyboardInterrupt):
        atomic.atomic_write_text(target, "new" * 1000)
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["cert.json"]


def test_scrub_accepts_datasets_and_loaders(trained):
    _, model, w0, split = trained
    from torch.utils.data import DataLoader, TensorDataset

    retain = TensorDataset(split.x_train[4:], split.y_train[4:])
    forget = DataLoader(TensorDataset(split.x_train[:4], split.y_train[:4]), batch_size=3)
    a = forgetbox.scrub(model, pretrained=w0, retain=retain, forget=forget, method="ntk", seed=0)
    b = forgetbox.scrub(
        model,
        pretrained=w0,
        retain=(split.x_train[4:], split.y_train[4:]),
        forget=(split.x_train[:4], split.y_train[:4]),
        method="ntk",
        seed=0,
    )
    assert torch.equal(flatten(parameters_of(a.model)), flatten(parameters_of(b.model)))
    assert a.scale is not None and a.delta is not None
    with pytest.raises(ValueError, match="empty"):
        forgetbox.scrub(
            model, pretrained=w0, retain=retain, forget=(split.x_train[:0], split.y_train[:0])
        )


def test_step_scale_reaches_the_step_and_the_certificate(trained, tmp_path):
    root, model, w0, split = trained
    retain, forget = (split.x_train[4:], split.y_train[4:]), (split.x_train[:4], split.y_train[:4])
    kw = dict(pretrained=w0, retain=retain, forget=forget, method="ntk", seed=0)
    trap = forgetbox.scrub(model, **kw)
    fixed = forgetbox.scrub(model, step_scale=1.5, **kw)
    assert fixed.scale == 1.5 and trap.scale != pytest.approx(1.5)
    assert torch.allclose(fixed.delta, trap.delta * (1.5 / trap.scale), rtol=1e-4, atol=1e-7)
    assert fixed.certificate["config"]["step_scale"] == 1.5
    assert trap.certificate["config"]["step_scale"] is None
    assert _cli(root, tmp_path / "o", "--step-scale", "1.5", method="ntk") == 0
    cert = json.loads((tmp_path / "o" / "certificate.json").read_text())
    assert (cert["config"]["step_scale"], cert["config"]["trapezium_scale"]) == (1.5, 1.5)


def test_guide_example_runs_and_cli_matches_it(tmp_path):
    """docs/guide-scrub.md: the example script, then the CLI on its files, same weights."""
    import runpy
    import sys

    script = Path(__file__).resolve().parents[1] / "docs" / "examples" / "scrub_digits.py"
    argv = sys.argv
    sys.argv = [str(script), str(tmp_path)]
    try:
        runpy.run_path(str(script), run_name="__main__")
    finally:
        sys.argv = argv
    code = cli.main(
        [
            "scrub",
            "--model",
            "smallcnn",
            "--weights",
            str(tmp_path / "trained.safetensors"),
            "--pretrained",
            str(tmp_path / "w0.safetensors"),
            "--data",
            str(tmp_path / "digits.npz"),
            "--forget",
            str(tmp_path / "forget.txt"),
            "--method",
            "ntk_fisher",
            "--seed",
            "0",
            "--out",
            str(tmp_path / "cli"),
        ]
    )
    assert code == 0
    api = torch.load(tmp_path / "scrubbed_api.pt", weights_only=True)
    cli_state = checkpoints.load_state(tmp_path / "cli" / "scrubbed.safetensors")
    assert all(torch.equal(api[k], cli_state[k]) for k in api)
    assert (tmp_path / "cli" / "summary.txt").read_text().startswith("forgetbox scrub")


def _prepare_cli(root: Path, out: Path, *extra: str) -> int:
    return cli.main([*_argv("prepare", root, out), *extra])


def test_prepared_requests_match_scrubbing_the_union_from_scratch(trained, tmp_path):
    root, model, w0, split = trained
    assert _prepare_cli(root, tmp_path / "prep") == 0
    assert _prepare_cli(root, tmp_path / "prep") == 2  # refuses to overwrite
    out = tmp_path / "out"
    (root / "second.txt").write_text("1 2\n")
    assert _cli(root, out, "--prepared", str(tmp_path / "prep"), method="ntk") == 0
    second = ["--forget", str(root / "second.txt"), "--prepared", str(tmp_path / "prep")]
    assert _cli(root, out, *second, method="ntk") == 0
    ledger = json.loads((out / "ledger.json").read_text())["entries"]
    assert [e["n_forget"] for e in ledger] == [4, 2]
    scrubbed = models.build_model(
        "smallcnn", num_classes=5, input_shape=(1, 8, 8), width=0.5, generator_seed=0
    )
    checkpoints.load_into(scrubbed, checkpoints.load_state(out / "scrubbed.safetensors"), "out")
    got = flatten(parameters_of(scrubbed))
    ref = forgetbox.scrub(
        model,
        pretrained=w0,
        data=(split.x_train, split.y_train),
        forget_indices=[0, 3, 5, 8, 1, 2],
        method="ntk",
    )
    want = flatten(parameters_of(ref.model))
    assert ((got - want).norm() / want.norm()).item() < 1e-4
    # the prepared state belongs to the original weights and to its own ledger
    bad = ["--prepared", str(tmp_path / "prep"), "--forget-class", "4", "--num-to-forget", "1"]
    assert _cli(root, tmp_path / "other-out", *bad, method="ntk") == 2
    assert not (tmp_path / "other-out").exists()


def test_prepared_api_refuses_other_methods_and_settings(trained):
    _, model, w0, split = trained
    d = (split.x_train, split.y_train)
    prep = forgetbox.prepare(model, d, weight_decay=0.1, pretrained=w0)
    with pytest.raises(ValueError, match="answers the NTK methods"):
        forgetbox.scrub(
            model, pretrained=w0, data=d, forget_indices=[1], prepared=prep, method="fisher"
        )
    with pytest.raises(ValueError, match="weight_decay"):
        forgetbox.scrub(
            model, pretrained=w0, data=d, forget_indices=[1], prepared=prep, weight_decay=0.2
        )
    assert len(prep.forgotten) == 0  # nothing was answered


def test_cli_prepares_a_trained_head_in_parameter_space(trained, tmp_path):
    """--trainable classifier.* with the parameter-space prepare: the requests' weights equal
    a from-scratch scrub of the union, and every frozen weight is returned bit-identical."""
    root, model, w0, split = trained
    head = ["--trainable", "classifier.*"]
    assert _prepare_cli(root, tmp_path / "prep", *head, "--solver", "param") == 0
    manifest = json.loads((tmp_path / "prep" / "prepared.json").read_text())
    assert manifest["space"] == "param"
    out = tmp_path / "out"
    (root / "second.txt").write_text("1 2\n")
    prep = ["--prepared", str(tmp_path / "prep"), *head]
    # a request that does not name the prepared subset is refused, nothing written
    assert _cli(root, tmp_path / "no-head", *prep[:2], method="ntk") == 2
    assert not (tmp_path / "no-head").exists()
    assert _cli(root, out, *prep, method="ntk") == 0
    assert _cli(root, out, "--forget", str(root / "second.txt"), *prep, method="ntk") == 0
    got = checkpoints.load_state(out / "scrubbed.safetensors")
    ref = forgetbox.scrub(
        model,
        pretrained=w0,
        data=(split.x_train, split.y_train),
        forget_indices=[0, 3, 5, 8, 1, 2],
        method="ntk",
        trainable="classifier.*",
    ).model.state_dict()
    for name, value in got.items():
        if name.startswith("classifier."):
            assert ((value - ref[name]).norm() / ref[name].norm()).item() < 1e-4
        else:
            assert torch.equal(value, model.state_dict()[name])
    assert _prepare_cli(root, tmp_path / "p2", "--solver", "param", "--kernel", "pseudo") == 2
    assert not (tmp_path / "p2").exists()
