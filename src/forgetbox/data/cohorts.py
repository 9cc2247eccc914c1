"""Forget cohorts: selecting D_f, its complement D_r, and index files."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from ..cohort import Cohort, CohortError
from .arrays import DataError


def select_forget(
    labels: Tensor,
    *,
    forget_class: int = 0,
    num_to_forget: int | None = 25,
    seed: int = 0,
) -> Tensor:
    """Sorted indices (into the training set) of ``num_to_forget`` random samples of
    ``forget_class`` (``None``: the whole class), drawn with ``seed``; labels below 0 are never
    drawn (samples taken out of the pool). Raises :class:`DataError` on an absent class, a
    count the class cannot meet, or a cohort equal to the whole training set. Explicit indices
    are checked by :meth:`forgetbox.cohort.Cohort.check`."""
    n = len(labels)
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


def parse_index_file(path: str | Path) -> tuple[Tensor, tuple[str, ...]]:
    """Integers from a text file, one per line or separated by commas/spaces (``#``
    comments), as an int64 tensor in file order, with the line of each (``"line 3"``).

    Errors name the file and the line: a token that is not an integer, or one outside the
    64-bit integers. Whether the indices make a cohort is :func:`read_cohort`'s question.
    """
    path = Path(path)
    if path.is_dir():
        raise DataError(f"{path}: a folder where an index file belongs")
    try:
        text = path.read_text()
    except UnicodeDecodeError as exc:
        raise DataError(f"{path}: not a text file of indices ({exc.reason})") from exc
    values: list[int] = []
    lines: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        for token in line.split("#", 1)[0].replace(",", " ").split():
            try:
                value = int(token)
            except ValueError:
                raise DataError(f"{path}, line {number}: {token!r} is not an integer") from None
            if not INT64[0] <= value <= INT64[1]:
                raise DataError(f"{path}, line {number}: index {value} lies outside int64")
            values.append(value)
            lines.append(f"line {number}")
    return torch.tensor(values, dtype=torch.long), tuple(lines)


def read_cohort(path: str | Path, n: int, earlier=None) -> Cohort:
    """The cohort an index file states, in a training set of ``n`` samples of which ``earlier``
    are forgotten already: parsed, then checked once (:meth:`Cohort.check`); errors name the
    file and the line."""
    values, lines = parse_index_file(path)
    try:
        return Cohort.check(values, n, earlier, what=str(path), source=lines)
    except CohortError as exc:
        raise DataError(str(exc)) from exc


def read_index_file(path: str | Path, n: int | None = None) -> list[int]:
    """The indices of an index file in file order; with ``n``, checked as a cohort of a
    training set of ``n`` samples (:func:`read_cohort`)."""
    if n is None:
        return parse_index_file(path)[0].tolist()
    return read_cohort(path, n).new.tolist()
