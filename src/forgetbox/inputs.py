"""User inputs as tensors: ``(inputs, labels)`` pairs, map-style datasets and data loaders.

The engine, the methods and the deletion API all accept any of these; this is the one place
that turns them into tensors (and says what is wrong with them).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset


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
