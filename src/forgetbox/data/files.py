"""Data on disk in simple formats: ``.npz`` arrays (read with ``allow_pickle=False``), image
folders (``root/<class>/<image>``), and the named ``.npz`` presets of this project."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .arrays import ArrayData, DataError, images_to_tensor

NPZ_PRESETS = {"cifar10-npz": "cifar10.npz", "tinyimagenet32": "tinyimagenet32.npz"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".webp"}


def read_npz(
    path: str | Path, wanted: Callable[[set[str]], Iterable[str]]
) -> dict[str, np.ndarray]:
    """The arrays ``wanted(names in the file)`` names (those present), read whole from an
    ``.npz`` with ``allow_pickle=False``. Whatever the reader raises on a damaged file (a
    truncated or corrupt zip, a bad array header: ``BadZipFile``, ``zlib.error``,
    ``EOFError``, ...) becomes a :class:`DataError` naming the file."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"no such data file: {path}")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise DataError(f"{path}: a single array (.npy), not an .npz of named arrays")
        with z:
            names = set(z.files)
            return {k: z[k] for k in wanted(names) if k in names}
    except (DataError, MemoryError):
        raise
    except Exception as exc:  # the reader's own error types, whatever they are
        why = "holds Python objects" if "allow_pickle" in str(exc) else "truncated or corrupt"
        raise DataError(
            f"{path}: not a readable .npz of arrays, {why} ({type(exc).__name__}: {exc})"
        ) from exc


def load_npz(path: str | Path) -> ArrayData:
    """Arrays from an ``.npz`` with ``x_train, y_train, x_test, y_test`` (``x_val``/``y_val``
    accepted as the test part when no ``x_test``). Loaded with ``allow_pickle=False``."""
    path = Path(path)
    keys: set[str] = set()

    def wanted(names: set[str]) -> list[str]:
        keys.update(names)
        test = "test" if "x_test" in names else "val"
        need = {"x_train", "y_train", f"x_{test}", f"y_{test}"}
        if not need <= names:
            raise DataError(f"{path}: needs arrays {sorted(need)}, has {sorted(names)}")
        return [*sorted(need), "class_names"]

    z = read_npz(path, wanted)
    test = "test" if "x_test" in keys else "val"
    try:
        names = tuple(str(s) for s in z["class_names"]) if "class_names" in z else ()
        return ArrayData(
            images_to_tensor(z["x_train"]),
            torch.from_numpy(z["y_train"].astype(np.int64)),
            images_to_tensor(z[f"x_{test}"]),
            torch.from_numpy(z[f"y_{test}"].astype(np.int64)),
            names,
        )
    except (TypeError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path}: arrays of the wrong kind ({exc})") from exc


def load_npz_arrays(path: str | Path) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(x_train, y_train, x_test, y_test)`` from an ``.npz`` (test arrays optional).

    uint8 arrays of rank 3 or 4 are images ``(N, H, W[, C])`` and become float ``(N, C, H, W)``
    in [0, 1]; floating arrays are used as they are (already preprocessed for the model).
    """
    path = Path(path)

    def wanted(names: set[str]) -> list[str]:
        if not {"x_train", "y_train"} <= names:
            raise DataError(f"{path}: needs arrays x_train and y_train, has {sorted(names)}")
        return ["x_train", "y_train", "x_test", "y_test"]

    z = read_npz(path, wanted)

    def conv(a: np.ndarray) -> Tensor:
        if a.dtype == np.uint8 and a.ndim in (3, 4):
            return images_to_tensor(a)
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
    xt = conv(z["x_test"]) if "x_test" in z else None
    yt = labels(z["y_test"]) if "y_test" in z else None
    return x, y, xt, yt


def load_image(path: Path, size: int | None) -> np.ndarray:
    """One image as uint8 ``(H, W, 3)``, box-resized to ``size`` x ``size`` when given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and im.size != (size, size):
                im = im.resize((size, size), Image.BOX)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, ValueError) as exc:
        raise DataError(f"{path}: not a readable image ({exc})") from exc


def image_files(root: Path) -> list[tuple[int, Path]]:
    """``(class index, file)`` of ``root/<class>/...`` in sorted order. Hidden files are
    skipped; a file without an image suffix, or a link that leads outside ``root``, is refused
    (it would silently change which sample an index names, or read data from elsewhere)."""
    base = root.resolve()
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    out = []
    for k, cls in enumerate(classes):
        for f in sorted((root / cls).rglob("*")):
            if any(part.startswith(".") for part in f.relative_to(root).parts):
                continue
            if not f.resolve().is_relative_to(base):
                raise DataError(f"{f}: a link to {f.resolve()}, outside the data folder {root}")
            if f.is_dir():
                continue
            if f.suffix.lower() not in IMAGE_SUFFIXES:
                raise DataError(
                    f"{f}: not an image ({', '.join(sorted(IMAGE_SUFFIXES))}); move it out of "
                    "the class folders"
                )
            out.append((k, f))
    return out


def load_image_folder(root: str | Path, *, size: int | None = 32) -> tuple[Tensor, Tensor, list]:
    """``root/<class>/<image>`` to ``(N, 3, size, size)`` images and labels (classes sorted)."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"no such image folder: {root}")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    files = image_files(root)
    if not files:
        raise DataError(f"{root}: no images found in class sub-folders")
    xs = [load_image(f, size) for _, f in files]
    if size is None and len({x.shape for x in xs}) > 1:
        raise DataError(f"{root}: images of different sizes; resize them to one size first")
    ys = [k for k, _ in files]
    return images_to_tensor(np.stack(xs)), torch.tensor(ys, dtype=torch.int64), classes


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
