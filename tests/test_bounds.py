"""Information bounds: Gaussian KL against Monte Carlo, invariances, data processing."""

import pytest
import torch
from torch import nn

from forgetbox import bounds
from forgetbox.functional import flatten, parameters_of
from forgetbox.models import LinearModel


def _spd(k, gen):
    A = torch.randn(k, k, generator=gen, dtype=torch.float64)
    return A @ A.T + 0.5 * torch.eye(k, dtype=torch.float64)


def test_gaussian_kl_matches_monte_carlo():
    gen = torch.Generator().manual_seed(0)
    k = 3
    mu1, mu0 = (
        torch.randn(k, generator=gen, dtype=torch.float64),
        torch.zeros(k, dtype=torch.float64),
    )
    S1, S0 = _spd(k, gen), _spd(k, gen)
    exact = bounds.gaussian_kl(mu1, S1, mu0, S0).item()
    p1 = torch.distributions.MultivariateNormal(mu1, S1)
    p0 = torch.distributions.MultivariateNormal(mu0, S0)
    torch.manual_seed(1)
    z = p1.sample((400_000,))
    ll = p1.log_prob(z) - p0.log_prob(z)
    se = ll.std().item() / len(ll) ** 0.5
    assert abs(ll.mean().item() - exact) < 5 * se
    assert bounds.gaussian_kl(mu1, S1, mu1, S1).abs().item() < 1e-12
    # the diagonal form agrees with the full form on diagonal covariances
    v1, v0 = torch.rand(k, generator=gen) + 0.1, torch.rand(k, generator=gen) + 0.1
    full = bounds.gaussian_kl(mu1, torch.diag(v1), mu0, torch.diag(v0))
    assert full.item() == pytest.approx(bounds.gaussian_kl_diag(mu1, v1, mu0, v0).sum().item())


class SquareMap(nn.Module):
    """Outputs x_i @ b for a c x c query matrix x_i: the Jacobian w.r.t. b is x_i (square)."""

    def __init__(self, c):
        super().__init__()
        self.b = nn.Parameter(torch.zeros(c, dtype=torch.float64))

    def forward(self, x):
        return x @ self.b


def test_black_box_with_square_invertible_jacobian_equals_white_box():
    gen = torch.Generator().manual_seed(2)
    c = 4
    model = SquareMap(c)
    x = torch.randn(1, c, c, generator=gen, dtype=torch.float64)
    m1, m0 = (
        torch.randn(c, generator=gen, dtype=torch.float64),
        torch.randn(c, generator=gen, dtype=torch.float64),
    )
    v1, v0 = (
        torch.rand(c, generator=gen, dtype=torch.float64) + 0.1,
        torch.rand(c, generator=gen, dtype=torch.float64) + 0.1,
    )
    white = bounds.white_box(m1, v1, m0, v0).nats
    black = bounds.black_box(model, m1, v1, m0, v0, x, joint=True)
    assert black.mean == pytest.approx(white, rel=1e-9)
    assert black.joint == pytest.approx(white, rel=1e-9)
    # the diagonal approximation is a different number in general
    assert abs(black.mean_diagonal - white) > 1e-6


@pytest.mark.parametrize("seed", range(12))
def test_black_box_never_exceeds_white_box(seed):
    gen = torch.Generator().manual_seed(seed)
    model = LinearModel(3, 4).double()
    p = sum(t.numel() for t in model.parameters())
    m1 = torch.randn(p, generator=gen, dtype=torch.float64)
    m0 = m1 + 0.3 * torch.randn(p, generator=gen, dtype=torch.float64)
    v1 = torch.rand(p, generator=gen, dtype=torch.float64) + 0.05
    v0 = torch.rand(p, generator=gen, dtype=torch.float64) + 0.05
    x = torch.randn(4, 4, generator=gen, dtype=torch.float64)
    white = bounds.white_box(m1, v1, m0, v0).nats
    black = bounds.black_box(model, m1, v1, m0, v0, x, joint=True)
    assert (black.per_query <= white + 1e-9).all()
    assert black.joint <= white + 1e-9
    assert black.joint >= black.per_query.max().item() - 1e-9  # more queries, more information


def test_bounds_vanish_when_scrubbed_equals_retrained():
    model = LinearModel(3, 4).double()
    w = flatten(parameters_of(model))
    var = torch.full_like(w, 0.01)
    assert bounds.white_box(w, var, w, var).nats == 0.0
    x = torch.randn(5, 4, dtype=torch.float64)
    bb = bounds.black_box(model, w, var, w, var, x)
    assert bb.per_query.abs().max() < 1e-10
    wb = bounds.white_box(w + 1, var, w, var, parameters_of(model))
    assert set(wb.per_tensor) == {"classifier.weight", "classifier.bias"}
    assert sum(wb.per_tensor.values()) == pytest.approx(wb.nats)
    assert wb.nats == pytest.approx(0.5 * len(w) / 0.01)


def test_pseudo_kernel_bounds_equal_exact_on_a_linear_model_with_shared_variance():
    """With one variance per tensor a linear model's output covariance is s(x) I_c: the
    pseudo-NTK bound is then exact; with per-weight variances it is not."""
    gen = torch.Generator().manual_seed(4)
    model = LinearModel(3, 4).double()
    like = parameters_of(model)
    p = sum(t.numel() for t in like.values())
    m1 = torch.randn(p, generator=gen, dtype=torch.float64)
    m0 = m1 + 0.3 * torch.randn(p, generator=gen, dtype=torch.float64)
    v1, v0 = torch.full_like(m1, 0.2), torch.full_like(m1, 0.3)
    x = torch.randn(5, 4, generator=gen, dtype=torch.float64)
    exact = bounds.black_box(model, m1, v1, m0, v0, x, joint=True)
    pseudo = bounds.black_box(model, m1, v1, m0, v0, x, joint=True, kernel="pseudo")
    assert torch.allclose(pseudo.per_query, exact.per_query, rtol=1e-10)
    assert pseudo.joint == pytest.approx(exact.joint, rel=1e-10)
    v1 = torch.rand(p, generator=gen, dtype=torch.float64) + 0.05
    exact = bounds.black_box(model, m1, v1, m0, v0, x)
    pseudo = bounds.black_box(model, m1, v1, m0, v0, x, kernel="pseudo")
    assert not torch.allclose(pseudo.per_query, exact.per_query, rtol=1e-3)
