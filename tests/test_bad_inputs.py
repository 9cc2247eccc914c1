"""Bad input for every command and the Python API, table-driven.

Each case asserts: exit status 2 (or the API's exception), one line on standard error that
names the offending input, no traceback, and that no file under the case's folders or the
shared inputs was created, changed or removed (SHA-256 of every file before and after).
"""

import hashlib
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, TensorDataset

import forgetbox
from forgetbox import checkpoints, cli, models
from forgetbox.checkpoints import save_state
from forgetbox.methods import ForgetConfig
from forgetbox.ntk import Linearization
from tests.conftest import argv as base_argv


def _tree(*roots: Path) -> dict[str, str]:
    out = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in dirnames + filenames:
                p = Path(dirpath) / name
                if p.is_symlink():
                    out[str(p)] = "link:" + os.readlink(p)
                elif p.is_file():
                    out[str(p)] = hashlib.sha256(p.read_bytes()).hexdigest()
                else:
                    out[str(p)] = "dir"
    return out


class _Evil:
    def __reduce__(self):
        return (os.system, (f"touch {_Evil.marker}",))


@dataclass
class World:
    root: Path  # the shared model and data (read only)
    base: Path  # inputs made for these cases, and finished output folders
    split: object
    model: torch.nn.Module
    w0: torch.nn.Module

    def scrub(self, out: Path, *extra: str, forget: Path | None = None) -> list[str]:
        args = [*base_argv("scrub", self.root, out), "--method", "ntk", "--seed", "3"]
        if "--forget-class" not in extra and "--forget" not in extra:
            args += ["--forget", str(forget or self.root / "forget.txt")]
        return [*args, *extra]

    def swap(self, args: list[str], flag: str, value) -> list[str]:
        args = list(args)
        args[args.index(flag) + 1] = str(value)
        return args


def _weights(w: World, name: str, change) -> Path:
    state = checkpoints.load_state(w.root / "trained.safetensors")
    path = w.base / "in" / name
    save_state(path, change(dict(state)))
    return path


def _npz(w: World, name: str, **arrays) -> Path:
    d = dict(np.load(w.root / "data.npz"))
    d.update(arrays)
    for k in [k for k, v in arrays.items() if v is None]:
        d.pop(k)
    path = w.base / "in" / name
    np.savez(path, **d)
    return path


def _text(w: World, name: str, text: str) -> Path:
    path = w.base / "in" / name
    path.write_text(text)
    return path


def _images(w: World, name: str) -> Path:
    folder = w.base / "in" / name
    for k in range(2):
        (folder / f"c{k}").mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (8, 8), (40 * k, i, 0)).save(folder / f"c{k}" / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def world(trained, tmp_path_factory):
    root, model, w0, split = trained
    base = tmp_path_factory.mktemp("bad")
    (base / "in").mkdir()
    w = World(root, base, split, model, w0)
    assert cli.main(w.scrub(base / "good")) == 0  # one request served
    key = _text(w, "key.txt", "k" * 32)
    assert cli.main(w.scrub(base / "keyed", "--ledger-key-file", str(key))) == 0
    assert cli.main(base_argv("prepare", root, base / "prep")) == 0
    assert cli.main(w.scrub(base / "pout", "--prepared", str(base / "prep"))) == 0
    assert cli.main(base_argv("prepare", root, base / "prep-unused")) == 0  # serves no ledger
    return w


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    return dst


def _edit_ledger(folder: Path, change) -> None:
    doc = json.loads((folder / "ledger.json").read_text())
    change(doc)
    (folder / "ledger.json").write_text(json.dumps(doc))


def _second(w: World, out: Path, *extra: str) -> list[str]:
    """A second request in ``out`` from its first request's scrubbed weights."""
    args = w.scrub(out, *extra, forget=_text(w, f"second-{out.name}.txt", "1 2"))
    return w.swap(args, "--weights", out / "scrubbed-0001.safetensors")


# ----------------------------------------------------------------------------- the cases
# each: (case_dir, world) -> list of CLI arguments; and the text the message must contain


def _evil_pt(w, d):
    _Evil.marker = d / "pwned"
    path = w.base / "in" / "evil.pt"
    with open(path, "wb") as fh:
        pickle.dump({"w": _Evil()}, fh)
    return w.swap(w.scrub(d / "o"), "--weights", path)


def _other_w0(w, d):
    other = models.build_model("smallcnn", num_classes=5, input_shape=(1, 8, 8), width=1.0)
    path = w.base / "in" / "other-w0.safetensors"
    save_state(path, other.state_dict())
    return w.swap(w.scrub(d / "o"), "--pretrained", path)


def _link_outside(w, d):
    folder = _images(w, "linked")
    secret = w.base / "in" / "outside.png"
    Image.new("RGB", (8, 8)).save(secret)
    os.symlink(secret, folder / "c0" / "sneaky.png")
    return w.swap(w.scrub(d / "o", "--forget-class", "0"), "--data", folder)


def _stray_file(w, d):
    folder = _images(w, "stray")
    (folder / "c1" / "notes.txt").write_text("not an image")
    return w.swap(w.scrub(d / "o", "--forget-class", "0"), "--data", folder)


def _corrupt_image(w, d):
    folder = _images(w, "corrupt")
    (folder / "c1" / "9.png").write_bytes(b"\x89PNG not really")
    return w.swap(w.scrub(d / "o", "--forget-class", "0"), "--data", folder)


def _dangling(w, d):
    d.mkdir()
    os.symlink(d / "nowhere", d / "o")
    return w.scrub(d / "o")


def _file_out(w, d):
    d.mkdir()
    (d / "o").write_text("a file")
    return w.scrub(d / "o")


def _stale_weights(w, d):
    out = _copy(w.base / "good", d / "o")  # request 2 with the original weights again
    return w.scrub(out, forget=_text(w, "stale.txt", "1 2"))


def _restart_wrong(w, d):
    out = _copy(w.base / "good", d / "o")
    args = _second(w, out, "--restart-from-original")
    return args


def _tamper(change):
    def case(w, d):
        out = _copy(w.base / "good", d / "o")
        _edit_ledger(out, change)
        return _second(w, out)

    return case


def _prepared_tamper(name, data=b"garbage"):
    def case(w, d):
        prep = _copy(w.base / "prep", d / "prep")
        out = _copy(w.base / "pout", d / "o")
        target = prep / name
        raw = bytearray(target.read_bytes())
        raw[-8:] = data[:8].ljust(8, b"x")
        target.write_bytes(bytes(raw))
        args = w.scrub(out, "--prepared", str(prep), forget=_text(w, "p2.txt", "1 2"))
        return args

    return case


def _overwrite_input(w, d):
    out = _copy(w.base / "good", d / "o")
    planted = out / "summary.txt"  # where request 2 writes its summary
    planted.write_text("1 2\n")
    return w.swap(_second(w, out), "--forget", planted)


def _numbered_beyond(w, d):
    out = _copy(w.base / "good", d / "o")
    planted = out / "scrubbed-0002.safetensors"  # a file of a request the ledger does not hold
    shutil.copy(out / "scrubbed-0001.safetensors", planted)
    return w.swap(_second(w, out), "--weights", planted)


def _keyless(w, d):
    out = _copy(w.base / "keyed", d / "o")
    return _second(w, out)


def _wrong_key(w, d):
    out = _copy(w.base / "keyed", d / "o")
    return _second(w, out, "--ledger-key-file", str(_text(w, "wrong-key.txt", "z" * 32)))


def _toml(text):
    def case(w, d):
        d.mkdir()
        (d / "c.toml").write_text(text)
        return ["run", "--config", str(d / "c.toml"), "--out", str(d / "o")]

    return case


def _run(*flags):
    def case(w, d):
        return ["run", "--profile", "quick", "--seeds", "0", *flags, "--out", str(d / "o")]

    return case


def _w(change):
    return lambda w, d: w.swap(
        w.scrub(d / "o"), "--weights", _weights(w, f"{d.name}.safetensors", change)
    )


def _data(**arrays):
    return lambda w, d: w.swap(w.scrub(d / "o"), "--data", _npz(w, f"{d.name}.npz", **arrays))


def _forget(text):
    return lambda w, d: w.scrub(d / "o", forget=_text(w, f"{d.name}.txt", text))


def _flags(*extra):
    return lambda w, d: w.scrub(d / "o", *extra)


def _prep(*extra, out="p"):
    return lambda w, d: [*base_argv("prepare", w.root, d / out), *extra]


def _shape(s):
    return s | {"classifier.weight": torch.zeros(5, 3)}


def _ledger_not_json(w, d):
    out = _copy(w.base / "good", d / "o")
    (out / "ledger.json").write_text("{")
    return _second(w, out)


def _existing_file(build, name):
    def case(w, d):
        d.mkdir()
        (d / name).write_text("a file")
        return build(w, d)

    return case


def _short_key(w, d):
    return w.scrub(d / "o", "--ledger-key-file", str(_text(w, "short.txt", "tiny")))


def _train_toml(w, d):
    d.mkdir()
    (d / "c.toml").write_text("[experiment]\nwidth = 'wide'\n")
    return ["train", "--config", str(d / "c.toml"), "--out", str(d / "o")]


CLI_CASES = {
    # checkpoints
    "weights missing tensor": (
        _w(lambda s: {k: v for k, v in s.items() if k != "classifier.bias"}),
        "missing",
    ),  # noqa: E501
    "weights extra tensor": (_w(lambda s: s | {"extra.weight": torch.zeros(3)}), "unexpected"),
    "weights wrong shape": (_w(_shape), "shape"),
    "weights NaN": (_w(lambda s: s | {"classifier.bias": torch.full((5,), float("nan"))}), "NaN"),
    "weights integer": (
        _w(lambda s: s | {"classifier.bias": torch.zeros(5, dtype=torch.int64)}),
        "floating point",
    ),  # noqa: E501
    "weights not safetensors": (
        lambda w, d: w.swap(w.scrub(d / "o"), "--weights", _text(w, "junk.safetensors", "junk")),
        "not a valid safetensors",
    ),  # noqa: E501
    "weights pickle that runs code": (_evil_pt, "refused to load"),
    "weights is a folder": (
        lambda w, d: w.swap(w.scrub(d / "o"), "--weights", w.base / "in"),
        "a folder where a file belongs",
    ),  # noqa: E501
    "weights absent": (
        lambda w, d: w.swap(w.scrub(d / "o"), "--weights", d / "none.safetensors"),
        "no such file",
    ),  # noqa: E501
    "pretrained other architecture": (_other_w0, "--pretrained"),
    "reference wrong shape": (
        lambda w, d: w.scrub(d / "o", "--reference", str(_weights(w, "ref.safetensors", _shape))),
        "--reference",
    ),  # noqa: E501
    "unknown model": (
        lambda w, d: w.swap(w.scrub(d / "o"), "--model", "resnet99"),
        "unknown model",
    ),  # noqa: E501
    "width NaN": (lambda w, d: w.swap(w.scrub(d / "o"), "--width", "nan"), "width"),
    "width zero": (lambda w, d: w.swap(w.scrub(d / "o"), "--width", "0"), "width"),
    "num-classes wrong": (_flags("--num-classes", "3"), "shape"),
    # cohorts
    "forget out of range": (_forget("0 10000"), "line 1: index 10000 lies outside [0, 60)"),
    "forget duplicate": (_forget("1\n1"), "line 2: index 1 repeats line 1"),
    "forget empty": (_forget("# nothing"), "empty"),
    "forget not an integer": (_forget("1\n2.5"), "line 2: '2.5' is not an integer"),
    "forget 64-bit overflow": (_forget(str(2**70)), "lies outside"),
    "forget negative": (_forget("-1"), "index -1 lies outside"),
    "forget whole set": (_forget(" ".join(map(str, range(60)))), "whole training set"),
    "forget file is a folder": (
        lambda w, d: w.scrub(d / "o", forget=w.base / "in"),
        "a folder where a file belongs",
    ),  # noqa: E501
    "forget file absent": (lambda w, d: w.scrub(d / "o", forget=d / "none.txt"), "no such file"),
    "forget class absent": (_flags("--forget-class", "9"), "class 9 is absent"),
    "forget class too few": (_flags("--forget-class", "0", "--num-to-forget", "50"), "it has 12"),  # noqa: E501
    "num to forget zero": (_flags("--forget-class", "0", "--num-to-forget", "0"), "positive"),
    "forget and forget-class": (
        lambda w, d: [*w.scrub(d / "o"), "--forget-class", "0"],
        "not both",
    ),  # noqa: E501
    # data
    "labels beyond the outputs": (_data(y_train=np.arange(60) % 7), "labels must lie in [0, 5)"),
    "test labels beyond the outputs": (_data(y_test=np.full(60, 9)), "test: labels must lie"),
    "3-channel data, 1-channel model": (
        lambda w, d: w.swap(
            w.scrub(d / "o"),
            "--data",
            _npz(w, "rgb.npz", x_train=np.repeat(np.load(w.root / "data.npz")["x_train"], 3, 1)),
        ),
        "--data: inputs of shape (3, 8, 8)",
    ),  # noqa: E501
    "data without x_train": (_data(x_train=None), "x_train"),
    "data 1-D inputs": (_data(x_train=np.zeros(60, dtype=np.float32)), "no feature dimension"),
    "data NaN inputs": (
        lambda w, d: w.swap(
            w.scrub(d / "o"),
            "--data",
            _npz(
                w,
                "nan.npz",
                x_train=np.where(
                    np.arange(60)[:, None, None, None] == 4,
                    np.nan,
                    np.load(w.root / "data.npz")["x_train"],
                ),
            ),
        ),
        "NaN or infinite values (first at sample 4)",
    ),  # noqa: E501
    "data float labels": (_data(y_train=np.zeros(60)), "integer"),
    "data not npz": (
        lambda w, d: w.swap(w.scrub(d / "o"), "--data", _text(w, "data.csv", "1,2")),
        "must be an .npz",
    ),  # noqa: E501
    "data absent": (
        lambda w, d: w.swap(w.scrub(d / "o"), "--data", d / "none.npz"),
        "no such file",
    ),  # noqa: E501
    "image link outside the folder": (_link_outside, "outside the data folder"),
    "non-image file in image folder": (_stray_file, "notes.txt: not an image"),
    "corrupt image": (_corrupt_image, "9.png: not a readable image"),
    # numbers
    "memory budget too small": (_flags("--memory-budget-gb", "1e-7"), "memory budget"),
    "memory budget negative": (_flags("--memory-budget-gb", "-1"), "--memory-budget-gb"),
    "weight decay NaN": (_flags("--weight-decay", "nan"), "weight_decay is nan"),
    "weight decay negative": (_flags("--weight-decay", "-0.1"), "weight_decay must be >="),
    "alpha NaN": (_flags("--alpha", "nan"), "alpha is nan"),
    "alpha negative": (_flags("--alpha", "-1"), "alpha must be >="),
    "step scale zero": (_flags("--step-scale", "0"), "step_scale must be > 0"),
    "cg tolerance out of range": (_flags("--cg-tol", "2"), "cg_tol"),
    "nystrom rank negative": (_flags("--nystrom-rank", "-3"), "nystrom_rank"),
    "threshold NaN": (_flags("--retrain-threshold-nats", "nan"), "--retrain-threshold-nats"),
    "method unknown": (_flags("--method", "magic"), "invalid choice"),
    # output folder
    "out is a file": (_file_out, "an existing file, not a folder"),
    "out is a dangling link": (_dangling, "dangling"),
    "output would overwrite an input": (_overwrite_input, "would be overwritten"),
    "a request's file beyond the ledger": (_numbered_beyond, "scrubbed-0002.safetensors"),
    # ledger and chain of weights
    "ledger not JSON": (_ledger_not_json, "not valid JSON"),
    "ledger of the old format": (_tamper(lambda doc: doc.clear()), "not a forgetbox ledger"),
    "ledger indices edited": (
        _tamper(lambda doc: doc["entries"][0].update(forget_indices=[0, 3, 5])),
        "entry 1",
    ),  # noqa: E501
    "ledger total edited": (
        _tamper(lambda doc: doc["entries"][0].update(white_box_nats=1.0)),
        "entry 1, field 'entry_sha256'",
    ),  # noqa: E501
    "ledger field missing": (
        _tamper(lambda doc: doc["entries"][0].pop("scrubbed_sha256")),
        "entry 1 lacks the field 'scrubbed_sha256'",
    ),  # noqa: E501
    "ledger entries not a list": (
        _tamper(lambda doc: doc.update(entries={})),
        "'entries' must be a list",
    ),  # noqa: E501
    "weights not the previous request's": (_stale_weights, "not the scrubbed weights of request 1"),  # noqa: E501
    "restart from non-original weights": (_restart_wrong, "--restart-from-original"),
    "authenticated ledger without key": (_keyless, "--ledger-key-file"),
    "authenticated ledger, wrong key": (_wrong_key, "entry 1, field 'entry_hmac'"),
    "ledger key too short": (_short_key, "at least 16 bytes"),
    # prepared state
    "prepared kernel altered": (
        _prepared_tamper("kernel.safetensors"),
        "kernel.safetensors: its SHA-256 does not match",
    ),  # noqa: E501
    "prepared cohort altered": (
        _prepared_tamper("cohort-0001.safetensors"),
        "cohort-0001.safetensors: its SHA-256",
    ),  # noqa: E501
    "prepared is a file": (
        lambda w, d: w.scrub(d / "o", "--prepared", str(w.root / "forget.txt")),
        "a file where a folder belongs",
    ),  # noqa: E501
    "prepared for other weights": (
        lambda w, d: w.swap(
            w.scrub(d / "o", "--prepared", str(w.base / "prep-unused")),
            "--weights",
            _weights(
                w,
                "scaled.safetensors",
                lambda s: {k: v * 1.01 if v.is_floating_point() else v for k, v in s.items()},
            ),
        ),
        "other weights",
    ),  # noqa: E501
    "prepared state of another ledger": (
        lambda w, d: w.scrub(d / "o", "--prepared", str(w.base / "prep")),
        "cohort-0001.safetensors",
    ),
    # prepare
    "prepare into a prepared folder": (
        lambda w, d: [*base_argv("prepare", w.root, w.base / "prep")],
        "already holds a prepared kernel",
    ),  # noqa: E501
    "prepare on a CUDA device": (_prep("--device", "cuda"), "CUDA"),
    "prepare on a TPU": (_prep("--device", "tpu"), "device must be cpu or cuda"),
    "prepare labels beyond outputs": (
        lambda w, d: w.swap(
            _prep()(w, d), "--data", _npz(w, "p-labels.npz", y_train=np.arange(60) % 7)
        ),
        "labels must lie",
    ),  # noqa: E501
    "prepare memory budget too small": (_prep("--memory-budget-gb", "1e-6"), "budget"),
    "prepare out is a file": (_existing_file(_prep(), "p"), "an existing file"),
    "prepare weights absent": (
        lambda w, d: w.swap(_prep()(w, d), "--weights", d / "none.st"),
        "no such file",
    ),  # noqa: E501
    # run and train
    "run profile unknown": (_run("--profile", "turbo"), "profile must be one of"),
    "run method unknown": (_run("--methods", "ntk,magic"), "unknown methods ['magic']"),
    "run seeds not integers": (_run("--seeds", "a,b"), "--seeds"),
    "run width NaN": (_run("--width", "nan"), "width is nan"),
    "run device unavailable": (_run("--device", "cuda"), "no CUDA device"),
    "run device unknown": (_run("--device", "gpu"), "device must be cpu or cuda"),
    "run num-to-forget too many": (_run("--num-to-forget", "500"), "cannot forget 500"),
    "run num-to-forget text": (_run("--num-to-forget", "some"), "--num-to-forget"),
    "run trapezium leg unknown": (_run("--trapezium-leg", "side"), "trapezium_leg"),
    "run step scale negative": (_run("--step-scale", "-1"), "step_scale must be >"),
    "run dataset unknown": (_run("--dataset", "imagenet"), "dataset must be one of"),
    "run data file absent": (
        _run("--dataset", "npz:/nonexistent/data.npz"),
        "no such data file",
    ),  # noqa: E501
    "run out is a file": (_existing_file(_run(), "o"), "an existing file"),
    "run toml unknown key": (
        _toml("[experiment]\nturbo = true\n"),
        "unknown configuration keys: ['turbo']",
    ),  # noqa: E501
    "run toml wrong type": (_toml('[experiment]\nseeds = "0"\n'), "seeds must be a list"),
    "run toml negative": (_toml("[experiment]\nweight_decay = -1.0\n"), "weight_decay must be >="),  # noqa: E501
    "run toml zero per class": (
        _toml("[experiment]\ntrain_per_class = 0\n"),
        "train_per_class must be >",
    ),  # noqa: E501
    "run toml malformed": (_toml("[experiment\n"), "not valid TOML"),
    "run toml absent": (lambda w, d: ["run", "--config", str(d / "none.toml")], "no such file"),
    "train profile unknown": (
        lambda w, d: ["train", "--profile", "turbo", "--out", str(d / "o")],
        "profile must be one of",
    ),  # noqa: E501
    "train toml wrong type": (_train_toml, "width must be a number"),
}


@pytest.mark.parametrize("name", list(CLI_CASES))
def test_cli_refuses_bad_input(name, world, tmp_path, capsys):
    build, message = CLI_CASES[name]
    args = build(world, tmp_path / "case")
    before = _tree(tmp_path, world.root, world.base)
    capsys.readouterr()
    try:
        code = cli.main(args)
    except SystemExit as exc:  # argparse's own refusals
        code = exc.code
    out, err = capsys.readouterr()
    assert code == 2, (name, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), (name, err)
    assert "Traceback" not in err + out, name
    assert message in err, (name, err)
    assert _tree(tmp_path, world.root, world.base) == before, name
    if name == "weights pickle that runs code":
        assert not _Evil.marker.exists()


def test_debug_shows_the_traceback(world, tmp_path):
    args = world.scrub(tmp_path / "o", "--weight-decay", "nan")
    with pytest.raises(ValueError, match="weight_decay is nan"):
        cli.main(["--debug", *args])


# ----------------------------------------------------------------------------- the Python API


class Augmented(Dataset):
    def __init__(self, x, y):
        self.x, self.y, self.gen = x, y, torch.Generator().manual_seed(0)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        return self.x[i] + 0.01 * torch.randn(self.x[i].shape, generator=self.gen), self.y[i]


def _api_cases(w: World):
    s = w.split
    d = (s.x_train, s.y_train)
    half = (s.x_train[:30], s.y_train[:30]), (s.x_train[30:], s.y_train[30:])
    kw = dict(pretrained=w.w0)
    return {
        "duplicate indices": (
            lambda: forgetbox.scrub(w.model, data=d, forget_indices=[1, 1], **kw),
            "duplicates",
        ),  # noqa: E501
        "indices out of range": (
            lambda: forgetbox.scrub(w.model, data=d, forget_indices=[99], **kw),
            "out of range",
        ),  # noqa: E501
        "float indices": (
            lambda: forgetbox.scrub(w.model, data=d, forget_indices=[1.5], **kw),
            "integers",
        ),  # noqa: E501
        "config conflict": (
            lambda: forgetbox.scrub(
                w.model,
                retain=half[1],
                forget=half[0],
                config=ForgetConfig(linearization=Linearization(weight_decay=0.05)),
                weight_decay=0.1,
                **kw,
            ),
            "weight_decay=0.1 conflicts with config.linearization.weight_decay=0.05",
        ),  # noqa: E501
        "shuffling loader": (
            lambda: forgetbox.scrub(
                w.model, data=DataLoader(TensorDataset(*d), shuffle=True), forget_indices=[1], **kw
            ),
            "shuffles",
        ),  # noqa: E501
        "augmenting dataset": (
            lambda: forgetbox.scrub(w.model, data=Augmented(*d), forget_indices=[1], **kw),
            "different samples for index",
        ),  # noqa: E501
        "1-D inputs": (
            lambda: forgetbox.scrub(
                w.model, retain=(torch.zeros(30), s.y_train[:30]), forget=half[0], **kw
            ),
            "no feature dimension",
        ),  # noqa: E501
        "NaN inputs": (
            lambda: forgetbox.scrub(
                w.model, retain=(half[1][0] * float("nan"), half[1][1]), forget=half[0], **kw
            ),
            "NaN",
        ),  # noqa: E501
        "alpha NaN": (
            lambda: forgetbox.scrub(
                w.model, retain=half[1], forget=half[0], alpha=float("nan"), **kw
            ),
            "alpha is nan",
        ),  # noqa: E501
        "test labels beyond outputs": (
            lambda: forgetbox.scrub(
                w.model,
                retain=half[1],
                forget=half[0],
                test=(s.x_test[:5], torch.full((5,), 7)),
                **kw,
            ),
            "test: labels must lie",
        ),  # noqa: E501
        "unknown setting": (
            lambda: forgetbox.scrub(w.model, retain=half[1], forget=half[0], turbo=True, **kw),
            "unexpected keyword argument 'turbo'",
        ),  # noqa: E501
        "integer weights": (
            lambda: forgetbox.scrub(_int_model(w.model), retain=half[1], forget=half[0], **kw),
            "integer weights",
        ),  # noqa: E501
    }


def _int_model(model):
    import copy

    m = copy.deepcopy(model)
    m.classifier.bias = torch.nn.Parameter(torch.zeros(5, dtype=torch.int64), requires_grad=False)
    return m


API_NAMES = [
    "duplicate indices",
    "indices out of range",
    "float indices",
    "config conflict",
    "shuffling loader",
    "augmenting dataset",
    "1-D inputs",
    "NaN inputs",
    "alpha NaN",
    "test labels beyond outputs",
    "unknown setting",
    "integer weights",
]


@pytest.mark.parametrize("name", API_NAMES)
def test_api_refuses_bad_input(name, world):
    call, message = _api_cases(world)[name]
    weights = {k: v.clone() for k, v in world.model.state_dict().items()}
    with pytest.raises((ValueError, TypeError)) as info:
        call()
    assert message in str(info.value), (name, str(info.value))
    assert all(torch.equal(weights[k], v) for k, v in world.model.state_dict().items())


def test_config_given_once_is_used(world):
    s = world.split
    retain, forget = (s.x_train[4:], s.y_train[4:]), (s.x_train[:4], s.y_train[:4])
    kw = dict(pretrained=world.w0, retain=retain, forget=forget, method="ntk")
    config = ForgetConfig(linearization=Linearization(weight_decay=0.05))
    a = forgetbox.scrub(world.model, config=config, **kw)
    b = forgetbox.scrub(world.model, weight_decay=0.05, **kw)
    assert a.certificate["config"]["weight_decay"] == 0.05
    assert torch.equal(a.delta, b.delta)
