"""Arrays and splits: the containers every data source fills, and the helpers they share.

A :class:`Split` holds float32 tensors in NCHW layout with int64 labels for train / validation /
test, plus the indices into the source arrays that were drawn (stored with every run).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor


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
        """Number of classes (largest training label + 1)."""
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
        """Shape of one input, e.g. ``(3, 32, 32)``."""
        return tuple(self.x_train.shape[1:])


def images_to_tensor(images: np.ndarray) -> Tensor:
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


def per_class_draw(
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


def relabel(y: np.ndarray, classes: list[int]) -> np.ndarray:
    """Labels ``classes[i]`` become ``i``."""
    mapping = {k: i for i, k in enumerate(classes)}
    return np.array([mapping[int(v)] for v in y], dtype=np.int64)


def class_subset(data: ArrayData, classes: tuple[int, ...]) -> tuple[Tensor, Tensor]:
    """Training images of ``classes`` relabelled 0..k-1 (a pre-training set)."""
    mask = torch.isin(data.y_train, torch.tensor(classes))
    return data.x_train[mask], torch.from_numpy(relabel(data.y_train[mask].numpy(), list(classes)))


def class_arrays(data: ArrayData, classes: tuple[int, ...]) -> ArrayData:
    """The training and test images of ``classes``, relabelled 0..k-1."""
    cl = list(classes)
    parts = []
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        mask = torch.isin(y, torch.tensor(classes))
        parts.append((x[mask], torch.from_numpy(relabel(y[mask].numpy(), cl))))
    names = tuple(data.class_names[k] for k in cl) if data.class_names else ()
    return ArrayData(*parts[0], *parts[1], names)
