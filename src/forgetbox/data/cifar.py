"""CIFAR-10 / CIFAR-100 from the official "python version" archives: MD5-checked, downloaded
atomically, and unpickled with an allow-list so a crafted archive cannot run code."""

from __future__ import annotations

import io
import pickle
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from ..atomic import atomic_path
from ..hashing import file_digest
from .arrays import ArrayData, DataError, images_to_tensor

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
    """MD5 of a file's bytes (hex), to check a downloaded archive."""
    return file_digest(path, "md5")


def _download(url: str, dest: Path) -> None:
    with (
        atomic_path(dest) as tmp,
        urllib.request.urlopen(url, timeout=60) as resp,
        open(tmp, "wb") as out,
    ):
        while chunk := resp.read(1 << 20):
            out.write(chunk)


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
        return images_to_tensor(x), torch.from_numpy(np.concatenate(ys))

    xtr, ytr = batches(train_members)
    xte, yte = batches(test_members)
    return ArrayData(xtr, ytr, xte, yte)
