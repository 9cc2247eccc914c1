"""The pipeline's stages with their cache: pre-training, fine-tuning on D and D_r, and each
method's scrubbed weights."""

from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import torch
from torch import Tensor, nn

from .. import methods, models, ntk, training
from ..functional import flatten, num_parameters, parameters_of, select_trainable
from ..hashing import config_hash
from ..methods import NTK_METHODS, CertifyConfig, ForgetConfig, NoiseConfig
from ..methods.config import OWN_SETTINGS
from ..ntk import Linearization
from ..training import FinetuneConfig, PretrainConfig
from .cache import Cache
from .config import ExperimentConfig
from .tasks import Task, channel_stats, load_pretrain_set

# a fine-tuning path kept for Fig. 1 stays under this size (float32); larger models record every
# k-th epoch (ResNet-18 at full width over 300 epochs would otherwise hold 13 GB per run)
TRAJECTORY_BYTES = 1 << 30


def record_stride(max_epochs: int, num_params: int) -> int:
    """Record the weights every k epochs so that ``max_epochs / k`` flat float32 copies of
    ``num_params`` parameters fit in :data:`TRAJECTORY_BYTES` (k = 1 when they all fit)."""
    return max(1, math.ceil(max_epochs * num_params * 4 / TRAJECTORY_BYTES))


def clone_like(model: nn.Module) -> nn.Module:
    """A deep copy of ``model``."""
    return copy.deepcopy(model)


def model_from(like: nn.Module, state: dict) -> nn.Module:
    """A copy of ``like`` holding the weights of a cached stage ``state``."""
    m = clone_like(like)
    m.load_state_dict({k: v for k, v in state.items() if not k.startswith("__")})
    return m


def extras_of(state: dict) -> dict:
    """The JSON a method stage stored beside its weights (seconds, scale, info)."""
    return json.loads(bytes(state["__extras__"].tolist()).decode())


def _json_tensor(obj: dict) -> Tensor:
    return torch.tensor(list(json.dumps(obj, default=str).encode()), dtype=torch.uint8)


@dataclass
class Stages:
    """The pipeline with its cache; each method returns (and caches) one stage's output."""

    cfg: ExperimentConfig
    cache: Cache
    log: Callable[[str], None] = print
    _pretrained: nn.Module | None = None
    _stats: tuple[Tensor, Tensor] | None = None
    pretrain_info: dict = field(default_factory=dict)  # images and classes of pre-training

    # -- pre-training
    def pretrain_key(self) -> str:
        """Cache key of pre-training (data, architecture, recipe, seed)."""
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
        """The pre-trained backbone (cached; trained once per run), in eval mode on the CPU."""
        if self._pretrained is not None:
            return self._pretrained
        c = self.cfg
        x, y = load_pretrain_set(c)
        self._stats = channel_stats(x)
        self.pretrain_info = {"images": len(x), "classes": int(y.max()) + 1}
        x = (x - self._stats[0]) / self._stats[1]
        model = models.build_model(
            c.model,
            num_classes=int(y.max()) + 1,
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
        """Per-channel mean and standard deviation of the pre-training images."""
        if self._stats is None:
            x, _ = load_pretrain_set(self.cfg)
            self._stats = channel_stats(x)
        return self._stats

    # -- fine-tuning
    @property
    def device(self) -> torch.device:
        """The device the methods and readouts run on."""
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

    def initial(self, task: Task, seed: int) -> nn.Module:
        """w0 of a seed: the pre-trained backbone with a new head (seeded), its trained
        parameters marked (``trainable``, default all)."""
        pre = self.pretrained(task.split.num_classes, task.split.input_shape)
        w0 = models.with_new_head(pre, task.split.num_classes, seed=seed)
        if self.cfg.trainable is not None:
            select_trainable(w0, self.cfg.trainable)
        return w0

    def _linearized(self, w0: nn.Module, x, y, seed: int) -> dict[str, Tensor]:
        """The linearized network trained exactly on (x, y) (a cached stage's tensors)."""
        t = time.perf_counter()
        lin = Linearization(weight_decay=self.cfg.weight_decay)
        model, info = methods.train_linearized(w0, (x, y), lin)
        err, _ = training.evaluate(model, x, y)
        self.log(
            f"linearized fine-tuning (seed {seed}): gradient norm {info['grad_norm']:.2e} after "
            f"{info['iterations']} Newton steps, training error {err:.3f}"
        )
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        path = [flatten(parameters_of(ntk.LinearizedModel(w0))), flatten(model.w()).detach()]
        state["__trajectory__"] = torch.stack([p.cpu().float() for p in path])
        meta = [info["iterations"], err, float(err == 0.0), time.perf_counter() - t, -1]
        state["__meta__"] = torch.tensor(meta, dtype=torch.float64)
        state["__grad_norm__"] = torch.tensor([info["grad_norm"]], dtype=torch.float64)
        return state

    def trained(self, task: Task, w0: nn.Module, seed: int, which: str) -> tuple[nn.Module, dict]:
        """``which`` = "original" (on D) or "retrain" (on D_r), with the weight trajectory
        (linearized: trained exactly, its gradient norm recorded)."""
        x, y = task.full if which == "original" else task.retain
        duplicates = which == "retrain" and self.cfg.retrain_duplicates
        if duplicates:  # the authors' retrain data: D_r plus random duplicates, |D| images
            x, y = task.retain_with_duplicates(seed)
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
            + (["duplicates"] if duplicates else [])
            + ([{"trainable": self.cfg.trainable}] if self.cfg.trainable else [])
            + (["linearized"] if self.cfg.linearized else [])
        )

        def compute():
            if self.cfg.linearized:
                return self._linearized(w0, x, y, seed)
            t = time.perf_counter()
            desc = f"fine-tune {which} (seed {seed})"
            res = training.finetune(w0, x, y, recipe, seed=seed, device=self.cfg.device, desc=desc)
            return _finetune_state(res, time.perf_counter() - t)

        state = self.cache.state(key, compute)
        like = ntk.LinearizedModel(w0) if self.cfg.linearized else w0
        info = _finetune_info(state)
        if "__grad_norm__" in state:
            info["grad_norm"] = float(state["__grad_norm__"][0])
        return model_from(like, state).eval(), info

    # -- forgetting
    def seed_key(self, task: Task, seed: int, w0: nn.Module) -> str:
        """What a seed's method stages depend on besides the method: pre-training, the seed,
        the split and cohort, the fine-tuning recipe (part of every method's cache key)."""
        return config_hash(
            [
                self.pretrain_key(),
                seed,
                task.split.indices,
                task.forget_idx.tolist(),
                self.finetune_config(True, num_parameters(w0)).__dict__,
                training.VERSION,
                {"linearized": self.cfg.linearized, "trainable": self.cfg.trainable},
            ]
        )

    def forget_config(self, task: Task) -> ForgetConfig:
        """The methods' shared configuration (linearization, preset choices, retrain recipe)."""
        c = self.cfg
        whole = c.num_to_forget is None
        lin = Linearization(weight_decay=c.weight_decay, around=c.around, anchored=c.anchored)
        return ForgetConfig(
            linearization=lin,
            trapezium_leg=c.trapezium_leg,
            finetune_anchor=c.finetune_anchor,
            noise=NoiseConfig(average=c.noise_average),
            train=self.finetune_config(False),
            newton_max_iter=c.newton_max_iter,
            forgotten_class=c.forget_class if whole else None,
            ntk=ntk.NTKOptions(solver=c.solver),
            # seeded noise: a study of the mechanism must be reproducible (not a deployment)
            certify=CertifyConfig(epsilon=c.epsilon, delta=c.delta, seeded_noise=True),
        )

    def alpha_for(self, method: str) -> float:
        """The noise scale of a noisy method."""
        return self.cfg.alpha_fisher if method == "fisher" else self.cfg.alpha_ntk_fisher

    def method_config(self, task: Task, method: str) -> ForgetConfig:
        """The configuration ``method`` runs with (its noise scale; the fine-tune baseline's
        learning rate); part of the method's and its readouts' cache keys."""
        fcfg = replace(self.forget_config(task), alpha=self.alpha_for(method))
        if method in NTK_METHODS:  # the other methods' keys do not depend on it
            fcfg = replace(fcfg, step_scale=self.cfg.step_scale)
        if method == "finetune":
            fcfg = replace(fcfg, finetune_lr=self.cfg.finetune_baseline_lr)
        for group, values in (self.cfg.baselines or {}).items():
            if method in OWN_SETTINGS[group]:  # the other methods' keys do not depend on it
                fcfg = replace(fcfg, **{group: replace(getattr(fcfg, group), **values)})
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
        allow_divergence: bool = False,
    ) -> dict:
        """One method's scrubbed state (cached). ``direction`` supplies the NTK step shared by
        ``ntk`` and ``ntk_fisher`` (solved once per seed); its solve time is still counted in
        each method's ``seconds``. A method that diverges (:class:`~forgetbox.methods.
        MethodDivergedError`) is cached as such: with ``allow_divergence`` its state says so
        (:func:`diverged`; ``extras_of`` gives the seconds and the message), else the error is
        raised again."""
        fcfg = self.method_config(task, method)
        key = f"method-{method}-" + config_hash(
            [key_base, method, fcfg.key(method), methods.VERSION.get(method)]
        )

        def compute():
            t0 = time.perf_counter()
            step = direction() if direction is not None and method in NTK_METHODS else None
            try:
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
                    validation=(task.split.x_val, task.split.y_val),
                )
            except methods.MethodDivergedError as exc:
                extras = {"seconds": time.perf_counter() - t0, "diverged": str(exc)}
                return {DIVERGED: torch.ones(1), "__extras__": _json_tensor(extras)}
            return _method_state(res, step)

        state = self.cache.state(key, compute)
        if diverged(state) and not allow_divergence:
            raise methods.MethodDivergedError(
                f"{extras_of(state)['diverged']} (recorded in the stage cache as {key}; delete "
                "that file to compute it again)"
            )
        return state


DIVERGED = "__diverged__"


def diverged(state: dict) -> bool:
    """Whether a cached method stage recorded a divergence instead of weights."""
    return DIVERGED in state


def _finetune_state(res: training.FinetuneResult, seconds: float) -> dict[str, Tensor]:
    state = {k: v for k, v in res.model.state_dict().items()}
    state["__trajectory__"] = torch.stack(res.trajectory)
    restored = -1 if res.restored_from is None else res.restored_from
    meta = [res.epochs, res.train_error, float(res.reached_zero_error), seconds, restored]
    state["__meta__"] = torch.tensor(meta, dtype=torch.float64)
    return state


def _finetune_info(state: dict[str, Tensor]) -> dict:
    meta = state["__meta__"].tolist()
    return {
        "epochs": int(meta[0]),
        "train_error": meta[1],
        "reached_zero_error": bool(meta[2]),
        "seconds": meta[3],
        "restored_from_epoch": int(meta[4]) if meta[4] >= 0 else None,
        "trajectory": state["__trajectory__"],
    }


def _method_state(res: methods.ForgetResult, step: ntk.NTKDirection | None) -> dict[str, Tensor]:
    # stage outputs are cached on the CPU, whatever device computed them
    out = {k: v.cpu() for k, v in res.model.state_dict().items()}
    out["__mean__"] = res.mean.detach().cpu()
    if res.noise_variance is not None:
        out["__var__"] = res.noise_variance.cpu()
    if res.fisher is not None:  # reused by the readouts at the same point (FisherMemo)
        out["__fisher__"] = res.fisher.cpu()
    extras = {
        "seconds": res.seconds + (step.seconds if step is not None else 0.0),
        "scale": res.scale,
        "info": {k: v for k, v in res.info.items() if k != "mean"},
    }
    if res.method == "retrain":  # the gold reference's cost is its own fine-tuning time
        extras["seconds"] = None
    out["__extras__"] = _json_tensor(extras)
    return out
