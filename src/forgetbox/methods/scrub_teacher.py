"""SCRUB and SCRUB+R (Kurmanji et al., "Towards Unbounded Machine Unlearning", NeurIPS 2023).

The teacher is the original model w(D); the student starts at w(D). With d(x) =
KL(p_teacher(x / T) || p_student(x / T)) T^2, epoch e = 1, ..., E is

- if e <= max_steps, a *max* epoch over D_f: descend -d (the student leaves the teacher);
- a *min* epoch over D_r: descend ce_weight * CE + kl_weight * d;

at the rate lr * lr_decay^(number of lr_decay_epochs below e), with one optimizer throughout.

SCRUB+R ("rewind", for privacy): every epoch's student is kept; at the end, the reference
error is the final student's error on a validation set with D_f's class mix (each class's
validation error weighted by its share of D_f), and the result is the epoch whose D_f error is
closest to it (ties: the later epoch, which has had more min steps). Without a validation set
SCRUB+R is refused: no other data forget() is given is held out (D_r and D_f were trained on).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..functional import eval_mode, flatten, load_flat_, parameters_of
from ..progress import progress
from ..training import evaluate, predict
from .baseline_config import ScrubConfig, ScrubOptimizer
from .unlearning import Student, adam, require_data, sgd, shuffled


def distill_kl(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """KL(p_teacher || p_student) of the softmaxes at ``temperature``, times temperature^2,
    averaged over the batch (Hinton et al.'s distillation loss)."""
    log_s = F.log_softmax(student_logits / temperature, dim=1)
    log_t = F.log_softmax(teacher_logits / temperature, dim=1)
    return (log_t.exp() * (log_t - log_s)).sum(1).mean() * temperature**2


def scrub_lr(config: ScrubConfig, epoch: int) -> float:
    """The rate of ``epoch`` (counted from 1): lr times lr_decay per milestone below it."""
    return config.lr * config.lr_decay ** sum(epoch > m for m in config.lr_decay_epochs)


def _teacher_logits(teacher: nn.Module, x: Tensor, like: Tensor) -> Tensor:
    """The teacher's logits on ``x``, without gradients, where the student computes."""
    with torch.no_grad():
        return teacher(x.to(like.device, like.dtype))


def max_step(student: Student, teacher: nn.Module, x: Tensor, config: ScrubConfig) -> None:
    """One step that increases d on the batch ``x`` of D_f."""
    logits = student(x)
    student.step(-distill_kl(logits, _teacher_logits(teacher, x, logits), config.temperature))


def min_step(
    student: Student, teacher: nn.Module, x: Tensor, y: Tensor, config: ScrubConfig
) -> None:
    """One step that decreases ce_weight * CE + kl_weight * d on the batch ``(x, y)`` of D_r."""
    logits = student(x)
    d = distill_kl(logits, _teacher_logits(teacher, x, logits), config.temperature)
    ce = F.cross_entropy(logits, y.to(logits.device))
    student.step(config.ce_weight * ce + config.kl_weight * d)


def _optimizer(config: ScrubConfig):
    if config.optimizer is ScrubOptimizer.ADAM:
        return adam(config.lr)
    return sgd(config.lr, config.momentum)


def scrub_student(
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget_set: tuple[Tensor, Tensor],
    config: ScrubConfig,
    seed: int,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> nn.Module:
    """SCRUB from ``model`` = w(D) (the teacher, never modified); the student after the last
    epoch. ``on_epoch(epoch, student)`` after every epoch (the student must not be modified)."""
    require_data(retain, "retain set", "scrub")
    require_data(forget_set, "forget set", "scrub")
    gen = torch.Generator().manual_seed(seed)
    student = Student.of(
        model, w0, decay=config.decay_anchor, lam=config.weight_decay, optimizer=_optimizer(config)
    )
    with eval_mode(model) as teacher:
        for epoch in progress(range(1, config.epochs + 1), desc="SCRUB"):
            _epoch(student, teacher, retain, forget_set, config, epoch, gen)
            if on_epoch is not None:
                on_epoch(epoch, student.model)
    return student.model.eval()


def _epoch(student, teacher, retain, forget_set, config: ScrubConfig, epoch: int, gen) -> None:
    """Epoch ``epoch`` (from 1): its rate, a max epoch over D_f while epoch <= max_steps,
    then a min epoch over D_r."""
    (xr, yr), xf = retain, forget_set[0]
    student.set_lr(scrub_lr(config, epoch))
    if epoch <= config.max_steps:
        for idx in shuffled(len(xf), config.forget_batch, gen):
            max_step(student, teacher, xf[idx], config)
    for idx in shuffled(len(xr), config.retain_batch, gen):
        min_step(student, teacher, xr[idx], yr[idx], config)


def class_matched_error(model: nn.Module, validation: tuple[Tensor, Tensor], y_f: Tensor) -> float:
    """The error of ``model`` on ``validation`` with the class mix of D_f (labels ``y_f``):
    sum over the classes c of D_f of share_f(c) * validation error on class c."""
    x_v, y_v = validation
    wrong = (predict(model, x_v).argmax(1) != y_v).double()
    classes, counts = torch.unique(y_f.cpu(), return_counts=True)
    error = 0.0
    for c, k in zip(classes.tolist(), counts.tolist(), strict=True):
        of_class = y_v.cpu() == c
        if not of_class.any():
            raise ValueError(
                f"scrub_r: the validation set has no example of class {c}, a class of D_f"
            )
        error += k / len(y_f) * wrong[of_class].mean().item()
    return error


def rewind_epoch(forget_errors: list[float], reference: float) -> int:
    """The index of the error closest to ``reference`` (ties: the first such index, as the
    authors' ``min(enumerate(...))`` in their MIA notebook picks)."""
    gaps = [abs(e - reference) for e in forget_errors]
    return gaps.index(min(gaps))


def scrub_rewind(
    model: nn.Module,
    w0: nn.Module,
    retain: tuple[Tensor, Tensor],
    forget_set: tuple[Tensor, Tensor],
    validation: tuple[Tensor, Tensor] | None,
    config: ScrubConfig,
    seed: int,
) -> tuple[nn.Module, dict]:
    """SCRUB+R: SCRUB, then the epoch whose D_f error is closest to the class-matched
    validation error of the final student; ``(model, info)``."""
    if validation is None or len(validation[0]) == 0:
        raise ValueError(
            "scrub_r needs a validation set with D_f's classes (forget(..., validation=(x, y)));"
            " D_r and D_f cannot stand in for it: both were trained on"
        )
    weights: list[Tensor] = []
    errors: list[float] = []

    def keep(epoch: int, student: nn.Module) -> None:
        weights.append(flatten(parameters_of(student)).detach().cpu().clone())
        errors.append(evaluate(student, *forget_set)[0])

    final = scrub_student(model, w0, retain, forget_set, config, seed, on_epoch=keep)
    reference = class_matched_error(final, validation, forget_set[1])
    k = rewind_epoch(errors, reference)
    out = load_flat_(final, weights[k].to(next(final.parameters()).device))
    info = {"reference_error": reference, "forget_errors": errors, "rewound_to_epoch": k + 1}
    return out.eval(), info
