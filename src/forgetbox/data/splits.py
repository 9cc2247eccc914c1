"""The paper's small split (section 5.1)."""

from __future__ import annotations

import numpy as np
import torch

from .arrays import ArrayData, Split, per_class_draw, relabel


def small_split(
    data: ArrayData,
    *,
    seed: int,
    classes: tuple[int, ...] = (0, 1, 2, 3, 4),
    train_per_class: int = 100,
    val_per_class: int = 25,
    test_per_class: int = 100,
    name: str = "",
    val_from: str = "train",
) -> Split:
    """The paper's small split (section 5.1): per class, ``train_per_class`` + ``val_per_class``
    images drawn from the training arrays and ``test_per_class`` from the test arrays.

    Train/validation are disjoint draws from the training split and the test images come from
    the test split, so the three sets never share an image. ``val_from="test"`` draws the
    validation images from the test arrays instead, disjoint from the test images (for a source
    whose training split has no images to spare, as Tiny ImageNet's 100 per class).
    """
    if val_from not in ("train", "test"):
        raise ValueError(f"val_from must be 'train' or 'test', got {val_from!r}")
    rng = np.random.default_rng(seed)
    ytr, yte = data.y_train.numpy(), data.y_test.numpy()
    cl = list(classes)
    if val_from == "train":
        train_idx, val_idx = per_class_draw(ytr, cl, [train_per_class, val_per_class], rng)
        (test_idx,) = per_class_draw(yte, cl, [test_per_class], rng)
        x_val, y_val = data.x_train[val_idx], ytr[val_idx]
    else:
        (train_idx,) = per_class_draw(ytr, cl, [train_per_class], rng)
        val_idx, test_idx = per_class_draw(yte, cl, [val_per_class, test_per_class], rng)
        x_val, y_val = data.x_test[val_idx], yte[val_idx]
    return Split(
        data.x_train[train_idx],
        torch.from_numpy(relabel(ytr[train_idx], cl)),
        x_val,
        torch.from_numpy(relabel(y_val, cl)),
        data.x_test[test_idx],
        torch.from_numpy(relabel(yte[test_idx], cl)),
        len(cl),
        {"train": train_idx.tolist(), "val": val_idx.tolist(), "test": test_idx.tolist()},
        name,
    )
