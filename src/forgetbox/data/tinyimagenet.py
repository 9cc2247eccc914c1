"""Tiny ImageNet in its standard ``tiny-imagenet-200`` folder layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .arrays import ArrayData, DataError, images_to_tensor
from .files import IMAGE_SUFFIXES, load_image, read_npz


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


# Tiny ImageNet's 200 official classes in sorted-wnid order: the supplement pre-trains on the
# first 150 and fine-tunes on others; forgetbox fine-tunes on the next five (150-154), as the
# paper takes CIFAR-10's first five classes
PRETRAIN_CLASSES = tuple(range(150))
FINETUNE_CLASSES = tuple(range(150, 155))


def load_tinyimagenet_npz(path: str | Path) -> ArrayData:
    """``tinyimagenet32.npz`` (the shared 32x32 copy) as the official 200 classes.

    The copy holds 202 classes; the two flagged in ``class_has_no_boxes_file`` (gorilla,
    groom: not in the official ``wnids.txt``) are dropped and the others relabelled 0..199 in
    sorted-wnid order. The test part is the validation split (50 images per class; the official
    test set has no labels).
    """
    path = Path(path)
    need = {"x_train", "y_train", "x_val", "y_val", "class_names"}

    def wanted(names: set[str]) -> list[str]:
        if not need <= names:
            raise DataError(f"{path}: needs arrays {sorted(need)}, has {sorted(names)}")
        return [*sorted(need), "class_has_no_boxes_file"]

    z = read_npz(path, wanted)  # a damaged file is a DataError naming it
    extra = z.get("class_has_no_boxes_file")
    names = np.asarray(z["class_names"])
    keep = [i for i in range(len(names)) if extra is None or not extra[i]]
    index = np.full(len(names), -1, dtype=np.int64)
    index[keep] = np.arange(len(keep))
    parts = []
    for split in ("train", "val"):
        y = index[np.asarray(z[f"y_{split}"], dtype=np.int64)]
        mask = y >= 0
        parts.append((images_to_tensor(z[f"x_{split}"][mask]), torch.from_numpy(y[mask])))
    (xtr, ytr), (xte, yte) = parts
    return ArrayData(xtr, ytr, xte, yte, tuple(str(names[i]) for i in keep))
