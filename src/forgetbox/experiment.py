"""The paper's experiment: pre-train -> fine-tune -> forget -> read out, over seeds.

Each stage is cached in ``<out>/cache`` under a hash of everything it depends on, so an
interrupted run continues where it stopped and an identical second run recomputes nothing.
:func:`run_experiment` returns the results dictionary written to ``results.json`` (schema in
``docs/results-schema.md``).
"""

from __future__ import annotations

import copy
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from . import __version__, bounds, data, methods, models, ntk, readouts, training
from .checkpoints import (
    atomic_write_json,
    atomic_write_text,
    config_hash,
    load_state,
    save_state,
)
from .functional import flatten, load_flat_, num_parameters, parameters_of
from .methods import METHODS, ForgetConfig
from .progress import progress
from .training import FinetuneConfig, PretrainConfig

READOUT_KEYS = (
    "error_forget",
    "error_retain",
    "error_test",
    "error_val",
    "loss_forget",
    "relearn_epochs",
    "mia_forget_member_rate",
    "mia_auc",
    "l1_to_retrain_forget",
    "l1_to_retrain_retain",
    "l1_to_retrain_test",
    "info_weights_nats",
    "info_activations_nats_forget",
    "info_activations_nats_retain",
    "info_activations_nats_test",
    "info_activations_diag_nats_forget",
    "seconds",
)

PROFILES: dict[str, dict] = {
    # CI-sized: seconds
    "quick": dict(
        pretrain_epochs=3,
        finetune_max_epochs=15,
        finetune_schedule="constant",
        finetune_baseline_lr=0.01,
        relearn_max_epochs=10,
        queries_per_subset=5,
        tradeoff_draws=1,
        tradeoff_alphas=(1e-8, 1e-6),
        path_alphas=(0.0, 0.5, 1.0, 1.25),
        newton_max_iter=20,
    ),
    # the embedded default and CPU runs on real images
    "default": dict(
        pretrain_epochs=20,
        finetune_max_epochs=100,
        finetune_schedule="constant",
        finetune_baseline_lr=0.01,
        relearn_max_epochs=50,
        queries_per_subset=25,
        tradeoff_draws=3,
        tradeoff_alphas=(1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5),
        path_alphas=tuple(float(a) for a in np.round(np.linspace(0, 1.5, 13), 3)),
        newton_max_iter=100,
    ),
    # real images on 2 CPU cores in about 30 minutes (All-CNN x0.4, 3 seeds)
    "cpu": dict(
        pretrain_epochs=20,
        finetune_max_epochs=100,
        # constant lr 0.01 oscillates on real CIFAR-5 and stops at up to 28 % training error;
        # a cosine decay converges (0.4 %): benchmarks/finetune_study.py, docs/deviations.md
        finetune_schedule="cosine",
        # plain SGD at 0.01 is unstable from the converged (sharper) minimum the cosine schedule
        # reaches (D_r error 0.4 % -> 24-61 % in 10 epochs); 0.003 is the largest measured rate
        # that keeps D_r fitted (docs/deviations.md, item 9)
        finetune_baseline_lr=0.003,
        relearn_max_epochs=30,
        queries_per_subset=20,
        tradeoff_draws=2,
        tradeoff_alphas=(1e-9, 1e-8, 1e-7, 1e-6, 1e-5),
        path_alphas=(0.0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5),
        newton_max_iter=40,
    ),
    # the paper's recipe (GPU advised)
    "paper": dict(
        pretrain_epochs=30,
        finetune_max_epochs=300,
        finetune_schedule="constant",
        finetune_baseline_lr=0.01,
        relearn_max_epochs=100,
        queries_per_subset=50,
        tradeoff_draws=5,
        tradeoff_alphas=(1e-10, 1e-9, 1e-8, 1e-7, 1e-6, 1e-5),
        path_alphas=tuple(float(a) for a in np.round(np.linspace(0, 1.5, 13), 3)),
        newton_max_iter=200,
    ),
}


@dataclass(frozen=True)
class ExperimentConfig:
    """Everything a run depends on. ``None`` fields are filled from the profile/dataset."""

    dataset: str = "digits"  # digits | cifar10 | cifar10-npz | npz:PATH | tinyimagenet | lacuna
    pretrain_dataset: str = "auto"
    model: str = "smallcnn"
    width: float = 1.0
    profile: str = "default"
    data_dir: str | None = None
    download: bool = False
    seeds: tuple[int, ...] = (0, 1, 2)
    methods: tuple[str, ...] = METHODS
    forget_class: int = 0
    num_to_forget: int | str | None = "auto"  # None: the whole class; auto: 15 digits, 25 else
    train_per_class: int | None = None  # None: 20 for digits, 100 (the paper's) otherwise
    val_per_class: int = 25
    test_per_class: int = 100
    weight_decay: float = 0.1
    alpha: float | None = None  # overrides both noise scales below
    alpha_fisher: float = 1e-6
    alpha_ntk_fisher: float = 1e-9
    solver: str = "auto"
    around: str = "trained"
    finetune_lr: float = 0.01
    pretrain_lr: float = 0.1
    pretrain_seed: int = 0
    pretrain_flip: bool | None = None  # None: flips for photographs, none for digits
    pretrain_epochs: int | None = None
    finetune_max_epochs: int | None = None
    finetune_schedule: str | None = None  # constant | cosine (lr decay over the epoch cap)
    finetune_baseline_lr: float | None = None  # the fine-tune baseline's plain-SGD rate
    relearn_max_epochs: int | None = None
    queries_per_subset: int | None = None
    tradeoff_draws: int | None = None
    tradeoff_alphas: tuple[float, ...] | None = None
    path_alphas: tuple[float, ...] | None = None
    newton_max_iter: int | None = None
    anchored: bool = True  # keep the weight-decay anchor in the NTK linearization
    trapezium_leg: str = "retain"  # retain (the authors' code) | full (Fig. 5's drawing)
    device: str = "cpu"
    out: str = "runs/default"
    cache_dir: str | None = None  # default: <out>/cache

    def resolved(self) -> ExperimentConfig:
        """Fill profile defaults and the pre-training set; validate."""
        if self.profile not in PROFILES:
            raise ValueError(f"unknown profile {self.profile!r}: {', '.join(PROFILES)}")
        fill = {k: v for k, v in PROFILES[self.profile].items() if getattr(self, k) is None}
        cfg = replace(self, **fill)
        digits = cfg.dataset == "digits"
        if cfg.train_per_class is None:
            cfg = replace(cfg, train_per_class=20 if digits else 100)
        if cfg.num_to_forget == "auto":
            cfg = replace(cfg, num_to_forget=15 if digits else 25)
        if cfg.pretrain_flip is None:
            cfg = replace(cfg, pretrain_flip=not digits)
        if cfg.pretrain_dataset == "auto":
            cfg = replace(cfg, pretrain_dataset=_default_pretrain(cfg.dataset))
        bad = [m for m in cfg.methods if m not in METHODS]
        if bad:
            raise ValueError(f"unknown methods {bad}; choose from {', '.join(METHODS)}")
        if "retrain" not in cfg.methods or "original" not in cfg.methods:
            cfg = replace(cfg, methods=tuple(dict.fromkeys(("original", "retrain", *cfg.methods))))
        if not cfg.seeds:
            raise ValueError("at least one seed is needed")
        if cfg.finetune_schedule not in training.LR_SCHEDULES:
            raise ValueError(
                f"finetune_schedule must be one of {training.LR_SCHEDULES}, "
                f"got {cfg.finetune_schedule!r}"
            )
        if cfg.trapezium_leg not in methods.TRAPEZIUM_LEGS:
            raise ValueError(
                f"trapezium_leg must be one of {methods.TRAPEZIUM_LEGS}, got {cfg.trapezium_leg!r}"
            )
        if not cfg.finetune_baseline_lr > 0:
            raise ValueError(f"finetune_baseline_lr must be > 0, got {cfg.finetune_baseline_lr}")
        _check_device(cfg.device)
        if cfg.alpha is not None:
            cfg = replace(cfg, alpha_fisher=cfg.alpha, alpha_ntk_fisher=cfg.alpha)
        return cfg

    def as_dict(self) -> dict:
        return {f.name: _plain(getattr(self, f.name)) for f in fields(self)}


def _check_device(name: str) -> None:
    try:
        device = torch.device(name)
    except RuntimeError as exc:
        raise ValueError(f"unknown device {name!r}: {exc}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but this PyTorch sees no CUDA device")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device must be cpu or cuda[:N], got {name!r}")


def _plain(v):
    if isinstance(v, tuple):
        return list(v)
    return v


def config_from_dict(d: dict) -> ExperimentConfig:
    names = {f.name for f in fields(ExperimentConfig)}
    unknown = set(d) - names
    if unknown:
        raise ValueError(f"unknown configuration keys: {sorted(unknown)}")
    conv = {k: tuple(v) if isinstance(v, list) else v for k, v in d.items()}
    return ExperimentConfig(**conv)


def _default_pretrain(dataset: str) -> str:
    return {
        "digits": "digits59",
        "cifar10": "cifar100",
        "cifar10-npz": "tinyimagenet32",
        "tinyimagenet": "tinyimagenet150",
        "lacuna": "lacuna100",
    }.get(dataset, "tinyimagenet32")


# ----------------------------------------------------------------------------- cache


@dataclass
class Cache:
    """Content-addressed store of stage outputs (safetensors + JSON) in a folder."""

    root: Path
    hits: int = 0
    misses: int = 0

    def state(self, key: str, compute: Callable[[], dict[str, Tensor]]) -> dict[str, Tensor]:
        path = self.root / f"{key}.safetensors"
        if path.exists():
            self.hits += 1
            return load_state(path)
        self.misses += 1
        out = compute()
        save_state(path, out)
        return out

    def json(self, key: str, compute: Callable[[], object]) -> object:
        path = self.root / f"{key}.json"
        if path.exists():
            self.hits += 1
            return json.loads(path.read_text())
        self.misses += 1
        out = compute()
        atomic_write_json(path, out)
        return json.loads(path.read_text())


# ----------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Task:
    """One seed's data: the split, the forget indices and convenient views."""

    split: data.Split
    forget_idx: Tensor

    @property
    def retain(self) -> tuple[Tensor, Tensor]:
        m = data.retain_mask(len(self.split.y_train), self.forget_idx)
        return self.split.x_train[m], self.split.y_train[m]

    @property
    def forget(self) -> tuple[Tensor, Tensor]:
        return self.split.x_train[self.forget_idx], self.split.y_train[self.forget_idx]

    @property
    def full(self) -> tuple[Tensor, Tensor]:
        return self.split.x_train, self.split.y_train

    @property
    def test(self) -> tuple[Tensor, Tensor]:
        return self.split.x_test, self.split.y_test


def load_pretrain_set(cfg: ExperimentConfig) -> tuple[Tensor, Tensor]:
    name = cfg.pretrain_dataset
    if name == "digits59":
        return data.digits_pretrain()
    if name == "cifar100":
        d = data.load_cifar("cifar100", cfg.data_dir or "data", download=cfg.download)
        return d.x_train, d.y_train
    if name == "cifar10-59":
        d = _finetune_arrays(replace(cfg, dataset="cifar10-npz"))
        return data.class_subset(d, (5, 6, 7, 8, 9))
    if name == "tinyimagenet32":
        d = data.load_npz(data.resolve_data_file("tinyimagenet32", cfg.data_dir))
        return data.class_subset(d, tuple(range(100)))
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


def _finetune_arrays(cfg: ExperimentConfig) -> data.ArrayData:
    if cfg.dataset == "cifar10":
        return data.load_cifar("cifar10", cfg.data_dir or "data", download=cfg.download)
    if cfg.dataset == "cifar10-npz" or cfg.dataset.startswith("npz:"):
        name = "cifar10-npz" if cfg.dataset == "cifar10-npz" else cfg.dataset
        return data.load_npz(data.resolve_data_file(name, cfg.data_dir))
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
            _finetune_arrays(cfg),
            seed=seed,
            train_per_class=cfg.train_per_class,
            val_per_class=cfg.val_per_class,
            test_per_class=cfg.test_per_class,
            name=cfg.dataset,
        )
    split = data.normalize(split, *stats)
    forget_idx = data.select_forget(
        split.y_train, forget_class=cfg.forget_class, num_to_forget=cfg.num_to_forget, seed=seed
    )
    return Task(split, forget_idx)


def channel_stats(x: Tensor) -> tuple[Tensor, Tensor]:
    dims = (0, 2, 3) if x.ndim == 4 else (0,)
    return x.mean(dims, keepdim=True), x.std(dims, keepdim=True).clamp_min(1e-6)


# ----------------------------------------------------------------------------- stages

# a fine-tuning path kept for Fig. 1 stays under this size (float32); larger models record every
# k-th epoch (ResNet-18 at full width over 300 epochs would otherwise hold 13 GB per run)
TRAJECTORY_BYTES = 1 << 30


def record_stride(max_epochs: int, num_params: int) -> int:
    """Record the weights every k epochs so that ``max_epochs / k`` flat float32 copies of
    ``num_params`` parameters fit in :data:`TRAJECTORY_BYTES` (k = 1 when they all fit)."""
    return max(1, math.ceil(max_epochs * num_params * 4 / TRAJECTORY_BYTES))


@dataclass
class Stages:
    """The pipeline with its cache; each method returns (and caches) one stage's output."""

    cfg: ExperimentConfig
    cache: Cache
    log: Callable[[str], None] = print
    _pretrained: nn.Module | None = None
    _stats: tuple[Tensor, Tensor] | None = None
    timings: dict = field(default_factory=dict)

    # -- pre-training
    def pretrain_key(self) -> str:
        c = self.cfg
        return "pretrain-" + config_hash(
            [
                c.pretrain_dataset,
                c.model,
                c.width,
                c.pretrain_epochs,
                c.pretrain_lr,
                c.pretrain_seed,
                c.pretrain_flip,
                c.data_dir if c.dataset != "digits" else None,
            ]
        )

    def pretrained(self, num_classes: int, input_shape: tuple[int, ...]) -> nn.Module:
        if self._pretrained is not None:
            return self._pretrained
        c = self.cfg
        x, y = load_pretrain_set(c)
        self._stats = channel_stats(x)
        x = (x - self._stats[0]) / self._stats[1]
        k = int(y.max()) + 1
        model = models.build_model(
            c.model,
            num_classes=k,
            input_shape=tuple(x.shape[1:]),
            width=c.width,
            generator_seed=c.pretrain_seed,
        )

        def compute():
            t = time.perf_counter()
            cfg = PretrainConfig(epochs=c.pretrain_epochs, lr=c.pretrain_lr, flip=c.pretrain_flip)
            training.pretrain(model, x, y, cfg, seed=c.pretrain_seed, device=c.device)
            self.log(
                f"pre-trained {c.model} on {c.pretrain_dataset} ({len(x)} images) "
                f"in {time.perf_counter() - t:.0f} s"
            )
            return {k2: v.cpu() for k2, v in model.state_dict().items()}

        model.load_state_dict(self.cache.state(self.pretrain_key(), compute))
        # training may run on --device; every later stage starts from a CPU copy
        self._pretrained = model.cpu().eval()
        return self._pretrained

    def stats(self) -> tuple[Tensor, Tensor]:
        if self._stats is None:
            x, _ = load_pretrain_set(self.cfg)
            self._stats = channel_stats(x)
        return self._stats

    # -- fine-tuning
    @property
    def device(self) -> torch.device:
        return torch.device(self.cfg.device)

    def finetune_config(self, record: bool, num_params: int = 0) -> FinetuneConfig:
        """The fine-tuning recipe; ``record`` keeps the weight path of Fig. 1, every epoch or,
        for a model of ``num_params`` parameters whose path would pass
        :data:`TRAJECTORY_BYTES`, every k-th epoch."""
        epochs = self.cfg.finetune_max_epochs
        return FinetuneConfig(
            lr=self.cfg.finetune_lr,
            lr_schedule=self.cfg.finetune_schedule,
            weight_decay=self.cfg.weight_decay,
            max_epochs=epochs,
            record_every=record_stride(epochs, num_params) if record else 0,
        )

    def trained(self, task: Task, w0: nn.Module, seed: int, which: str) -> tuple[nn.Module, dict]:
        """``which`` = "original" (on D) or "retrain" (on D_r), with the weight trajectory."""
        x, y = task.full if which == "original" else task.retain
        recipe = self.finetune_config(True, num_parameters(w0))
        key = f"finetune-{which}-" + config_hash(
            [
                self.pretrain_key(),
                seed,
                recipe.__dict__,
                task.split.indices,
                task.forget_idx.tolist() if which == "retrain" else None,
                training.VERSION,
            ]
        )

        def compute():
            t = time.perf_counter()
            res = training.finetune(
                w0,
                x,
                y,
                recipe,
                seed=seed,
                device=self.cfg.device,
                desc=f"fine-tune {which} (seed {seed})",
            )
            state = {k: v for k, v in res.model.state_dict().items()}
            state["__trajectory__"] = torch.stack(res.trajectory)
            state["__meta__"] = torch.tensor(
                [
                    res.epochs,
                    res.train_error,
                    float(res.reached_zero_error),
                    time.perf_counter() - t,
                    -1 if res.restored_from is None else res.restored_from,
                ],
                dtype=torch.float64,
            )
            return state

        state = self.cache.state(key, compute)
        model = _clone_like(w0)
        model.load_state_dict({k: v for k, v in state.items() if not k.startswith("__")})
        meta = state["__meta__"].tolist()
        info = {
            "epochs": int(meta[0]),
            "train_error": meta[1],
            "reached_zero_error": bool(meta[2]),
            "seconds": meta[3],
            "restored_from_epoch": int(meta[4]) if meta[4] >= 0 else None,
            "trajectory": state["__trajectory__"],
        }
        return model.eval(), info

    # -- forgetting
    def forget_config(self, task: Task) -> ForgetConfig:
        c = self.cfg
        whole = c.num_to_forget is None
        return ForgetConfig(
            weight_decay=c.weight_decay,
            solver=c.solver,
            around=c.around,
            anchored=c.anchored,
            trapezium_leg=c.trapezium_leg,
            train=self.finetune_config(False),
            newton_max_iter=c.newton_max_iter,
            forgotten_class=c.forget_class if whole else None,
        )

    def alpha_for(self, method: str) -> float:
        return self.cfg.alpha_fisher if method == "fisher" else self.cfg.alpha_ntk_fisher

    def method_config(self, task: Task, method: str) -> ForgetConfig:
        """The configuration ``method`` runs with (its noise scale; the fine-tune baseline's
        learning rate); part of the method's and its readouts' cache keys."""
        fcfg = replace(self.forget_config(task), alpha=self.alpha_for(method))
        if method == "finetune":
            fcfg = replace(fcfg, finetune_lr=self.cfg.finetune_baseline_lr)
        return fcfg

    def scrubbed(
        self,
        method: str,
        task: Task,
        original: nn.Module,
        w0: nn.Module,
        retrained: nn.Module,
        seed: int,
        key_base: str,
        direction: Callable[[], ntk.NTKDirection] | None = None,
    ) -> dict:
        """One method's scrubbed state (cached). ``direction`` supplies the NTK step shared by
        ``ntk`` and ``ntk_fisher`` (solved once per seed); its solve time is still counted in
        each method's ``seconds``."""
        fcfg = self.method_config(task, method)
        key = f"method-{method}-" + config_hash(
            [key_base, method, repr(fcfg), methods.VERSION.get(method)]
            + ([fcfg.kernel] if fcfg.kernel != "exact" else [])
        )

        def compute():
            step = direction() if direction is not None and method in _NTK_METHODS else None
            res = methods.forget(
                method,
                original,
                w0,
                task.retain,
                task.forget,
                fcfg,
                seed=seed,
                retrain=lambda: retrained,
                direction=step,
            )
            # stage outputs are cached on the CPU, whatever device computed them
            out = {k: v.cpu() for k, v in res.model.state_dict().items()}
            out["__mean__"] = res.mean.detach().cpu()
            if res.noise_variance is not None:
                out["__var__"] = res.noise_variance.cpu()
            extras = {
                "seconds": res.seconds + (step.seconds if step is not None else 0.0),
                "scale": res.scale,
                "info": {k: v for k, v in res.info.items() if k != "mean"},
            }
            if method == "retrain":  # the gold reference's cost is its own fine-tuning time
                extras["seconds"] = None
            out["__extras__"] = torch.tensor(
                list(json.dumps(extras, default=str).encode()), dtype=torch.uint8
            )
            return out

        return self.cache.state(key, compute)


_NTK_METHODS = ("ntk", "ntk_fisher")


def _clone_like(model: nn.Module) -> nn.Module:
    return copy.deepcopy(model)


def _extras(state: dict) -> dict:
    return json.loads(bytes(state["__extras__"].tolist()).decode())


# ----------------------------------------------------------------------------- readouts


def _subsample(x: Tensor, n: int, seed: int) -> Tensor:
    if len(x) <= n:
        return x
    idx = torch.randperm(len(x), generator=torch.Generator().manual_seed(seed))[:n]
    return x[idx.sort().values]


def readout_row(
    stages: Stages,
    method: str,
    state: dict,
    task: Task,
    original: nn.Module,
    retrained: nn.Module,
    orig_loss_forget: float,
    seed: int,
    ref_var: Callable[[float], Tensor],
) -> dict:
    """All readouts of one scrubbed model (one row of ``per_seed``)."""
    cfg = stages.cfg
    model = _clone_like(original)
    model.load_state_dict({k: v for k, v in state.items() if not k.startswith("__")})
    model.eval()
    ex = _extras(state)
    dev = stages.device
    row: dict = {"seed": seed}
    sp = task.split
    for name, (x, y) in {
        "forget": task.forget,
        "retain": task.retain,
        "test": task.test,
        "val": (sp.x_val, sp.y_val),
    }.items():
        err, loss = readouts.error_and_loss(model, x, y)
        row[f"error_{name}"] = err
        row[f"loss_{name}"] = loss
    rl = readouts.relearn_time(
        model,
        *task.full,
        *task.forget,
        threshold=orig_loss_forget,
        max_epochs=cfg.relearn_max_epochs,
        seed=seed,
    )
    row["relearn_epochs"] = rl.epochs
    mia = readouts.membership_attack(model, task.retain, task.test, task.forget, seed=seed)
    row["mia_forget_member_rate"] = mia.member_rate
    row["mia_auc"] = mia.auc
    for name, x in (("forget", task.forget[0]), ("retain", task.retain[0]), ("test", task.test[0])):
        row[f"l1_to_retrain_{name}"] = readouts.l1_distance(model, retrained, x)
    # information bounds, at the method's own noise or, if it has none, ntk_fisher's alpha
    fcfg = stages.forget_config(task)
    alpha = stages.alpha_for(method) if "__var__" in state else cfg.alpha_ntk_fisher
    mean = state["__mean__"].to(dev)
    var = (
        state["__var__"].to(dev)
        if "__var__" in state
        else methods.variance_at(model, mean, task.retain[0], alpha, fcfg)
    )
    mean0 = flatten(parameters_of(retrained))
    var0 = ref_var(alpha)
    row["info_weights_nats"] = bounds.white_box(mean, var, mean0, var0).nats
    row["info_alpha"] = alpha
    q = cfg.queries_per_subset
    for name, x in (("forget", task.forget[0]), ("retain", task.retain[0]), ("test", task.test[0])):
        bb = bounds.black_box(model, mean, var, mean0, var0, _subsample(x, q, seed))
        row[f"info_activations_nats_{name}"] = bb.mean
        row[f"info_activations_diag_nats_{name}"] = bb.mean_diagonal
    row["seconds"] = ex["seconds"]
    if ex.get("scale") is not None:
        row["trapezium_scale"] = ex["scale"]
    return row


def tradeoff_rows(
    stages: Stages,
    method: str,
    state: dict,
    task: Task,
    original: nn.Module,
    retrained: nn.Module,
    seed: int,
    ref_var: Callable[[float], Tensor],
) -> list[dict]:
    """Fig. 3: test error and remaining information over a grid of noise scales and draws."""
    cfg = stages.cfg
    fcfg = stages.forget_config(task)
    mean = state["__mean__"].to(stages.device)
    probe = load_flat_(_clone_like(original), mean)
    F = methods.fisher_diagonal(probe, task.retain[0])
    mean0 = flatten(parameters_of(retrained))
    gen = torch.Generator().manual_seed(seed)
    rows = []
    q = _subsample(task.forget[0], cfg.queries_per_subset, seed)
    for alpha in cfg.tradeoff_alphas:
        var = methods.noise_variance(
            F,
            parameters_of(probe),
            alpha=alpha,
            head=models.head_name(probe),
            config=fcfg.noise,
            forgotten_class=fcfg.forgotten_class,
        )
        var0 = ref_var(alpha)
        white = bounds.white_box(mean, var, mean0, var0).nats
        black = bounds.black_box(probe, mean, var, mean0, var0, q).mean
        for draw in range(cfg.tradeoff_draws):
            noisy = methods._noisy(probe, mean, var, gen, fcfg)
            rows.append(
                {
                    "method": method,
                    "seed": seed,
                    "alpha": alpha,
                    "draw": draw,
                    "error_test": readouts.error_and_loss(noisy, *task.test)[0],
                    "error_forget": readouts.error_and_loss(noisy, *task.forget)[0],
                    "info_weights_nats": white,
                    "info_activations_nats_forget": black,
                }
            )
    return rows


# ----------------------------------------------------------------------------- driver


def run_seed(stages: Stages, seed: int) -> dict:
    cfg = stages.cfg
    task = build_task(cfg, seed, stages.stats())
    pre = stages.pretrained(task.split.num_classes, task.split.input_shape)
    w0 = models.with_new_head(pre, task.split.num_classes, seed=seed)
    original, orig_info = stages.trained(task, w0, seed, "original")
    retrained, retr_info = stages.trained(task, w0, seed, "retrain")
    key_base = config_hash(
        [
            stages.pretrain_key(),
            seed,
            task.split.indices,
            task.forget_idx.tolist(),
            stages.finetune_config(True, num_parameters(w0)).__dict__,
            training.VERSION,
        ]
    )
    # methods and readouts run where --device says; the data stays on the CPU (moved per batch)
    w0, original, retrained = (m.to(stages.device) for m in (w0, original, retrained))
    orig_loss_forget = readouts.error_and_loss(original, *task.forget)[1]
    var_cache: dict[float, Tensor] = {}
    fcfg = stages.forget_config(task)

    def ref_var(alpha: float) -> Tensor:
        if alpha not in var_cache:
            var_cache[alpha] = methods.variance_at(
                retrained, flatten(parameters_of(retrained)), task.retain[0], alpha, fcfg
            )
        return var_cache[alpha]

    shared: dict[str, ntk.NTKDirection] = {}

    def direction() -> ntk.NTKDirection:  # solved at most once per seed, on first use
        if "step" not in shared:
            shared["step"] = methods.ntk_step(original, w0, task.retain, task.forget, fcfg, seed)
        return shared["step"]

    rows, states = {}, {}
    for method in progress(cfg.methods, desc=f"methods (seed {seed})"):
        state = stages.scrubbed(
            method, task, original, w0, retrained, seed, key_base, direction=direction
        )
        states[method] = state
        rkey = f"readout-{method}-" + config_hash(
            [
                key_base,
                method,
                repr(stages.method_config(task, method)),
                cfg.relearn_max_epochs,
                cfg.queries_per_subset,
                cfg.alpha_ntk_fisher,
                methods.VERSION.get(method),
            ]
        )
        rows[method] = stages.cache.json(
            rkey,
            lambda m=method, s=state: readout_row(
                stages, m, s, task, original, retrained, orig_loss_forget, seed, ref_var
            ),
        )
    tradeoff = []
    for method in ("ntk_fisher", "fisher"):
        if method in states:
            tkey = f"tradeoff-{method}-" + config_hash(
                [
                    key_base,
                    method,
                    cfg.tradeoff_alphas,
                    cfg.tradeoff_draws,
                    cfg.queries_per_subset,
                    methods.VERSION.get(method),
                    repr(stages.method_config(task, method)),
                ]
            )
            tradeoff += stages.cache.json(
                tkey,
                lambda m=method: tradeoff_rows(
                    stages, m, states[m], task, original, retrained, seed, ref_var
                ),
            )
    path = []
    for method in ("ntk", "ntk_fisher", "fisher", "newton"):
        if method in states:
            pkey = f"path-{method}-" + config_hash(
                [
                    key_base,
                    method,
                    cfg.path_alphas,
                    methods.VERSION.get(method),
                    repr(stages.method_config(task, method)),  # the state it starts from
                ]
            )
            subsets = {"forget": task.forget[0], "retain": task.retain[0], "test": task.test[0]}
            rows_path = stages.cache.json(
                pkey,
                lambda m=method, sub=subsets: readouts.activation_path(
                    original, states[m]["__mean__"], retrained, sub, tuple(cfg.path_alphas)
                ),
            )
            path += [{"method": method, "seed": seed, **r} for r in rows_path]
    pca = None
    if seed == cfg.seeds[0]:
        pts = {m: states[m]["__mean__"] for m in ("ntk", "ntk_fisher", "fisher") if m in states}
        noisy = {
            m: flatten(parameters_of(_model_from(original, states[m]))).cpu()
            for m in ("ntk_fisher", "fisher")
            if m in states
        }
        res = readouts.pca_paths(
            {"D": orig_info["trajectory"], "D_r": retr_info["trajectory"]},
            {
                **{f"{m} (mean)": v for m, v in pts.items()},
                **{f"{m} (noisy)": v for m, v in noisy.items()},
            },
        )
        pca = {
            "paths": {k: v.tolist() for k, v in res.paths.items()},
            "points": {k: v.tolist() for k, v in res.points.items()},
            "explained": res.explained.tolist(),
        }
    return {
        "rows": rows,
        "tradeoff": tradeoff,
        "activation_path": path,
        "pca": pca,
        "splits": {"seed": seed, **task.split.indices, "forget": task.forget_idx.tolist()},
        "training": {
            "original": {k: v for k, v in orig_info.items() if k != "trajectory"},
            "retrain": {k: v for k, v in retr_info.items() if k != "trajectory"},
        },
    }


def _model_from(like: nn.Module, state: dict) -> nn.Module:
    m = _clone_like(like)
    m.load_state_dict({k: v for k, v in state.items() if not k.startswith("__")})
    return m


def aggregate(per_seed_rows: dict[str, list[dict]]) -> dict:
    out = {}
    for method, rows in per_seed_rows.items():
        keys = [k for k in rows[0] if k != "seed"]
        mean, std = {}, {}
        for k in keys:
            vals = np.array([r[k] for r in rows if r.get(k) is not None], dtype=float)
            vals = vals[np.isfinite(vals)]
            mean[k] = float(vals.mean()) if len(vals) else None
            std[k] = float(vals.std(ddof=1)) if len(vals) > 1 else 0.0
        out[method] = {"per_seed": rows, "mean": mean, "std": std}
    return out


def versions() -> dict:
    import platform

    return {
        "forgetbox": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
    }


def run_experiment(cfg: ExperimentConfig, *, log: Callable[[str], None] = print) -> dict:
    """Run (or resume) the whole experiment; write every output into ``cfg.out``."""
    from . import claims

    cfg = cfg.resolved()
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    stages = Stages(cfg, Cache(Path(cfg.cache_dir) if cfg.cache_dir else out / "cache"), log)
    t0 = time.perf_counter()
    per_method: dict[str, list[dict]] = {m: [] for m in cfg.methods}
    tradeoff, path, pca, splits, trainings = [], [], None, [], []
    for seed in progress(cfg.seeds, desc="seeds"):
        res = run_seed(stages, seed)
        for m in cfg.methods:
            per_method[m].append(res["rows"][m])
        tradeoff += res["tradeoff"]
        path += res["activation_path"]
        pca = pca or res["pca"]
        splits.append(res["splits"])
        trainings.append({"seed": seed, **res["training"]})
    results = {
        "config": cfg.as_dict(),
        "versions": versions(),
        "seeds": list(cfg.seeds),
        "methods": aggregate(per_method),
        "tradeoff": tradeoff,
        "activation_path": path,
        "pca": pca,
        "training": trainings,
        "wall_seconds": time.perf_counter() - t0,
        "cache": {"hits": stages.cache.hits, "misses": stages.cache.misses},
    }
    results["claims"] = claims.evaluate(results)
    results["warnings"] = claims.training_warnings(results)
    for w in results["warnings"]:
        log(f"warning: {w}")
    publish(out, results, splits)
    return results


def publish(out: Path, results: dict, splits: list) -> None:
    """Write every output into a staging folder inside ``out``, then move the files into
    place, ``results.json`` last: a run stopped while writing leaves the previous outputs
    whole (never new figures beside an old report)."""
    from . import report

    for stale in out.glob(".outputs-*"):
        shutil.rmtree(stale, ignore_errors=True)
    stage = Path(tempfile.mkdtemp(dir=out, prefix=".outputs-"))
    try:
        atomic_write_json(stage / "splits.json", splits)
        report.write_all(results, stage)
        atomic_write_text(stage / "config.toml", report.config_toml(results))
        files = sorted(stage.iterdir(), key=lambda f: f.name == "results.json")
        for f in files:
            os.replace(f, out / f.name)
    finally:
        shutil.rmtree(stage, ignore_errors=True)
