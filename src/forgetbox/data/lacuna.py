"""Lacuna-100 / Lacuna-10 (face identities, ref. [16]) from an image folder of identities."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .arrays import ArrayData, DataError, relabel
from .files import load_image_folder


def lacuna(
    root: str | Path, *, seed: int, min_images: int = 25, size: int = 32
) -> tuple[ArrayData, ArrayData]:
    """Lacuna-100 (pre-training) and Lacuna-10 (fine-tuning) from a face image folder.

    Identities with at least ``min_images`` images are shuffled (seeded); the first 100 form
    Lacuna-100 and the next 10 Lacuna-10, so the two are disjoint. Each identity's images are
    split 80/20 into train and test.
    """
    x, y, _ = load_image_folder(root, size=size)
    counts = torch.bincount(y)
    eligible = torch.nonzero(counts >= min_images).flatten().tolist()
    if len(eligible) < 110:
        raise DataError(f"{root}: {len(eligible)} identities have >= {min_images} images; need 110")
    rng = np.random.default_rng(seed)
    order = rng.permutation(eligible).tolist()

    def build(ids: list[int]) -> ArrayData:
        tr, te = [], []
        for ident in ids:
            idx = rng.permutation(torch.nonzero(y == ident).flatten().numpy())
            cut = int(0.8 * len(idx))
            tr.append(idx[:cut])
            te.append(idx[cut:])
        tr, te = np.concatenate(tr), np.concatenate(te)
        yr = torch.from_numpy(relabel(y[tr].numpy(), ids))
        ye = torch.from_numpy(relabel(y[te].numpy(), ids))
        return ArrayData(x[tr], yr, x[te], ye)

    return build(order[:100]), build(order[100:110])
