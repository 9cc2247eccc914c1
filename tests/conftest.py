"""Shared fixtures: a small trained digits model on disk, and the arguments of the commands."""

from pathlib import Path

import numpy as np
import pytest

from forgetbox import data, models, training
from forgetbox.checkpoints import save_state


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """A small digits model: pre-trained on 5-9, w0 with a new head, fine-tuned on 0-4."""
    root = tmp_path_factory.mktemp("scrub")
    xp, yp = data.digits_pretrain()
    pre = models.build_model(
        "smallcnn", num_classes=5, input_shape=(1, 8, 8), width=0.5, generator_seed=0
    )
    training.pretrain(pre, xp, yp, training.PretrainConfig(epochs=3), seed=0)
    w0 = models.with_new_head(pre, 5, seed=0)
    split = data.digits_split(seed=0, train_per_class=12, val_per_class=5)
    model = training.finetune(
        w0, split.x_train, split.y_train, training.FinetuneConfig(max_epochs=15), seed=0
    ).model
    save_state(root / "w0.safetensors", w0.state_dict())
    save_state(root / "trained.safetensors", model.state_dict())
    np.savez(
        root / "data.npz",
        x_train=split.x_train.numpy(),
        y_train=split.y_train.numpy(),
        x_test=split.x_test.numpy()[:60],
        y_test=split.y_test.numpy()[:60],
    )
    (root / "forget.txt").write_text("0\n3, 5\n# a comment\n8\n")
    return root, model, w0, split


def argv(command: str, root: Path, out: Path) -> list[str]:
    """The arguments every command of these tests shares: model, weights, w0, data, output."""
    return [
        command,
        "--model",
        "smallcnn",
        "--width",
        "0.5",
        "--weights",
        str(root / "trained.safetensors"),
        "--pretrained",
        str(root / "w0.safetensors"),
        "--data",
        str(root / "data.npz"),
        "--out",
        str(out),
    ]
