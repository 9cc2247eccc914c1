"""The embedded default: scikit-learn's handwritten digits (8x8, no download)."""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from .arrays import Split, per_class_draw, relabel


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
    train_idx, val_idx = per_class_draw(yn, list(classes), [train_per_class, val_per_class], rng)
    used = set(train_idx) | set(val_idx)
    test_idx = np.array([i for i in np.flatnonzero(np.isin(yn, classes)) if i not in used])
    cl = list(classes)
    return Split(
        x[train_idx],
        torch.from_numpy(relabel(yn[train_idx], cl)),
        x[val_idx],
        torch.from_numpy(relabel(yn[val_idx], cl)),
        x[test_idx],
        torch.from_numpy(relabel(yn[test_idx], cl)),
        len(cl),
        {"train": train_idx.tolist(), "val": val_idx.tolist(), "test": test_idx.tolist()},
        f"digits{''.join(map(str, cl))}",
    )


def digits_pretrain(classes: tuple[int, ...] = (5, 6, 7, 8, 9)) -> tuple[Tensor, Tensor]:
    """All digits of ``classes`` (relabelled 0..k-1): the pre-training set of the default."""
    x, y = load_digits_arrays()
    mask = torch.isin(y, torch.tensor(classes))
    return x[mask], torch.from_numpy(relabel(y[mask].numpy(), list(classes)))
