"""The experiment's data: the pre-training set, the fine-tuning split and forget cohort of each
seed."""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import Tensor

from .. import data
from .config import ExperimentConfig


@dataclass(frozen=True)
class Task:
    """One seed's data: the split, the forget indices and convenient views."""

    split: data.Split
    forget_idx: Tensor

    @property
    def retain(self) -> tuple[Tensor, Tensor]:
        """D_r: the training set without the cohort."""
        m = data.retain_mask(len(self.split.y_train), self.forget_idx)
        return self.split.x_train[m], self.split.y_train[m]

    @property
    def forget(self) -> tuple[Tensor, Tensor]:
        """D_f: the cohort."""
        return self.split.x_train[self.forget_idx], self.split.y_train[self.forget_idx]

    def retain_with_duplicates(self, seed: int) -> tuple[Tensor, Tensor]:
        """D_r with each forgotten sample replaced by a duplicate of a random retained one
        (seeded): |D| images, as the authors' code retrains."""
        xr, yr = self.retain
        gen = torch.Generator().manual_seed(10_000 + seed)
        extra = torch.randint(0, len(xr), (len(self.forget_idx),), generator=gen)
        return torch.cat([xr, xr[extra]]), torch.cat([yr, yr[extra]])

    @property
    def full(self) -> tuple[Tensor, Tensor]:
        """D: the whole training set."""
        return self.split.x_train, self.split.y_train

    @property
    def test(self) -> tuple[Tensor, Tensor]:
        """The test set."""
        return self.split.x_test, self.split.y_test


def load_pretrain_set(cfg: ExperimentConfig) -> tuple[Tensor, Tensor]:
    """The pre-training images and labels named by ``cfg.pretrain_dataset``."""
    name = cfg.pretrain_dataset
    if name == "digits59":
        return data.digits_pretrain()
    if name == "cifar100":
        d = data.load_cifar("cifar100", cfg.data_dir or "data", download=cfg.download)
        return d.x_train, d.y_train
    if name == "cifar10-59":
        d = finetune_arrays(replace(cfg, dataset="cifar10-npz"))
        return data.class_subset(d, (5, 6, 7, 8, 9))
    if name == "tinyimagenet32":
        d = data.load_npz(data.resolve_data_file("tinyimagenet32", cfg.data_dir))
        return data.class_subset(d, tuple(range(100)))
    if name == "tinyimagenet32-150":
        d = data.load_tinyimagenet_npz(data.resolve_data_file("tinyimagenet32", cfg.data_dir))
        return data.class_subset(d, data.TINY_PRETRAIN_CLASSES)
    if name == "tinyimagenet150":
        d = data.load_tiny_imagenet(cfg.data_dir or "data/tiny-imagenet-200")
        return data.class_subset(d, tuple(range(150)))
    if name == "lacuna100":
        return _lacuna(cfg)[0].x_train, _lacuna(cfg)[0].y_train
    if name.startswith("npz:"):
        d = data.load_npz(name[4:])
        return d.x_train, d.y_train
    raise ValueError(f"unknown pre-training set {name!r}")


def _lacuna(cfg: ExperimentConfig):
    return data.lacuna(cfg.data_dir or "data/lacuna", seed=cfg.pretrain_seed)


def finetune_arrays(cfg: ExperimentConfig) -> data.ArrayData:
    """The source arrays the fine-tuning split of ``cfg.dataset`` is drawn from."""
    if cfg.dataset == "cifar10":
        return data.load_cifar("cifar10", cfg.data_dir or "data", download=cfg.download)
    if cfg.dataset == "cifar10-npz" or cfg.dataset.startswith("npz:"):
        name = "cifar10-npz" if cfg.dataset == "cifar10-npz" else cfg.dataset
        return data.load_npz(data.resolve_data_file(name, cfg.data_dir))
    if cfg.dataset == "tinyimagenet32":
        d = data.load_tinyimagenet_npz(data.resolve_data_file("tinyimagenet32", cfg.data_dir))
        return data.class_arrays(d, data.TINY_FINETUNE_CLASSES)
    if cfg.dataset == "tinyimagenet":
        d = data.load_tiny_imagenet(cfg.data_dir or "data/tiny-imagenet-200")
        keep = tuple(range(150, 155))
        mtr, mte = (
            torch.isin(d.y_train, torch.tensor(keep)),
            torch.isin(d.y_test, torch.tensor(keep)),
        )
        return data.ArrayData(
            d.x_train[mtr], d.y_train[mtr] - 150, d.x_test[mte], d.y_test[mte] - 150
        )
    if cfg.dataset == "lacuna":
        return _lacuna(cfg)[1]
    raise ValueError(f"unknown dataset {cfg.dataset!r}")


def build_task(cfg: ExperimentConfig, seed: int, stats: tuple[Tensor, Tensor]) -> Task:
    """The fine-tuning split and forget cohort of one seed (reproducible from the seed)."""
    if cfg.dataset == "digits":
        split = data.digits_split(
            seed=seed, train_per_class=cfg.train_per_class, val_per_class=cfg.val_per_class
        )
    else:
        split = data.small_split(
            finetune_arrays(cfg),
            seed=seed,
            train_per_class=cfg.train_per_class,
            val_per_class=cfg.val_per_class,
            test_per_class=cfg.test_per_class,
            name=cfg.dataset,
            # Tiny ImageNet keeps 100 training images per class: validation comes from its
            # validation split, disjoint from the test images drawn there
            val_from="test" if cfg.dataset == "tinyimagenet32" else "train",
        )
    split = data.normalize(split, *stats)
    forget_idx = data.select_forget(
        split.y_train, forget_class=cfg.forget_class, num_to_forget=cfg.num_to_forget, seed=seed
    )
    return Task(split, forget_idx)


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    """Per-channel mean and standard deviation (the pre-training set's normalisation)."""
    dims = (0, 2, 3) if x.ndim == 4 else (0,)
    return x.mean(dims, keepdim=True), x.std(dims, keepdim=True).clamp_min(1e-6)
