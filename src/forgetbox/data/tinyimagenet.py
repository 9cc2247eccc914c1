"""Tiny ImageNet in its standard ``tiny-imagenet-200`` folder layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .arrays import ArrayData, DataError, images_to_tensor
from .files import IMAGE_SUFFIXES, load_image


def load_tiny_imagenet(root: str | Path, *, size: int = 32) -> ArrayData:
    """The standard ``tiny-imagenet-200`` layout (train/<wnid>/images, val/val_annotations.txt)."""
    root = Path(root)
    wnids_file = root / "wnids.txt"
    if not wnids_file.exists():
        raise DataError(f"{root}: not a tiny-imagenet-200 folder (no wnids.txt)")
    wnids = [w.strip() for w in wnids_file.read_text().split() if w.strip()]
    index = {w: i for i, w in enumerate(sorted(wnids))}
    xs, ys = [], []
    for w in sorted(wnids):
        for f in sorted((root / "train" / w / "images").glob("*")):
            if f.suffix.lower() in IMAGE_SUFFIXES:
                xs.append(load_image(f, size))
                ys.append(index[w])
    vx, vy = [], []
    ann = root / "val" / "val_annotations.txt"
    if ann.exists():
        for line in ann.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) >= 2 and parts[1] in index:
                vx.append(load_image(root / "val" / "images" / parts[0], size))
                vy.append(index[parts[1]])
    if not xs:
        raise DataError(f"{root}: no training images found")
    empty = np.zeros((0, size, size, 3), np.uint8)
    return ArrayData(
        images_to_tensor(np.stack(xs)),
        torch.tensor(ys),
        images_to_tensor(np.stack(vx) if vx else empty),
        torch.tensor(vy, dtype=torch.int64),
        tuple(sorted(wnids)),
    )
