"""Forget cohorts: selecting D_f, its complement D_r, and index files."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .arrays import DataError


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
    """Boolean mask of D_r (True) in a training set of ``n`` samples."""
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
