"""Readouts: attack on separable and inseparable data, re-learn time, L1, PCA, determinism."""

import numpy as np
import pytest
import torch
from torch import nn

from forgetbox import readouts
from forgetbox.functional import flatten, parameters_of
from forgetbox.models import MLP


class Identity(nn.Module):
    """Logits are the inputs themselves (a 'model' whose outputs we choose)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        return x + 0 * self.dummy


def _confident(n, c, gen):
    y = torch.randint(0, c, (n,), generator=gen)
    return 8 * torch.nn.functional.one_hot(y, c).float() + 0.1 * torch.randn(n, c, generator=gen), y


def _unsure(n, c, gen):
    return 0.3 * torch.randn(n, c, generator=gen), torch.randint(0, c, (n,), generator=gen)


def test_attack_detects_memorised_forget_set():
    gen = torch.Generator().manual_seed(0)
    res = readouts.membership_attack(
        Identity(), _confident(200, 5, gen), _unsure(200, 5, gen), _confident(25, 5, gen)
    )
    assert res.member_rate > 0.95
    assert res.auc > 0.98
    gen = torch.Generator().manual_seed(0)
    data = (_confident(200, 5, gen), _unsure(200, 5, gen), _confident(25, 5, gen))
    a = readouts.membership_attack(Identity(), *data, seed=4)
    b = readouts.membership_attack(Identity(), *data, seed=4)
    assert a == b  # deterministic under a seed


def test_attack_refuses_non_finite_outputs_in_one_line():
    gen = torch.Generator().manual_seed(0)
    forget = _confident(25, 5, gen)
    broken = (torch.full_like(forget[0], float("nan")), forget[1])
    with pytest.raises(ValueError, match="outputs are not finite"):
        readouts.membership_attack(
            Identity(), _confident(200, 5, gen), _unsure(200, 5, gen), broken
        )


@pytest.mark.parametrize("feature", ["entropy", "loss", "confidence"])
def test_attack_near_chance_when_indistinguishable(feature):
    gen = torch.Generator().manual_seed(1)
    res = readouts.membership_attack(
        Identity(),
        _unsure(300, 5, gen),
        _unsure(400, 5, gen),
        _unsure(200, 5, gen),
        feature=feature,
    )
    assert 0.35 < res.auc < 0.65
    assert res.feature == feature


def _digits_like(gen, n=60):
    x = torch.randn(n, 6, generator=gen)
    y = (x[:, 0] > 0).long()
    return x, y


def test_relearn_time_of_original_is_zero_and_deterministic():
    gen = torch.Generator().manual_seed(2)
    torch.manual_seed(0)
    model = MLP(2, 6, width=0.2)
    x, y = _digits_like(gen)
    loss_f = readouts.error_and_loss(model, x[:5], y[:5])[1]
    own = readouts.relearn_time(model, x, y, x[:5], y[:5], threshold=loss_f)
    assert own.epochs == 0 and not own.capped
    hard = readouts.relearn_time(
        model, x, y, x[:5], y[:5], threshold=loss_f / 2, max_epochs=30, lr=0.5, seed=3
    )
    again = readouts.relearn_time(
        model, x, y, x[:5], y[:5], threshold=loss_f / 2, max_epochs=30, lr=0.5, seed=3
    )
    assert hard == again
    assert hard.epochs > 0
    assert hard.losses[0] == pytest.approx(loss_f)


def test_l1_distance_and_activation_path():
    gen = torch.Generator().manual_seed(3)
    torch.manual_seed(0)
    a, b = MLP(3, 6, width=0.2), MLP(3, 6, width=0.2)
    x = torch.randn(30, 6, generator=gen)
    assert readouts.l1_distance(a, a, x) == 0.0
    d = readouts.l1_distance(a, b, x)
    pa, pb = torch.softmax(a(x), -1), torch.softmax(b(x), -1)
    assert d == pytest.approx((pa - pb).abs().sum(1).mean().item(), rel=1e-5)
    path = readouts.activation_path(a, flatten(parameters_of(b)), b, {"s": x}, alphas=(0.0, 1.0))
    assert path[0]["s"] == pytest.approx(d) and path[1]["s"] == pytest.approx(0.0, abs=1e-6)


def test_pca_recovers_plane():
    gen = torch.Generator().manual_seed(4)
    basis = torch.linalg.qr(torch.randn(50, 2, generator=gen, dtype=torch.float64))[0]
    coords = torch.randn(12, 2, generator=gen, dtype=torch.float64) * torch.tensor(
        [3.0, 1.0], dtype=torch.float64
    )
    rows = coords @ basis.T + 5.0
    res = readouts.pca_paths({"a": rows[:6], "b": rows[6:]}, {"pt": rows[0]})
    assert res.explained.sum() == pytest.approx(1.0)
    emb = np.concatenate([res.paths["a"], res.paths["b"]])
    # distances are preserved inside the plane
    d_true = torch.cdist(coords, coords).numpy()
    d_emb = np.linalg.norm(emb[:, None] - emb[None], axis=-1)
    assert np.allclose(d_true, d_emb, atol=1e-8)
    assert np.allclose(res.points["pt"], res.paths["a"][0])
