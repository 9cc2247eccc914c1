"""The paper's training recipes (section 5.2 and supplement A).

- Pre-training: SGD (lr 0.1, momentum 0.9, weight decay 5e-4 toward zero), batch 128.
- Fine-tuning from w0 on a set S: minimise (1/|S|) sum_i CE_i + (lambda/2)||w - w0||^2 with SGD
  (lr 0.01, momentum 0.9, batch 128, lambda = 0.1), BatchNorm in eval mode (running statistics
  frozen), until zero training error and then ``extra_epochs`` more, capped at ``max_epochs``.

Every random choice (shuffling, flips) comes from a ``torch.Generator`` seeded by the caller,
so the same seed gives bit-identical weights on the same machine.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .functional import eval_mode, flatten, parameters_of
from .progress import progress
from .settings import Choice

# lambda of fine-tuning's (lambda/2)||w - w0||^2 (the paper's 0.1): the one place it is written;
# forgetbox.ntk.Linearization, the experiment and the command line take it from here
DEFAULT_WEIGHT_DECAY = 0.1


class PretrainSchedule(Choice):
    """The pre-training learning rate schedule."""

    CONSTANT = "constant", "the rate throughout"
    ONECYCLE = "onecycle", "one cycle up to the rate and down (converges in fewer epochs)"


class LRSchedule(Choice):
    """The fine-tuning learning rate schedule."""

    CONSTANT = "constant", "the rate throughout (the paper's recipe)"
    COSINE = (
        "cosine",
        "lr (1 + cos(pi epoch / E)) / 2 over the epoch limit E: converges where a constant "
        "rate oscillates (real CIFAR-5, docs/deviations.md)",
    )


@dataclass(frozen=True)
class PretrainConfig:
    """Pre-training recipe (section 5.2): SGD with weight decay toward zero."""

    epochs: int = 30
    lr: float = 0.1
    momentum: float = 0.9
    weight_decay: float = 5e-4
    batch_size: int = 128
    schedule: PretrainSchedule = PretrainSchedule.ONECYCLE
    flip: bool = False  # random horizontal flips (images)

    def __post_init__(self) -> None:
        object.__setattr__(self, "schedule", PretrainSchedule.parse(self.schedule, "schedule"))


@dataclass(frozen=True)
class FinetuneConfig:
    """Fine-tuning recipe: SGD on CE + (lambda/2)||w - w0||^2, BatchNorm frozen."""

    lr: float = 0.01
    momentum: float = 0.9
    # lambda of (lambda/2)||w - w0||^2; None: DEFAULT_WEIGHT_DECAY, or inside a
    # forgetbox.methods.ForgetConfig the lambda of its linearization
    weight_decay: float | None = None
    batch_size: int = 128
    extra_epochs: int = 5  # after zero training error
    max_epochs: int = 100
    min_epochs: int = 0
    record_every: int = 0  # record the weights every k epochs (0: never)
    lr_schedule: LRSchedule = LRSchedule.CONSTANT
    # a run that reached zero training error and ends above this error has diverged: it returns
    # its last zero-error weights instead (small end-of-run drift, a few images, is kept)
    diverged_error: float = 0.05

    def __post_init__(self) -> None:
        object.__setattr__(self, "lr_schedule", LRSchedule.parse(self.lr_schedule, "lr_schedule"))

    @property
    def lam(self) -> float:
        """The weight decay this recipe trains with."""
        return DEFAULT_WEIGHT_DECAY if self.weight_decay is None else self.weight_decay


# bumped when fine-tuning's result changes for the same configuration (part of the experiment's
# cache keys): 2 = a run that diverges after zero training error keeps its zero-error weights
# (FinetuneConfig.diverged_error)
VERSION = 2


@dataclass(frozen=True)
class FinetuneResult:
    """A fine-tuned model and how training went."""

    model: nn.Module
    epochs: int
    train_error: float
    reached_zero_error: bool
    trajectory: list[Tensor] = field(default_factory=list)  # flat weights, w0 first
    # epochs after which the returned weights were taken, when a run that had reached zero
    # training error ended above it (diverged) and its last zero-error weights were kept
    restored_from: int | None = None


def predict(model: nn.Module, x: Tensor, batch_size: int = 512) -> Tensor:
    """Logits ``(N, c)`` of ``model`` in eval mode, without gradients."""
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    outs = []
    with torch.no_grad(), eval_mode(model):
        for i in range(0, len(x), batch_size):
            outs.append(model(x[i : i + batch_size].to(device, dtype)).cpu())
    if not outs:
        c = model(x[:1].to(device, dtype)).shape[-1] if len(x) else 0
        return torch.zeros(0, c)
    return torch.cat(outs)


def evaluate(model: nn.Module, x: Tensor, y: Tensor) -> tuple[float, float]:
    """Top-1 error (fraction) and mean cross-entropy (nats) of ``model`` on ``(x, y)``."""
    if len(x) == 0:
        return float("nan"), float("nan")
    logits = predict(model, x)
    err = (logits.argmax(1) != y).double().mean().item()
    return err, F.cross_entropy(logits.double(), y).item()


def _batches(n: int, batch_size: int, gen: torch.Generator):
    perm = torch.randperm(n, generator=gen)
    for i in range(0, n, batch_size):
        yield perm[i : i + batch_size]


def _flip(x: Tensor, gen: torch.Generator) -> Tensor:
    mask = torch.rand(len(x), generator=gen) < 0.5
    return torch.where(mask[:, None, None, None], x.flip(-1), x)


def pretrain(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: PretrainConfig,
    *,
    seed: int,
    device: str | torch.device = "cpu",
    desc: str = "pre-train",
) -> nn.Module:
    """Pre-train ``model`` in place (BatchNorm in train mode) and return it."""
    gen = torch.Generator().manual_seed(seed)
    model.to(device).train()
    opt = torch.optim.SGD(
        model.parameters(), lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay
    )
    steps = config.epochs * ((len(x) + config.batch_size - 1) // config.batch_size)
    sched = None
    if config.schedule is PretrainSchedule.ONECYCLE and steps > 0:
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=config.lr, total_steps=steps)
    for _ in progress(range(config.epochs), desc=desc):
        for idx in _batches(len(x), config.batch_size, gen):
            xb = x[idx]
            if config.flip and xb.ndim == 4:
                xb = _flip(xb, gen)
            loss = F.cross_entropy(model(xb.to(device)), y[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if sched is not None:
                sched.step()
    model.eval()
    return model


def weight_decay_toward(params: list[Tensor], anchor: list[Tensor], lam: float) -> Tensor:
    """(lambda/2) * ||w - w0||^2; its gradient with respect to w is lambda * (w - w0)."""
    return 0.5 * lam * sum(((p - a) ** 2).sum() for p, a in zip(params, anchor, strict=True))


def _epoch(model, x, y, params, anchor_params, opt, config, gen, device) -> None:
    """One pass over (x, y) in shuffled batches, loss CE + (lambda/2)||w - w0||^2."""
    for idx in _batches(len(x), config.batch_size, gen):
        logits = model(x[idx].to(device))
        loss = F.cross_entropy(logits, y[idx].to(device))
        loss = loss + weight_decay_toward(params, anchor_params, config.lam)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()


def _keep_zero_error(model, x, y, config, zero_state, trajectory) -> tuple[float, int | None]:
    """The final training error; a run that had reached zero error and diverged (ends above
    ``config.diverged_error``) gets its last zero-error weights back (seen at the paper's rate
    on a full-width ResNet-18: the protocol asks for a model at zero training error)."""
    err, _ = evaluate(model, x, y)
    if err <= config.diverged_error or zero_state is None:
        return err, None
    restored, state = zero_state
    model.load_state_dict(state)
    err, _ = evaluate(model, x, y)
    if config.record_every:
        trajectory.append(flatten(parameters_of(model)).cpu())
    return err, restored


def finetune(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: FinetuneConfig,
    *,
    seed: int,
    anchor: nn.Module | None = None,
    device: str | torch.device = "cpu",
    desc: str = "fine-tune",
    epochs: int | None = None,
    on_data: Callable[[Tensor, Tensor], None] | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> FinetuneResult:
    """Fine-tune a copy of ``model`` on ``(x, y)`` with weight decay toward ``anchor`` (w0;
    default: the starting weights). BatchNorm statistics are never updated.

    Trains until zero training error plus ``extra_epochs`` (capped at ``max_epochs``), or for
    exactly ``epochs`` epochs when given (the fine-tune baseline). A run that reached zero
    training error but ends above ``diverged_error`` returns its last zero-error weights
    (``restored_from``). ``on_data`` is called once with
    the data actually used (tests check that D_f never reaches retraining); ``on_epoch(epoch,
    model)`` after every epoch (curves, logging; the model must not be modified).
    """
    if len(x) == 0:
        raise ValueError("cannot fine-tune on an empty data set")
    if on_data is not None:
        on_data(x, y)
    gen = torch.Generator().manual_seed(seed)
    model = copy.deepcopy(model).to(device)
    model.eval()  # BatchNorm in eval mode: running statistics frozen
    params = [p for p in model.parameters() if p.requires_grad]
    anchor_params = [
        p.detach().clone().to(device)
        for p in (anchor.parameters() if anchor is not None else params)
        if p.requires_grad
    ]
    opt = torch.optim.SGD(params, lr=config.lr, momentum=config.momentum)
    trajectory = [flatten(parameters_of(model)).cpu()] if config.record_every else []
    zero_at, epoch, err = None, 0, 1.0
    zero_state: tuple[int, dict[str, Tensor]] | None = None  # the last zero-error weights
    limit = epochs if epochs is not None else config.max_epochs
    bar = progress(range(limit), desc=desc)
    for epoch in bar:  # noqa: B007
        if config.lr_schedule is LRSchedule.COSINE:
            for group in opt.param_groups:
                group["lr"] = config.lr * 0.5 * (1 + math.cos(math.pi * epoch / limit))
        _epoch(model, x, y, params, anchor_params, opt, config, gen, device)
        if config.record_every and (epoch + 1) % config.record_every == 0:
            trajectory.append(flatten(parameters_of(model)).cpu())
        if on_epoch is not None:
            on_epoch(epoch, model)
        if epochs is not None:
            continue
        err, _ = evaluate(model, x, y)
        if err == 0.0:
            zero_at = epoch if zero_at is None else zero_at
            zero_state = (epoch + 1, {k: v.detach().clone() for k, v in model.state_dict().items()})
        done = zero_at is not None and epoch >= zero_at + config.extra_epochs
        if done and epoch + 1 >= config.min_epochs:
            break
    bar.close()
    if config.record_every and (epoch + 1) % config.record_every != 0:
        trajectory.append(flatten(parameters_of(model)).cpu())
    err, restored = _keep_zero_error(model, x, y, config, zero_state, trajectory)
    return FinetuneResult(
        model.cpu(), epoch + 1, err, zero_at is not None, trajectory, restored_from=restored
    )


def recompute_batchnorm(model: nn.Module, x: Tensor, batch_size: int = 128) -> nn.Module:
    """Replace every BatchNorm layer's running statistics by their exact average over ``x``
    (cumulative, one pass in training mode, no gradients); returns the model in eval mode.
    Recomputed on D_r, they hold no information about a forgotten cohort."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return model.eval()
    device = next(model.parameters()).device
    dtype = next(model.parameters()).dtype
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average: the exact mean over the batches
    model.train()
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            model(x[i : i + batch_size].to(device, dtype))
    for m, mom in zip(norms, saved, strict=True):
        m.momentum = mom
    return model.eval()
