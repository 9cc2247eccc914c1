"""The one-pass diagonal Fisher against the per-sample, per-class brute force, in float64."""

import pytest
import torch
from torch import nn

from forgetbox import methods, models, reference
from forgetbox.functional import flatten, parameters_of
from forgetbox.methods import FisherMemo, ForgetConfig
from forgetbox.methods.fisher_diag import fisher_diagonal


class Unusual(nn.Module):
    """In-place ops after BatchNorm (as torchvision's blocks do), a grouped convolution and a
    LayerNorm (no per-layer rule: the Jacobian fallback), a bare parameter, a layer output
    scaled in place."""

    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv2d(1, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.ln = nn.LayerNorm(4 * 6 * 6)
        self.c2 = nn.Conv2d(4, 4, 3, stride=2, padding=1, groups=2)
        self.bn2 = nn.BatchNorm2d(4)
        self.c3 = nn.Conv2d(4, 4, 1, bias=False)
        self.scale = nn.Parameter(torch.ones(1))
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        h = torch.relu_(self.bn(self.c1(x)))
        h = self.ln(h.flatten(1)).view(-1, 4, 6, 6)
        h2 = self.bn2(self.c2(h))
        h2 += 1.0
        h2.relu_()
        h3 = self.c3(h2)
        h3.mul_(0.5)
        return self.classifier((h3 + h2).mean((2, 3)) * self.scale)


def _case(name):
    torch.manual_seed(0)
    if name == "smallcnn":
        return models.SmallCNN(3, 1, 0.5), torch.randn(7, 1, 8, 8)
    if name == "mlp":
        return models.MLP(3, 5, 0.3), torch.randn(7, 5)
    if name == "resnet18":
        return models.ResNet18(3, 3, 0.1), torch.randn(5, 3, 16, 16)
    return Unusual(), torch.randn(7, 1, 6, 6)


@pytest.mark.parametrize("name", ["smallcnn", "mlp", "resnet18", "unusual"])
def test_one_pass_fisher_equals_the_brute_force(name):
    model, x = _case(name)
    model = model.double().eval()
    gen = torch.Generator().manual_seed(1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.3, 0.3, generator=gen)
            m.running_var.uniform_(0.5, 1.5, generator=gen)
    x = x.double()
    ref = reference.fisher_diagonal(model, x)
    assert (ref > 0).double().mean() > 0.3  # most entries are not zero
    for chunk in (3, None):
        got = fisher_diagonal(model, x, chunk=chunk)
        assert ((got - ref).norm() / ref.norm()).item() < 1e-12, chunk
    # at other weights than the model's own
    shifted = {k: v * 1.05 + 0.001 for k, v in parameters_of(model).items()}
    moved = reference.fisher_diagonal(_with(model, shifted), x)
    got = fisher_diagonal(model, x, params=shifted, chunk=4)
    assert ((got - moved).norm() / moved.norm()).item() < 1e-12
    assert ((moved - ref).norm() / ref.norm()).item() > 1e-3


def _with(model, params):
    import copy

    from forgetbox.functional import load_flat_

    return load_flat_(copy.deepcopy(model), flatten(params))


def test_the_memo_computes_each_point_once():
    model, x = _case("mlp")
    model = model.double().eval()
    memo = FisherMemo(model, x.double(), ForgetConfig())
    w = flatten(parameters_of(model))
    a = memo(w)
    b = memo(w.clone())
    assert memo.computed == 1 and torch.equal(a, b)
    memo(w + 0.1)
    assert memo.computed == 2
    memo.add(w + 0.2, torch.ones_like(w))
    assert torch.equal(memo(w + 0.2), torch.ones_like(w)) and memo.computed == 2
    var = memo.variance(w, 1e-3)
    want = methods.noise_variance(a, parameters_of(model), alpha=1e-3, head="classifier")
    assert torch.equal(var, want)
