"""User inputs: ``(inputs, labels)`` pairs, map-style datasets, data loaders, and arrays on
disk read a batch at a time.

The engine, the methods and the deletion API all accept any of these; this is the one place
that turns them into tensors (:func:`as_tensors`) or into :class:`Rows` that are read batch by
batch and never held whole (:func:`as_rows`), and says what is wrong with them.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler


class Rows:
    """Inputs read a batch at a time from an array on disk (e.g. ``numpy.load(...,
    mmap_mode="r")``) or a map-style dataset, never all at once.

    Indexing with a slice or an index tensor reads those rows and returns a tensor (on
    ``device``, in ``dtype``; integer inputs become float32); :meth:`view` selects rows without
    reading them; :meth:`to` changes where and how rows are returned. Every batch read is
    checked for NaN and infinite values. Engine code treats a ``Rows`` like an input tensor:
    ``len``, ``x[i:j]``, ``x[index]``, ``x.to(device, dtype)``, ``x.shape``, ``x.device``.
    """

    def __init__(
        self, source, index: Tensor | None = None, *, device=None, dtype=None, name="data"
    ):
        self.source = source
        self.index = None if index is None else torch.as_tensor(index, dtype=torch.long)
        self._device = torch.device(device) if device is not None else torch.device("cpu")
        self._dtype = dtype
        self.name = name
        self._item_shape: tuple[int, ...] | None = None

    def __len__(self) -> int:
        return len(self.index) if self.index is not None else len(self.source)

    def _positions(self, key) -> np.ndarray:
        if isinstance(key, slice):
            pos = np.arange(len(self))[key]
        else:
            pos = torch.as_tensor(key).reshape(-1).cpu().numpy()
        return pos if self.index is None else self.index.numpy()[pos]

    def _fetch(self, rows: np.ndarray) -> Tensor:
        src = self.source
        if isinstance(src, np.ndarray):  # numpy arrays and memory maps: one fancy-index read
            x = torch.from_numpy(np.ascontiguousarray(src[rows]))
        elif isinstance(src, Tensor):
            x = src[torch.from_numpy(rows)]
        else:
            get = getattr(src, "__getitems__", None)
            items = get(rows.tolist()) if get is not None else [src[int(i)] for i in rows]
            if isinstance(items, Tensor):
                x = items
            else:
                x = torch.stack(
                    [torch.as_tensor(it[0] if isinstance(it, tuple | list) else it) for it in items]
                )
        if not x.is_floating_point():
            x = x.float()
        for i in range(0, len(x), 64):  # in pieces: the check's temporaries stay small
            piece = x[i : i + 64]
            bad = ~torch.isfinite(piece.reshape(len(piece), -1)).all(1)
            if bad.any():
                first = int(rows[i + int(bad.nonzero()[0])])
                raise ValueError(
                    f"{self.name}: inputs contain NaN or infinite values (sample {first})"
                )
        return x

    def __getitem__(self, key) -> Tensor:
        x = self._fetch(self._positions(key))
        return x.to(self._device, self._dtype or x.dtype)

    def view(self, positions) -> Rows:
        """The rows at ``positions`` (indices into these rows), read lazily."""
        base = torch.as_tensor(self._positions(torch.as_tensor(positions)))
        return Rows(self.source, base, device=self._device, dtype=self._dtype, name=self.name)

    def head(self, n: int) -> Rows:
        """The first ``n`` rows, not read."""
        return self.view(torch.arange(n))

    def to(self, device=None, dtype=None) -> Rows:
        """The same rows returned on ``device`` and in ``dtype``."""
        out = Rows(
            self.source,
            self.index,
            device=device or self._device,
            dtype=dtype or self._dtype,
            name=self.name,
        )
        out._item_shape = self._item_shape
        return out

    @property
    def device(self) -> torch.device:
        """Where rows are returned."""
        return self._device

    @property
    def dtype(self) -> torch.dtype:
        """The dtype rows are returned in (their own when unset)."""
        return self._dtype or self[:1].dtype

    @property
    def shape(self) -> tuple[int, ...]:
        """``(rows, *input shape)``."""
        if self._item_shape is None:
            self._item_shape = tuple(self[:1].shape[1:])
        return (len(self), *self._item_shape)

    @property
    def ndim(self) -> int:
        """Number of dimensions of :attr:`shape`."""
        return len(self.shape)


def head(x, n: int):
    """The first ``n`` rows of a tensor or of :class:`Rows` (still unread)."""
    return x.head(n) if isinstance(x, Rows) else x[:n]


class _Chain:
    """Two row sources one after the other, read a batch at a time."""

    def __init__(self, a: Rows, b: Rows):
        self.a, self.b = a, b

    def __len__(self) -> int:
        return len(self.a) + len(self.b)

    def __getitems__(self, rows: list[int]) -> Tensor:
        idx = torch.as_tensor(rows, dtype=torch.long)
        first = idx < len(self.a)
        parts = {}
        if first.any():
            parts[True] = self.a[idx[first]]
        if (~first).any():
            parts[False] = self.b[idx[~first] - len(self.a)]
        like = next(iter(parts.values()))
        out = torch.empty(len(idx), *like.shape[1:], dtype=like.dtype)
        for which, values in parts.items():
            out[first if which else ~first] = values.to(like.dtype)
        return out


def concat(a, b):
    """Rows of ``a`` then ``b``: tensors are concatenated; :class:`Rows` stay unread (two
    views of one source become one view)."""
    if isinstance(a, Tensor) and isinstance(b, Tensor):
        return torch.cat([a, b])
    if isinstance(a, Rows) and isinstance(b, Rows) and a.source is b.source:
        ia = a.index if a.index is not None else torch.arange(len(a.source))
        ib = b.index if b.index is not None else torch.arange(len(b.source))
        return Rows(a.source, torch.cat([ia, ib]), device=a.device, dtype=a._dtype, name=a.name)
    ra = a if isinstance(a, Rows) else Rows(a)
    rb = b if isinstance(b, Rows) else Rows(b)
    return Rows(_Chain(ra.to("cpu"), rb.to("cpu")), device=ra.device, dtype=ra._dtype, name=ra.name)


def _labels_of(obj, name: str) -> Tensor:
    targets = getattr(obj, "targets", None)
    if targets is None:
        targets = getattr(obj, "labels", None)
    if targets is None:  # one pass over the data set, item by item
        targets = [int(obj[i][1]) for i in range(len(obj))]
    y = torch.as_tensor(np.asarray(targets))
    if y.is_floating_point() or y.ndim != 1 or len(y) != len(obj):
        raise ValueError(f"{name}: labels must be {len(obj)} integers")
    return y.long()


def as_rows(obj, name: str) -> tuple[Tensor | Rows, Tensor]:
    """``(inputs, labels)`` where inputs read from disk or from a dataset stay :class:`Rows`
    (read batch by batch) and in-memory pairs become tensors (as :func:`as_tensors`).

    Accepted as streamed: ``(Rows, labels)``, ``(numpy array or memory map, labels)``, a
    map-style dataset (labels from its ``targets``/``labels`` attribute, or one pass), a
    data loader that neither shuffles nor drops (its dataset)."""
    if isinstance(obj, tuple | list) and len(obj) == 2:
        x, y = obj
        if isinstance(x, np.ndarray) and not isinstance(x, np.memmap):
            return as_tensors(obj, name)
        if isinstance(x, np.memmap):
            x = Rows(x, name=name)
        if isinstance(x, Rows):
            y = torch.as_tensor(np.asarray(y) if not isinstance(y, Tensor) else y)
            if y.is_floating_point() or y.ndim != 1 or len(y) != len(x):
                raise ValueError(f"{name}: labels must be a 1-D integer tensor of {len(x)} values")
            if len(x) and len(x.shape) < 2:
                raise ValueError(f"{name}: inputs have no feature dimension")
            return x, y.long()
        return as_tensors(obj, name)
    if isinstance(obj, DataLoader):
        check_indexable(obj, name)
        obj = obj.dataset
    if isinstance(obj, Dataset) or (hasattr(obj, "__getitem__") and hasattr(obj, "__len__")):
        if len(obj) == 0:
            raise ValueError(f"{name}: the dataset is empty")
        return Rows(obj, name=name), _labels_of(obj, name)
    return as_tensors(obj, name)


def as_tensors(obj, name: str) -> tuple[Tensor, Tensor]:
    """``(inputs, labels)`` from a tensor pair, a map-style dataset or a data loader.

    Inputs keep their shape ``(n, ...)`` (at least one feature dimension) and must be finite;
    labels must be a 1-D integer tensor of the same length.
    """
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
    return _checked(x, y, name)


def _checked(x: Tensor, y: Tensor, name: str) -> tuple[Tensor, Tensor]:
    if len(x) != len(y):
        raise ValueError(f"{name}: {len(x)} inputs but {len(y)} labels")
    if y.is_floating_point() or y.ndim != 1:
        raise ValueError(f"{name}: labels must be a 1-D integer tensor")
    if x.ndim < 2:
        raise ValueError(
            f"{name}: inputs of shape {tuple(x.shape)} have no feature dimension; give shape "
            "(n, features) (for one feature, (n, 1))"
        )
    x = x.float() if not x.is_floating_point() else x
    finite = torch.isfinite(x.reshape(len(x), -1)).all(1) if len(x) else torch.ones(0, dtype=bool)
    if not finite.all():
        first = int((~finite).nonzero()[0])
        raise ValueError(f"{name}: inputs contain NaN or infinite values (first at sample {first})")
    return x, y.long()


def check_indexable(obj, name: str, *, probe: int = 4) -> None:
    """Refuse data whose order or content is not deterministic, since indices into it must
    name the same samples every time: a data loader that shuffles (or samples), or a dataset
    that returns different samples for the same index (random augmentation)."""
    if isinstance(obj, DataLoader):
        batches = obj.batch_sampler
        in_order = batches is None or (
            isinstance(batches, BatchSampler) and isinstance(batches.sampler, SequentialSampler)
        )
        sequential = isinstance(obj.sampler, SequentialSampler) and in_order
        if not sequential or getattr(obj, "drop_last", False):
            raise ValueError(
                f"{name}: this DataLoader shuffles, samples or drops samples, so indices would "
                "point at other samples; pass its dataset, or a DataLoader with shuffle=False "
                "and drop_last=False"
            )
        obj = obj.dataset
    if isinstance(obj, tuple | list) or not hasattr(obj, "__getitem__") or len(obj) == 0:
        return
    step = max(1, len(obj) // probe)
    for i in range(0, len(obj), step)[:probe]:
        a, b = obj[i], obj[i]
        if not _same(a, b):
            raise ValueError(
                f"{name}: the dataset returns different samples for index {i} on two reads "
                "(random augmentation?); indices need a deterministic dataset: pass one "
                "without random transforms"
            )


def _same(a, b) -> bool:
    if isinstance(a, tuple | list):
        return len(a) == len(b) and all(_same(u, v) for u, v in zip(a, b, strict=True))
    if isinstance(a, Tensor):
        return isinstance(b, Tensor) and a.shape == b.shape and bool(torch.equal(a, b))
    if isinstance(a, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    return a == b
