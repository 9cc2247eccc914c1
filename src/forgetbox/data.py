"""Data sets and the paper's data protocol.

A :class:`Split` holds float32 tensors in NCHW layout with int64 labels for train / validation /
test, plus the indices into the source arrays that were drawn (stored with every run).

Sources:
- the embedded default, scikit-learn's handwritten digits (8x8, no download);
- CIFAR-10 / CIFAR-100 from the official "python version" archives (MD5-checked, pickle read
  with an allow-list so a crafted archive cannot run code);
- ``.npz`` arrays (``x_train``, ``y_train``, ``x_test``, ``y_test``; images N,H,W,C uint8);
- image folders (``root/<class>/<image>``), the Tiny ImageNet layout and Lacuna (face identities).
"""

from __future__ import annotations

import hashlib
import io
import os
import pickle
import tarfile
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

CIFAR_ARCHIVES = {
    "cifar10": (
        "cifar-10-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
        "c58f30108f718f92721af3b95e74349a",
        "cifar-10-batches-py",
    ),
    "cifar100": (
        "cifar-100-python.tar.gz",
        "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",
        "eb9058c3a382ffc7106e4002c42a8d85",
        "cifar-100-python",
    ),
}
NPZ_PRESETS = {"cifar10-npz": "cifar10.npz", "tinyimagenet32": "tinyimagenet32.npz"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp"}


class DataError(ValueError):
    """A data set is absent, corrupt, or a request on it cannot be met."""


@dataclass(frozen=True)
class ArrayData:
    """Whole source arrays: images ``(N, C, H, W)`` float32 in [0, 1] and int64 labels."""

    x_train: Tensor
    y_train: Tensor
    x_test: Tensor
    y_test: Tensor
    class_names: tuple[str, ...] = ()

    @property
    def num_classes(self) -> int:
        return int(max(self.y_train.max(), self.y_test.max())) + 1 if len(self.y_train) else 0


@dataclass(frozen=True)
class Split:
    """Train / validation / test tensors of one experiment, with the indices that were drawn."""

    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor
    num_classes: int
    indices: dict[str, list[int]] = field(default_factory=dict)
    name: str = ""

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


# ----------------------------------------------------------------------------- helpers


def _images_to_tensor(images: np.ndarray) -> Tensor:
    """uint8 ``(N, H, W, C)`` (or ``(N, H, W)``) to float32 ``(N, C, H, W)`` in [0, 1]."""
    arr = np.asarray(images)
    if arr.ndim == 3:
        arr = arr[..., None]
    if arr.ndim != 4:
        raise DataError(f"images must have 3 or 4 dimensions, got shape {arr.shape}")
    scale = 255.0 if arr.dtype == np.uint8 else 1.0
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(0, 3, 1, 2))).float() / scale


def normalize(split: Split, mean: Tensor | None = None, std: Tensor | None = None) -> Split:
    """Standardise every channel with the training set's statistics (or the ones given)."""
    dims = (0, 2, 3) if split.x_train.ndim == 4 else (0,)
    mean = split.x_train.mean(dims, keepdim=True) if mean is None else mean
    std = split.x_train.std(dims, keepdim=True).clamp_min(1e-6) if std is None else std

    def f(x: Tensor) -> Tensor:
        return (x - mean) / std

    return Split(
        f(split.x_train),
        split.y_train,
        f(split.x_val),
        split.y_val,
        f(split.x_test),
        split.y_test,
        split.num_classes,
        split.indices,
        split.name,
    )


def _per_class_draw(
    labels: np.ndarray, classes: list[int], counts: list[int], rng: np.random.Generator
) -> list[np.ndarray]:
    """For each count, disjoint random index sets with ``count`` items of every class."""
    out = [[] for _ in counts]
    for k in classes:
        pool = np.flatnonzero(labels == k)
        need = sum(counts)
        if len(pool) < need:
            raise DataError(f"class {k} has {len(pool)} images, {need} are needed")
        chosen = rng.permutation(pool)[:need]
        start = 0
        for i, n in enumerate(counts):
            out[i].append(chosen[start : start + n])
            start += n
    return [np.sort(np.concatenate(parts)) if parts else np.zeros(0, int) for parts in out]


def _relabel(y: np.ndarray, classes: list[int]) -> np.ndarray:
    mapping = {k: i for i, k in enumerate(classes)}
    return np.array([mapping[int(v)] for v in y], dtype=np.int64)


# ----------------------------------------------------------------------------- digits


def load_digits_arrays() -> tuple[Tensor, Tensor]:
    """scikit-learn's bundled digits: ``(1797, 1, 8, 8)`` float32 in [0, 1] and labels."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32) / 16.0).unsqueeze(1)
    return x, torch.from_numpy(d.target.astype(np.int64))


def digits_split(
    *,
    seed: int,
    classes: tuple[int, ...] = (0, 1, 2, 3, 4),
    train_per_class: int = 100,
    val_per_class: int = 25,
) -> Split:
    """Fine-tuning split on digits: ``train_per_class`` + ``val_per_class`` images per class
    drawn at random (seeded); all remaining images of those classes form the test set."""
    x, y = load_digits_arrays()
    yn = y.numpy()
    rng = np.random.default_rng(seed)
    train_idx, val_idx = _per_class_draw(yn, list(classes), [train_per_class, val_per_class], rng)
    used = set(train_idx) | set(val_idx)
    test_idx = np.array([i for i in np.flatnonzero(np.isin(yn, classes)) if i not in used])
    cl = list(classes)
    return Split(
        x[train_idx],
        torch.from_numpy(_relabel(yn[train_idx], cl)),
        x[val_idx],
        torch.from_numpy(_relabel(yn[val_idx], cl)),
        x[test_idx],
        torch.from_numpy(_relabel(yn[test_idx], cl)),
        len(cl),
        {"train": train_idx.tolist(), "val": val_idx.tolist(), "test": test_idx.tolist()},
        f"digits{''.join(map(str, cl))}",
    )


def digits_pretrain(classes: tuple[int, ...] = (5, 6, 7, 8, 9)) -> tuple[Tensor, Tensor]:
    """All digits of ``classes`` (relabelled 0..k-1): the pre-training set of the default."""
    x, y = load_digits_arrays()
    mask = torch.isin(y, torch.tensor(classes))
    return x[mask], torch.from_numpy(_relabel(y[mask].numpy(), list(classes)))


# ----------------------------------------------------------------------------- CIFAR archives


class _SafeUnpickler(pickle.Unpickler):
    """Unpickler for the CIFAR batches: only plain containers and numpy arrays, nothing else."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("builtins", "set"),
    }

    def find_class(self, module: str, name: str):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise DataError(f"refusing to unpickle {module}.{name}: not a CIFAR batch")


def safe_unpickle(data: bytes) -> object:
    """Load a CIFAR batch pickle without allowing arbitrary code execution."""
    return _SafeUnpickler(io.BytesIO(data), encoding="bytes").load()


def md5_of(path: Path) -> str:
    h = hashlib.md5()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _download(url: str, dest: Path) -> None:
    tmp = dest.with_name(dest.name + ".part")
    try:
        with urllib.request.urlopen(url, timeout=60) as resp, open(tmp, "wb") as out:
            while chunk := resp.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _cifar_members(name: str) -> tuple[list[str], list[str], bytes]:
    if name == "cifar10":
        return [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels"
    return ["train"], ["test"], b"fine_labels"


def load_cifar(
    name: str,
    data_dir: str | Path,
    *,
    download: bool = False,
    expected_md5: str | None = "official",
) -> ArrayData:
    """Load CIFAR-10 or CIFAR-100 from the official python-version archive or its folder.

    Looks in ``data_dir`` for the extracted folder (``cifar-10-batches-py``/``cifar-100-python``)
    or the ``.tar.gz``; with ``download=True`` fetches the archive from the official address.
    The archive's MD5 is checked against the published value (``expected_md5="official"``), a
    given digest, or not at all (``None``).
    """
    if name not in CIFAR_ARCHIVES:
        raise DataError(f"unknown CIFAR variant {name!r}; use cifar10 or cifar100")
    archive, url, md5, folder = CIFAR_ARCHIVES[name]
    data_dir = Path(data_dir)
    train_members, test_members, label_key = _cifar_members(name)
    if (data_dir / folder).is_dir():
        read = lambda m: (data_dir / folder / m).read_bytes()  # noqa: E731
        return _cifar_from_reader(read, train_members, test_members, label_key)
    path = data_dir / archive
    if not path.exists():
        if not download:
            raise DataError(
                f"{name}: neither {data_dir / folder} nor {path} exists. Put the official archive "
                f"there or pass --download to fetch it from {url}"
            )
        data_dir.mkdir(parents=True, exist_ok=True)
        try:
            _download(url, path)
        except OSError as exc:
            raise DataError(
                f"{name}: download from {url} failed ({exc}); are you offline? Place {archive} "
                f"in {data_dir} by hand."
            ) from exc
    want = md5 if expected_md5 == "official" else expected_md5
    if want is not None and (got := md5_of(path)) != want:
        raise DataError(f"{path}: MD5 {got} does not match the published {want}; corrupt file?")
    with tarfile.open(path, "r:gz") as tar:
        members = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}

        def read(m: str) -> bytes:
            if m not in members:
                raise DataError(f"{path}: archive has no member {m!r}")
            return tar.extractfile(members[m]).read()

        return _cifar_from_reader(read, train_members, test_members, label_key)


def _cifar_from_reader(read, train_members, test_members, label_key) -> ArrayData:
    def batches(members):
        xs, ys = [], []
        for m in members:
            d = safe_unpickle(read(m))
            if not isinstance(d, dict) or b"data" not in d or label_key not in d:
                raise DataError(f"CIFAR member {m!r} is not a batch dictionary")
            xs.append(np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(d[label_key], dtype=np.int64))
        x = np.concatenate(xs).transpose(0, 2, 3, 1)
        return _images_to_tensor(x), torch.from_numpy(np.concatenate(ys))

    xtr, ytr = batches(train_members)
    xte, yte = batches(test_members)
    return ArrayData(xtr, ytr, xte, yte)


# ----------------------------------------------------------------------------- npz and folders


def load_npz(path: str | Path) -> ArrayData:
    """Arrays from an ``.npz`` with ``x_train, y_train, x_test, y_test`` (``x_val``/``y_val``
    accepted as the test part when no ``x_test``). Loaded with ``allow_pickle=False``."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such data file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = set(z.files)
            test = "test" if "x_test" in keys else "val"
            need = {"x_train", "y_train", f"x_{test}", f"y_{test}"}
            if not need <= keys:
                raise DataError(f"{path}: needs arrays {sorted(need)}, has {sorted(keys)}")
            names = tuple(str(s) for s in z["class_names"]) if "class_names" in keys else ()
            return ArrayData(
                _images_to_tensor(z["x_train"]),
                torch.from_numpy(z["y_train"].astype(np.int64)),
                _images_to_tensor(z[f"x_{test}"]),
                torch.from_numpy(z[f"y_{test}"].astype(np.int64)),
                names,
            )
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz of arrays ({exc})") from exc


def load_npz_arrays(path: str | Path) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(x_train, y_train, x_test, y_test)`` from an ``.npz`` (test arrays optional).

    uint8 arrays of rank 3 or 4 are images ``(N, H, W[, C])`` and become float ``(N, C, H, W)``
    in [0, 1]; floating arrays are used as they are (already preprocessed for the model).
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such data file: {path}")
    try:
        with np.load(path, allow_pickle=False) as z:
            if not {"x_train", "y_train"} <= set(z.files):
                raise DataError(f"{path}: needs arrays x_train and y_train, has {sorted(z.files)}")

            def conv(a: np.ndarray) -> Tensor:
                if a.dtype == np.uint8 and a.ndim in (3, 4):
                    return _images_to_tensor(a)
                if not np.issubdtype(a.dtype, np.floating):
                    raise DataError(f"{path}: inputs must be uint8 images or floating arrays")
                return torch.from_numpy(np.ascontiguousarray(a)).float()

            def labels(a: np.ndarray) -> Tensor:
                if not np.issubdtype(a.dtype, np.integer) or a.ndim != 1:
                    raise DataError(f"{path}: labels must be a 1-D integer array")
                return torch.from_numpy(a.astype(np.int64))

            x, y = conv(z["x_train"]), labels(z["y_train"])
            if len(x) != len(y):
                raise DataError(f"{path}: {len(x)} inputs but {len(y)} labels")
            xt = conv(z["x_test"]) if "x_test" in z.files else None
            yt = labels(z["y_test"]) if "y_test" in z.files else None
            return x, y, xt, yt
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: not a readable .npz of arrays ({exc})") from exc


def _load_image(path: Path, size: int | None) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        if size is not None and im.size != (size, size):
            im = im.resize((size, size), Image.BOX)
        return np.asarray(im, dtype=np.uint8)


def load_image_folder(root: str | Path, *, size: int | None = 32) -> tuple[Tensor, Tensor, list]:
    """``root/<class>/<image>`` to ``(N, 3, size, size)`` images and labels (classes sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no such image folder: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    xs, ys = [], []
    for k, cls in enumerate(classes):
        for f in sorted((root / cls).rglob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                xs.append(_load_image(f, size))
                ys.append(k)
    if not xs:
        raise DataError(f"{root}: no images found in class sub-folders")
    return _images_to_tensor(np.stack(xs)), torch.tensor(ys, dtype=torch.int64), classes


def load_tiny_imagenet(root: str | Path, *, size: int = 32) -> ArrayData:
    """The standard ``tiny-imagenet-200`` layout (train/<wnid>/images, val/val_annotations.txt)."""
    root = Path(root)
    wnids_file = root / "wnids.txt"
    if not wnids_file.exists():
        raise DataError(f"{root}: not a tiny-imagenet-200 folder (no wnids.txt)")
    wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(sorted(wnids))}
    xs, ys = [], []
    for w in sorted(wnids):
        for f in sorted((root / "train" / w / "images").glob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                xs.append(_load_image(f, size))
                ys.append(index[w])
    vx, vy = [], []
    ann = root / "val" / "val_annotations.txt"
    if ann.exists():
        for line in ann.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in index:
                vx.append(_load_image(root / "val" / "images" / parts[0], size))
                vy.append(index[parts[1]])
    if not xs:
        raise DataError(f"{root}: no training images found")
    empty = np.zeros((0, size, size, 3), np.uint8)
    return ArrayData(
        _images_to_tensor(np.stack(xs)),
        torch.tensor(ys),
        _images_to_tensor(np.stack(vx) if vx else empty),
        torch.tensor(vy, dtype=torch.int64),
        tuple(sorted(wnids)),
    )


def lacuna(
    root: str | Path, *, seed: int, min_images: int = 25, size: int = 32
) -> tuple[ArrayData, ArrayData]:
    """Lacuna-100 (pre-training) and Lacuna-10 (fine-tuning) from a face image folder.

    Identities with at least ``min_images`` images are shuffled (seeded); the first 100 form
    Lacuna-100 and the next 10 Lacuna-10, so the two are disjoint. Each identity's images are
    split 80/20 into train and test.
    """
    x, y, _ = load_image_folder(root, size=size)
    counts = torch.bincount(y)
    eligible = torch.nonzero(counts >= min_images).flatten().tolist()
    if len(eligible) < 110:
        raise DataError(f"{root}: {len(eligible)} identities have >= {min_images} images; need 110")
    rng = np.random.default_rng(seed)
    order = rng.permutation(eligible).tolist()

    def build(ids: list[int]) -> ArrayData:
        tr, te = [], []
        for ident in ids:
            idx = rng.permutation(torch.nonzero(y == ident).flatten().numpy())
            cut = int(0.8 * len(idx))
            tr.append(idx[:cut])
            te.append(idx[cut:])
        tr, te = np.concatenate(tr), np.concatenate(te)
        yr = torch.from_numpy(_relabel(y[tr].numpy(), ids))
        ye = torch.from_numpy(_relabel(y[te].numpy(), ids))
        return ArrayData(x[tr], yr, x[te], ye)

    return build(order[:100]), build(order[100:110])


# ----------------------------------------------------------------------------- protocol


def small_split(
    data: ArrayData,
    *,
    seed: int,
    classes: tuple[int, ...] = (0, 1, 2, 3, 4),
    train_per_class: int = 100,
    val_per_class: int = 25,
    test_per_class: int = 100,
    name: str = "",
) -> Split:
    """The paper's small split (section 5.1): per class, ``train_per_class`` + ``val_per_class``
    images drawn from the training arrays and ``test_per_class`` from the test arrays.

    Train/validation are disjoint draws from the training split and the test images come from
    the test split, so the three sets never share an image.
    """
    rng = np.random.default_rng(seed)
    ytr, yte = data.y_train.numpy(), data.y_test.numpy()
    cl = list(classes)
    train_idx, val_idx = _per_class_draw(ytr, cl, [train_per_class, val_per_class], rng)
    (test_idx,) = _per_class_draw(yte, cl, [test_per_class], rng)
    return Split(
        data.x_train[train_idx],
        torch.from_numpy(_relabel(ytr[train_idx], cl)),
        data.x_train[val_idx],
        torch.from_numpy(_relabel(ytr[val_idx], cl)),
        data.x_test[test_idx],
        torch.from_numpy(_relabel(yte[test_idx], cl)),
        len(cl),
        {"train": train_idx.tolist(), "val": val_idx.tolist(), "test": test_idx.tolist()},
        name,
    )


def class_subset(data: ArrayData, classes: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Training images of ``classes`` relabelled 0..k-1 (a pre-training set)."""
    mask = torch.isin(data.y_train, torch.tensor(classes))
    return data.x_train[mask], torch.from_numpy(_relabel(data.y_train[mask].numpy(), list(classes)))


def resolve_data_file(name: str, data_dir: str | Path | None) -> Path:
    """Path of an npz preset (``cifar10-npz``, ``tinyimagenet32``) or ``npz:PATH``.

    Presets are looked up in ``data_dir``, ``$FORGETBOX_DATA``, ``./data`` and ``../shared/data``.
    """
    if name.startswith("npz:"):
        return Path(name[4:])
    if name not in NPZ_PRESETS:
        raise DataError(f"unknown data preset {name!r}")
    candidates = [data_dir, os.environ.get("FORGETBOX_DATA"), "data", "../shared/data"]
    for c in candidates:
        if c and (p := Path(c) / NPZ_PRESETS[name]).exists():
            return p
    raise DataError(f"{NPZ_PRESETS[name]} not found in --data-dir, $FORGETBOX_DATA, ./data")


# ----------------------------------------------------------------------------- inputs


def as_tensors(obj, name: str) -> tuple[Tensor, Tensor]:
    """``(inputs, labels)`` from a tensor pair, a map-style dataset or a data loader."""
    if isinstance(obj, tuple | list) and len(obj) == 2 and not isinstance(obj[0], tuple):
        x, y = torch.as_tensor(obj[0]), torch.as_tensor(obj[1])
    elif isinstance(obj, DataLoader):
        xs, ys = zip(*[(b[0], b[1]) for b in obj], strict=True) if len(obj) else ((), ())
        if not xs:
            raise ValueError(f"{name}: the data loader is empty")
        x, y = torch.cat(xs), torch.cat(ys)
    elif isinstance(obj, Dataset) or (hasattr(obj, "__getitem__") and hasattr(obj, "__len__")):
        if len(obj) == 0:
            raise ValueError(f"{name}: the dataset is empty")
        xs, ys = zip(*[obj[i][:2] for i in range(len(obj))], strict=True)
        x = torch.stack([torch.as_tensor(v) for v in xs])
        y = torch.as_tensor([int(v) for v in ys])
    else:
        raise TypeError(f"{name}: expected (inputs, labels) tensors, a Dataset or a DataLoader")
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} inputs but {len(y)} labels")
    if y.is_floating_point() or y.ndim != 1:
        raise ValueError(f"{name}: labels must be a 1-D integer tensor")
    return x.float() if not x.is_floating_point() else x, y.long()


# ----------------------------------------------------------------------------- forget cohort


def select_forget(
    labels: Tensor,
    *,
    forget_class: int | None = 0,
    num_to_forget: int | None = 25,
    indices: list[int] | None = None,
    seed: int = 0,
) -> Tensor:
    """Sorted indices (into the training set) of the cohort D_f to forget.

    Either explicit ``indices``, or ``num_to_forget`` random samples of ``forget_class``
    (``num_to_forget=None`` forgets the whole class). Raises :class:`DataError` on an empty
    cohort, out-of-range or duplicated indices, an absent class, or a cohort equal to the whole
    training set.
    """
    n = len(labels)
    if indices is not None:
        idx = torch.as_tensor(list(indices), dtype=torch.int64)
        if idx.numel() == 0:
            raise DataError("the forget cohort is empty")
        if (idx < 0).any() or (idx >= n).any():
            bad = idx[(idx < 0) | (idx >= n)][:5].tolist()
            raise DataError(f"forget indices out of range [0, {n}): {bad}")
        if idx.unique().numel() != idx.numel():
            raise DataError("forget indices contain duplicates")
    else:
        if forget_class is None:
            raise DataError("give forget indices or a forget class")
        pool = torch.nonzero(labels == forget_class).flatten()
        if pool.numel() == 0:
            raise DataError(f"class {forget_class} is absent from the training set")
        if num_to_forget is None:
            idx = pool
        else:
            if num_to_forget <= 0:
                raise DataError(f"num_to_forget must be positive, got {num_to_forget}")
            if num_to_forget > pool.numel():
                raise DataError(
                    f"cannot forget {num_to_forget} samples of class {forget_class}: "
                    f"it has {pool.numel()}"
                )
            gen = torch.Generator().manual_seed(seed)
            idx = pool[torch.randperm(pool.numel(), generator=gen)[:num_to_forget]]
    if idx.numel() >= n:
        raise DataError("the forget cohort covers the whole training set; nothing would remain")
    return idx.sort().values


def retain_mask(n: int, forget_idx: Tensor) -> Tensor:
    mask = torch.ones(n, dtype=torch.bool)
    mask[forget_idx] = False
    return mask


def read_index_file(path: str | Path) -> list[int]:
    """Integers from a text file, one per line or separated by commas/spaces (``#`` comments)."""
    text = Path(path).read_text()
    tokens = []
    for line in text.splitlines():
        tokens += line.split("#", 1)[0].replace(",", " ").split()
    try:
        return [int(t) for t in tokens]
    except ValueError as exc:
        raise DataError(f"{path}: forget indices must be integers ({exc})") from exc
