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


INT64 = (-(2**63), 2**63 - 1)


def read_index_file(path: str | Path, n: int | None = None) -> list[int]:
    """Integers from a text file, one per line or separated by commas/spaces (``#`` comments).

    Errors name the file and the line: a token that is not an integer, an index outside
    ``[0, n)`` (when ``n`` is given) or outside 64-bit integers, an index given twice.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder where an index file belongs")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file of indices ({exc.reason})") from exc
    out: list[int] = []
    first: dict[int, int] = {}
    for number, line in enumerate(text.splitlines(), 1):
        for token in line.split("#", 1)[0].replace(",", " ").split():
            try:
                value = int(token)
            except ValueError:
                raise DataError(f"{path}, line {number}: {token!r} is not an integer") from None
            high = n - 1 if n is not None else INT64[1]
            if value < 0 or value > high:
                where = f"[0, {n})" if n is not None else "the 64-bit integers"
                raise DataError(f"{path}, line {number}: index {value} lies outside {where}")
            if value in first:
                raise DataError(
                    f"{path}, line {number}: index {value} repeats line {first[value]}'s"
                )
            first[value] = number
            out.append(value)
    return out
