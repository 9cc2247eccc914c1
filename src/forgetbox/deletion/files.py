"""A deletion request's inputs on disk: a built-in (or ``module:factory``) model with its
weights and w0, and the training data (``.npz`` of arrays or an image folder)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn

from .. import data, models, ntk
from ..checkpoints import CheckpointError, load_into, load_state
from ..inputs import as_tensors


@dataclass(frozen=True)
class ModelFiles:
    """Where a trained model lives: architecture name, trained weights, w0, and the options a
    built-in architecture needs (``num_classes``: default from the weights; ``width``)."""

    model: str
    weights: Path
    pretrained: Path
    num_classes: int | None = None
    width: float = 1.0


def load_data(path: Path) -> tuple[Tensor, Tensor, Tensor | None, Tensor | None]:
    """``(x, y, x_test, y_test)`` from an ``.npz`` (test arrays optional) or an image folder."""
    path = Path(path)
    if path.suffix == ".npz":
        x, y, xt, yt = data.load_npz_arrays(path)
    elif path.is_dir():
        (x, y, _), xt, yt = data.load_image_folder(path, size=None), None, None
    else:
        raise ValueError(f"--data must be an .npz file or an image folder, got {path}")
    x, y = as_tensors((x, y), f"--data {path}")  # shapes, labels, finite values
    if xt is not None and yt is not None:
        xt, yt = as_tensors((xt, yt), f"--data {path} (test arrays)")
    return x, y, xt, yt


def head_outputs(files: ModelFiles, state: Mapping[str, Tensor], input_shape) -> int | None:
    """The number of classes the checkpoint's classifier head produces: the architecture is
    built once to find its head module (``classifier``, or its last ``nn.Linear``)."""
    probe = models.build_model(
        files.model, num_classes=2, input_shape=input_shape, width=files.width
    )
    weight = state.get(f"{models.head_name(probe)}.weight")
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else None


def _floating(state: Mapping[str, Tensor], flag: str, path: Path) -> None:
    for name, t in state.items():
        if not t.is_floating_point() and not name.endswith("num_batches_tracked"):
            raise CheckpointError(
                f"{flag} {path}: {name!r} holds {t.dtype} values; weights must be floating point"
            )


def load_models(files: ModelFiles, x: Tensor, y: Tensor):
    """The trained model and w0, strictly checked, and a builder of the same architecture.

    float16 / bfloat16 checkpoints are cast to the model's float32; integer weights are
    refused. A first layer whose shape does not fit the data is reported as the data's.
    """
    state = load_state(files.weights)
    w0_state = load_state(files.pretrained)
    _floating(state, "--weights", files.weights)
    _floating(w0_state, "--pretrained", files.pretrained)
    BASE, WEIGHTS = ntk.LinearizedModel.BASE, ntk.LinearizedModel.WEIGHTS
    linearized = any(k.startswith(WEIGHTS) for k in state)
    if linearized:  # a LinearizedModel: w0 in base.*, the trained weights in weights.*
        trained = {k: v for k, v in state.items() if k.startswith(WEIGHTS)}
        state = {k[len(BASE) :]: v for k, v in state.items() if k.startswith(BASE)}
    shape = tuple(x.shape[1:])
    num_classes = files.num_classes or head_outputs(files, state, shape) or int(y.max()) + 1

    def build() -> nn.Module:
        return models.build_model(
            files.model,
            num_classes=num_classes,
            input_shape=tuple(x.shape[1:]),
            width=files.width,
            generator_seed=0,
        )

    model, w0 = build(), build()
    _fits_data(model, state, files, shape)
    load_into(model, state, f"--weights {files.weights}")
    try:
        load_into(w0, w0_state, f"--pretrained {files.pretrained}")
    except CheckpointError as exc:
        raise CheckpointError(
            f"{exc} (pre-trained weights from a different architecture?)"
        ) from exc
    if linearized:
        model = _linearized(model, w0, trained, files)
    return model.eval(), w0.eval(), build


def _linearized(base: nn.Module, w0: nn.Module, trained: dict, files: ModelFiles) -> nn.Module:
    """A :class:`~forgetbox.ntk.LinearizedModel` at w0 ``base`` with the ``trained`` weights;
    ``--pretrained`` must be that w0."""
    if any(
        not torch.equal(a, b)
        for a, b in zip(base.state_dict().values(), w0.state_dict().values(), strict=True)
    ):
        raise CheckpointError(
            f"--pretrained {files.pretrained}: not the w0 the linearized model in --weights "
            f"{files.weights} was built at"
        )
    cls = ntk.LinearizedModel
    names = [k[len(cls.WEIGHTS) :].replace("__", ".") for k in trained]
    model = cls(base, names)
    state = {**{cls.BASE + k: v for k, v in base.state_dict().items()}, **trained}
    load_into(model, state, f"--weights {files.weights}")
    return model


def _fits_data(model: nn.Module, state: Mapping[str, Tensor], files: ModelFiles, shape) -> None:
    """When the first weight tensor differs, the inputs (not the weights) are at fault."""
    name, own = next(iter(model.state_dict().items()))
    given = state.get(name)
    if given is not None and tuple(given.shape) != tuple(own.shape):
        raise data.DataError(
            f"--data: inputs of shape {shape} do not fit the model in --weights {files.weights}: "
            f"its input layer {name!r} has shape {tuple(given.shape)}, inputs of this shape "
            f"need {tuple(own.shape)} (images with another number of channels or pixels?)"
        )
