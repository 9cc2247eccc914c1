"""A deletion request's inputs on disk: a built-in (or ``module:factory``) model with its
weights and w0, and the training data (``.npz`` of arrays or an image folder)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from torch import Tensor, nn

from .. import data, models
from ..checkpoints import CheckpointError, load_into, load_state


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
        return data.load_npz_arrays(path)
    if path.is_dir():
        x, y, _ = data.load_image_folder(path, size=None)
        return x, y, None, None
    raise ValueError(f"--data must be an .npz file or an image folder, got {path}")


def head_outputs(state: Mapping[str, Tensor]) -> int | None:
    cands = [v for k, v in state.items() if k.endswith("weight") and v.ndim == 2]
    return int(cands[-1].shape[0]) if cands else None


def load_models(files: ModelFiles, x: Tensor, y: Tensor):
    """The trained model and w0, strictly checked, and a builder of the same architecture."""
    state = load_state(files.weights)
    w0_state = load_state(files.pretrained)
    num_classes = files.num_classes or head_outputs(state) or int(y.max()) + 1

    def build() -> nn.Module:
        return models.build_model(
            files.model,
            num_classes=num_classes,
            input_shape=tuple(x.shape[1:]),
            width=files.width,
            generator_seed=0,
        )

    model, w0 = build(), build()
    load_into(model, state, f"--weights {files.weights}")
    try:
        load_into(w0, w0_state, f"--pretrained {files.pretrained}")
    except CheckpointError as exc:
        raise CheckpointError(
            f"{exc} (pre-trained weights from a different architecture?)"
        ) from exc
    return model.eval(), w0.eval(), build
