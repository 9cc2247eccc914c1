"""Scrub a cohort from a model trained on the embedded digits data, end to end.

Run:  .venv/bin/python docs/examples/scrub_digits.py OUT_DIR
It trains a small CNN (pre-train on digits 5-9, fine-tune on 0-4), scrubs 10 images of class 0
with the Python API, and writes the files the `forgetbox scrub` command needs into OUT_DIR.
"""

import sys
from pathlib import Path

import numpy as np
import torch

import forgetbox
from forgetbox import data, models, training
from forgetbox.checkpoints import save_state

out = Path(sys.argv[1] if len(sys.argv) > 1 else "scrub-demo")
out.mkdir(parents=True, exist_ok=True)

# 1. the model a user would already have: w0 (pre-trained + new head) and w(D)
x_pre, y_pre = data.digits_pretrain()
backbone = models.build_model("smallcnn", num_classes=5, input_shape=(1, 8, 8), generator_seed=0)
training.pretrain(backbone, x_pre, y_pre, training.PretrainConfig(epochs=10), seed=0)
w0 = models.with_new_head(backbone, num_classes=5, seed=0)
split = data.digits_split(seed=0, train_per_class=20, val_per_class=5)
trained = training.finetune(w0, split.x_train, split.y_train, training.FinetuneConfig(), seed=0)

# 2. a deletion request: 10 images of class 0
forget_idx = data.select_forget(split.y_train, forget_class=0, num_to_forget=10, seed=0)
keep = data.retain_mask(len(split.y_train), forget_idx)

# 3. scrub with the Python API
result = forgetbox.scrub(
    trained.model,
    pretrained=w0,
    retain=(split.x_train[keep], split.y_train[keep]),
    forget=(split.x_train[forget_idx], split.y_train[forget_idx]),
    test=(split.x_test, split.y_test),
    method="ntk_fisher",
    forget_indices=forget_idx.tolist(),
    seed=0,
)
cert = result.certificate
print("errors before:", cert["errors"]["before"])
print("errors after: ", cert["errors"]["after"])
print("white-box bound (nats):", round(cert["bounds"]["white_box_nats"], 3))

# 4. files for the command line: weights, w0, data and the cohort
save_state(out / "trained.safetensors", trained.model.state_dict())
save_state(out / "w0.safetensors", w0.state_dict())
np.savez(
    out / "digits.npz",
    x_train=split.x_train.numpy(),
    y_train=split.y_train.numpy(),
    x_test=split.x_test.numpy(),
    y_test=split.y_test.numpy(),
)
(out / "forget.txt").write_text("\n".join(map(str, forget_idx.tolist())) + "\n")
torch.save(result.model.state_dict(), out / "scrubbed_api.pt")
print(f"wrote {out}/trained.safetensors, w0.safetensors, digits.npz, forget.txt")
