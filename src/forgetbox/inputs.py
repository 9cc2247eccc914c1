"""User inputs as tensors: ``(inputs, labels)`` pairs, map-style datasets and data loaders.

The engine, the methods and the deletion API all accept any of these; this is the one place
that turns them into tensors and says what is wrong with them.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.data import BatchSampler, DataLoader, Dataset, SequentialSampler


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
