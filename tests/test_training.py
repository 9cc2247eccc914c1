"""Training recipes: determinism, frozen BatchNorm, the weight-decay anchor, convergence."""

import math

import pytest
import torch
from torch import nn

from forgetbox import data, models, training
from forgetbox.functional import flatten, parameters_of
from forgetbox.training import FinetuneConfig, PretrainConfig


@pytest.fixture(scope="module")
def w0():
    xp, yp = data.digits_pretrain()
    pre = models.build_model("smallcnn", num_classes=5, input_shape=(1, 8, 8), generator_seed=0)
    training.pretrain(pre, xp, yp, PretrainConfig(epochs=8), seed=0)
    return models.with_new_head(pre, 5, seed=0)


@pytest.fixture(scope="module")
def split():
    return data.digits_split(seed=0, train_per_class=20, val_per_class=5)


def test_same_seed_gives_bit_identical_weights(w0, split):
    cfg = FinetuneConfig(max_epochs=4)
    a = training.finetune(w0, split.x_train, split.y_train, cfg, seed=5).model
    b = training.finetune(w0, split.x_train, split.y_train, cfg, seed=5).model
    c = training.finetune(w0, split.x_train, split.y_train, cfg, seed=6).model
    assert torch.equal(flatten(parameters_of(a)), flatten(parameters_of(b)))
    assert not torch.equal(flatten(parameters_of(a)), flatten(parameters_of(c)))


def test_batchnorm_statistics_are_frozen_during_finetuning(w0, split):
    res = training.finetune(w0, split.x_train, split.y_train, FinetuneConfig(max_epochs=3), seed=0)
    for (name, a), (_, b) in zip(w0.named_buffers(), res.model.named_buffers(), strict=True):
        assert torch.equal(a, b), name
    assert any(isinstance(m, nn.BatchNorm2d) for m in w0.modules())
    assert not torch.equal(flatten(parameters_of(w0)), flatten(parameters_of(res.model)))


def test_weight_decay_gradient_is_lambda_times_w_minus_w0():
    gen = torch.Generator().manual_seed(0)
    w = [
        torch.randn(3, 4, generator=gen, requires_grad=True),
        torch.randn(5, generator=gen, requires_grad=True),
    ]
    anchor = [torch.randn(3, 4, generator=gen), torch.randn(5, generator=gen)]
    loss = training.weight_decay_toward(w, anchor, 0.1)
    grads = torch.autograd.grad(loss, w)
    for g, p, a in zip(grads, w, anchor, strict=True):
        assert torch.allclose(g, 0.1 * (p - a))


def test_finetuning_reaches_zero_training_error_on_digits(w0, split):
    res = training.finetune(w0, split.x_train, split.y_train, FinetuneConfig(), seed=0)
    assert res.reached_zero_error and res.train_error == 0.0
    assert res.epochs < FinetuneConfig().max_epochs
    err, _ = training.evaluate(res.model, split.x_test, split.y_test)
    assert err < 0.2


def test_new_head_is_seeded_and_keeps_the_backbone(w0):
    a = models.with_new_head(w0, 3, seed=1)
    b = models.with_new_head(w0, 3, seed=1)
    c = models.with_new_head(w0, 3, seed=2)
    assert torch.equal(a.classifier.weight, b.classifier.weight)
    assert not torch.equal(a.classifier.weight, c.classifier.weight)
    assert a.classifier.out_features == 3
    assert torch.equal(a.features[0][0].weight, w0.features[0][0].weight)


def test_trajectory_is_recorded(w0, split):
    cfg = FinetuneConfig(max_epochs=3, record_every=1)
    res = training.finetune(w0, split.x_train, split.y_train, cfg, seed=0, epochs=3)
    assert len(res.trajectory) == 4
    assert torch.equal(res.trajectory[0], flatten(parameters_of(w0)))
    assert torch.equal(res.trajectory[-1], flatten(parameters_of(res.model)))


@pytest.mark.parametrize(
    "name,shape",
    [("allcnn", (3, 32, 32)), ("resnet18", (3, 32, 32)), ("mlp", (1, 8, 8)), ("linear", (1, 8, 8))],
)
def test_models_build_and_run(name, shape):
    m = models.build_model(name, num_classes=5, input_shape=shape, width=0.25, generator_seed=0)
    assert m(torch.zeros(2, *shape)).shape == (2, 5)
    assert models.head_name(m) == "classifier"
    with pytest.raises(ValueError, match="unknown model"):
        models.build_model("nope", num_classes=2, input_shape=shape)


def test_cosine_schedule_steps_match_a_hand_computed_descent():
    torch.manual_seed(0)
    model = models.LinearModel(3, 4).double()
    x = torch.randn(6, 4, dtype=torch.float64)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    lr, lam, epochs = 0.5, 0.1, 3
    cfg = FinetuneConfig(lr=lr, momentum=0.0, weight_decay=lam, batch_size=6, lr_schedule="cosine")
    got = training.finetune(model, x, y, cfg, seed=0, epochs=epochs).model
    # full-batch gradient descent with lr * (1 + cos(pi e / E)) / 2 at epoch e
    w0 = [p.detach().clone() for p in model.parameters()]
    w = [p.clone().requires_grad_(True) for p in w0]
    for e in range(epochs):
        logits = x @ w[0].T + w[1]
        loss = nn.functional.cross_entropy(logits, y) + training.weight_decay_toward(w, w0, lam)
        grads = torch.autograd.grad(loss, w)
        step = lr * 0.5 * (1 + math.cos(math.pi * e / epochs))
        w = [(p - step * g).detach().requires_grad_(True) for p, g in zip(w, grads, strict=True)]
    want = torch.cat([t.reshape(-1) for t in w]).detach()
    assert torch.allclose(flatten(parameters_of(got)), want, rtol=1e-12, atol=1e-12)
    constant = training.finetune(
        model,
        x,
        y,
        FinetuneConfig(**{**cfg.__dict__, "lr_schedule": "constant"}),
        seed=0,
        epochs=epochs,
    ).model
    assert not torch.allclose(flatten(parameters_of(constant)), want, atol=1e-6)
    with pytest.raises(ValueError, match="lr_schedule"):
        training.finetune(model, x, y, FinetuneConfig(lr_schedule="step"), seed=0, epochs=1)


def test_a_run_that_diverges_after_zero_error_keeps_its_zero_error_weights(w0, split):
    x, y = split.x_train, split.y_train
    seen = {"zero_epoch": None}

    def diverge(epoch, model):  # after the first zero-error epoch, wreck the head every epoch
        if seen["zero_epoch"] is None:
            if training.evaluate(model, x, y)[0] == 0.0:
                seen["zero_epoch"] = epoch
            return
        with torch.no_grad():
            model.classifier.weight.neg_()
            model.classifier.bias.add_(torch.arange(5.0) * 50)

    cfg = FinetuneConfig(max_epochs=100, extra_epochs=3, record_every=1)
    res = training.finetune(w0, x, y, cfg, seed=0, on_epoch=diverge)
    z = seen["zero_epoch"]
    assert z is not None and res.epochs == z + 4  # it trained on: zero error, then 3 more
    assert res.reached_zero_error and res.train_error == 0.0
    assert res.restored_from == z + 1
    kept = flatten(parameters_of(res.model))
    assert torch.equal(kept, res.trajectory[z + 1])  # the weights after the zero-error epoch
    assert torch.equal(kept, res.trajectory[-1])  # and the path ends where the model is
    plain = training.finetune(w0, x, y, cfg, seed=0)  # without divergence nothing is restored
    assert plain.restored_from is None and plain.train_error == 0.0
