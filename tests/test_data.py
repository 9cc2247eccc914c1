"""Data protocol: splits, archives in the official formats, folders, forget cohorts."""

import hashlib
import io
import pickle
import tarfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from forgetbox import data

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def test_digits_split_sizes_disjoint_and_seeded():
    s = data.digits_split(seed=0)
    assert (len(s.y_train), len(s.y_val)) == (500, 125)
    assert torch.bincount(s.y_train).tolist() == [100] * 5
    tr, va, te = (set(s.indices[k]) for k in ("train", "val", "test"))
    assert not (tr & va) and not (tr & te) and not (va & te)
    assert len(tr | va | te) == int(np.isin(data.load_digits_arrays()[1].numpy(), range(5)).sum())
    again = data.digits_split(seed=0)
    assert again.indices == s.indices and torch.equal(again.x_train, s.x_train)
    assert data.digits_split(seed=1).indices["train"] != s.indices["train"]
    xp, yp = data.digits_pretrain()
    assert set(yp.tolist()) == {0, 1, 2, 3, 4} and len(xp) == 1797 - len(tr | va | te)


def _arrays(n_train=60, n_test=40, classes=6, seed=0):
    rng = np.random.default_rng(seed)
    xtr = rng.integers(0, 256, (n_train, 32, 32, 3), dtype=np.uint8)
    xte = rng.integers(0, 256, (n_test, 32, 32, 3), dtype=np.uint8)
    ytr = np.arange(n_train) % classes
    yte = np.arange(n_test) % classes
    return xtr, ytr, xte, yte


def test_small_split_is_disjoint_and_draws_test_from_test_split(tmp_path):
    xtr, ytr, xte, yte = _arrays()
    np.savez(tmp_path / "d.npz", x_train=xtr, y_train=ytr, x_test=xte, y_test=yte)
    d = data.load_npz(tmp_path / "d.npz")
    assert d.x_train.shape == (60, 3, 32, 32) and d.x_train.max() <= 1.0
    s = data.small_split(d, seed=3, train_per_class=6, val_per_class=2, test_per_class=5)
    assert len(s.y_train) == 30 and len(s.y_val) == 10 and len(s.y_test) == 25
    assert not set(s.indices["train"]) & set(s.indices["val"])
    # test images are exactly the chosen test-split images (not training ones)
    assert torch.equal(s.x_test, d.x_test[s.indices["test"]])
    assert torch.equal(s.x_train, d.x_train[s.indices["train"]])
    assert (
        data.small_split(d, seed=3, train_per_class=6, val_per_class=2, test_per_class=5).indices
        == s.indices
    )
    with pytest.raises(data.DataError, match="needed"):
        data.small_split(d, seed=0, train_per_class=9, val_per_class=2, test_per_class=1)


def _cifar_batch(n, label_key, classes, seed):
    rng = np.random.default_rng(seed)
    return {
        b"batch_label": b"x",
        label_key: [int(v) for v in rng.integers(0, classes, n)],
        b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
        b"filenames": [b"f.png"] * n,
    }


def _build_cifar(root: Path, name: str) -> Path:
    folder = {"cifar10": "cifar-10-batches-py", "cifar100": "cifar-100-python"}[name]
    members = (
        {f"data_batch_{i}": 4 for i in range(1, 6)} | {"test_batch": 3}
        if name == "cifar10"
        else {"train": 7, "test": 3}
    )
    key = b"labels" if name == "cifar10" else b"fine_labels"
    path = root / data.CIFAR_ARCHIVES[name][0]
    with tarfile.open(path, "w:gz") as tar:
        for i, (m, n) in enumerate(members.items()):
            blob = pickle.dumps(_cifar_batch(n, key, 10 if name == "cifar10" else 100, i))
            info = tarfile.TarInfo(f"{folder}/{m}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    return path


@pytest.mark.parametrize("name,n_train", [("cifar10", 20), ("cifar100", 7)])
def test_cifar_archive_in_official_format(tmp_path, name, n_train):
    path = _build_cifar(tmp_path, name)
    md5 = hashlib.md5(path.read_bytes()).hexdigest()
    with pytest.raises(data.DataError, match="does not match the published"):
        data.load_cifar(name, tmp_path)
    d = data.load_cifar(name, tmp_path, expected_md5=md5)
    assert d.x_train.shape == (n_train, 3, 32, 32) and d.x_test.shape == (3, 3, 32, 32)
    # pixel layout: the first row of the pickled data is channel R of image 0
    with tarfile.open(path) as tar:
        first = [m for m in tar.getmembers() if m.isfile()][0]
        raw = pickle.loads(tar.extractfile(first).read())[b"data"][0]
    assert torch.allclose(d.x_train[0, 0].flatten() * 255, torch.tensor(raw[:1024]).float())
    # an extracted folder works too
    with tarfile.open(path) as tar:
        tar.extractall(tmp_path / "x", filter="data")
    d2 = data.load_cifar(name, tmp_path / "x")
    assert torch.equal(d2.x_train, d.x_train) and torch.equal(d2.y_test, d.y_test)


def test_cifar_absent_offline_gives_clear_message(tmp_path, monkeypatch):
    with pytest.raises(data.DataError, match="pass --download"):
        data.load_cifar("cifar10", tmp_path)

    def offline(*a, **k):
        raise urllib.error.URLError("no route to host")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    with pytest.raises(data.DataError, match="are you offline"):
        data.load_cifar("cifar10", tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []  # nothing half-written


def _write_images(folder: Path, n: int, color: int, size=10):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (size, size), (color, i, 0)).save(folder / f"img_{i}.png")


def test_image_folder_and_tiny_imagenet_layout(tmp_path):
    for k, cls in enumerate(["cat", "dog"]):
        _write_images(tmp_path / "folder" / cls, 3, 50 * k)
    x, y, names = data.load_image_folder(tmp_path / "folder", size=8)
    assert x.shape == (6, 3, 8, 8) and names == ["cat", "dog"] and y.tolist() == [0] * 3 + [1] * 3
    root = tmp_path / "tiny-imagenet-200"
    wnids = ["n01", "n02", "n03"]
    (root).mkdir()
    (root / "wnids.txt").write_text("\n".join(wnids))
    for k, w in enumerate(wnids):
        _write_images(root / "train" / w / "images", 2, 40 * k, size=64)
    _write_images(root / "val" / "images", 3, 9, size=64)
    (root / "val" / "val_annotations.txt").write_text(
        "\n".join(f"img_{i}.png\t{wnids[i]}\t0\t0\t1\t1" for i in range(3))
    )
    d = data.load_tiny_imagenet(root, size=32)
    assert d.x_train.shape == (6, 3, 32, 32) and d.y_test.tolist() == [0, 1, 2]
    assert data.class_subset(d, (1, 2))[1].tolist() == [0, 0, 1, 1]


def test_lacuna_identities_are_disjoint(tmp_path):
    for i in range(112):
        _write_images(tmp_path / "faces" / f"id{i:03d}", 5 if i != 3 else 2, i, size=4)
    l100, l10 = data.lacuna(tmp_path / "faces", seed=0, min_images=5, size=4)
    assert l100.y_train.max() == 99 and l10.y_train.max() == 9
    red100 = set((l100.x_train[:, 0, 0, 0] * 255).round().tolist())  # red channel = identity
    red10 = set((l10.x_train[:, 0, 0, 0] * 255).round().tolist())
    assert len(red100) == 100 and len(red10) == 10 and not red100 & red10
    assert 3.0 not in red100 | red10  # the identity with too few images is left out


def test_forget_selection_and_errors(tmp_path):
    y = torch.tensor([0, 0, 1, 1, 0, 2])
    idx = data.select_forget(y, forget_class=0, num_to_forget=2, seed=0)
    assert len(idx) == 2 and all(y[idx] == 0) and torch.equal(idx, idx.sort().values)
    assert torch.equal(data.select_forget(y, forget_class=0, num_to_forget=2, seed=0), idx)
    assert data.select_forget(y, forget_class=0, num_to_forget=None).tolist() == [0, 1, 4]
    for kwargs, msg in (
        ({"forget_class": 7}, "absent"),
        ({"forget_class": 0, "num_to_forget": 4}, "it has 3"),
        ({"forget_class": 0, "num_to_forget": 0}, "must be positive"),
    ):
        with pytest.raises(data.DataError, match=msg):
            data.select_forget(y, **kwargs)
    with pytest.raises(data.DataError, match="whole training set"):
        data.select_forget(torch.zeros(4, dtype=torch.long), forget_class=0, num_to_forget=None)
    (tmp_path / "f.txt").write_text("3, 1\n# comment\n5\n")
    assert data.read_index_file(tmp_path / "f.txt") == [3, 1, 5]


@pytest.mark.skipif(not (SHARED / "cifar10.npz").exists(), reason="shared CIFAR-10 file absent")
def test_shared_cifar10_npz_facts_and_paper_split():
    d = data.load_npz(SHARED / "cifar10.npz")
    assert torch.bincount(d.y_train).tolist() == [1000] * 10
    mean = d.x_train.mean((0, 2, 3))
    assert torch.allclose(mean, torch.tensor([0.4934, 0.4831, 0.4470]), atol=6e-4)
    s = data.small_split(d, seed=0, name="cifar5")
    assert (len(s.y_train), len(s.y_val), len(s.y_test)) == (500, 125, 500)
    assert not set(s.indices["train"]) & set(s.indices["val"])
