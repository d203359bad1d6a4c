"""GaussianMixtureFlow against autograd, Bayes' rule and the flow ODE."""

from __future__ import annotations

import pytest
import torch

from tessera.errors import ShapeError, ValidationError
from tessera.flows import VP, CondOT, Cosine, GaussianMixtureFlow, solve_ode, uniform_grid

F64 = torch.float64


def _random_gmm(d: int, k: int, seed: int, schedule=None) -> GaussianMixtureFlow:
    g = torch.Generator().manual_seed(1000 + seed)
    w = torch.rand(k, generator=g, dtype=F64) + 0.5
    m = 0.5 * torch.randn(k, d, generator=g, dtype=F64)
    covs = []
    for _ in range(k):
        q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
        lam = 0.05 + 0.25 * torch.rand(d, generator=g, dtype=F64)
        covs.append(q @ torch.diag(lam) @ q.T)
    return GaussianMixtureFlow(w, m, torch.stack(covs), schedule)


@pytest.mark.parametrize("schedule", [CondOT(), VP(), Cosine()], ids=lambda s: s.name)
def test_score_equals_autograd_of_log_density(schedule, seed: int) -> None:
    gmf = _random_gmm(3, 4, seed, schedule)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(50, 3, generator=g, dtype=F64).requires_grad_(True)
    t = 0.05 + 0.9 * torch.rand(50, generator=g, dtype=F64)
    (auto,) = torch.autograd.grad(gmf.log_prob(x, t).sum(), x)
    x = x.detach()
    torch.testing.assert_close(gmf.score(x, t), auto, rtol=1e-10, atol=1e-10)
    # the velocity is consistent with the score through the path identities
    v = gmf.velocity(x, t)
    torch.testing.assert_close(schedule.velocity_to_score(v, x, t), auto, rtol=1e-9, atol=1e-9)


def test_one_dimensional_closed_form() -> None:
    # data N(0, s^2) on cond-OT: v(x, t) = (s^2 t - (1 - t)) / (s^2 t^2 + (1 - t)^2) x
    s2 = 2.25
    gmf = GaussianMixtureFlow([1.0], [[0.0]], [[[s2]]])
    t = torch.linspace(0.0, 1.0, 11, dtype=F64)
    x = torch.linspace(-3, 3, 11, dtype=F64)[:, None]
    expect = (s2 * t - (1 - t)) / (s2 * t**2 + (1 - t) ** 2) * x[:, 0]
    torch.testing.assert_close(gmf.velocity(x, t)[:, 0], expect, rtol=1e-12, atol=1e-12)


def test_sample_data_moments(seed: int) -> None:
    """Sample moments of sample_data match mean() and cov().

    H0: the sampler draws the stated mixture. n = 200 000; per-coordinate variance
    <= 0.6, so the mean's sd is <= 0.0017 and the tolerance 0.01 is ~6 sd
    (two-sided alpha < 1e-8 per coordinate); a wrong component choice or a missing
    covariance factor shifts moments by >= 0.05 (power ~1).
    """
    gmf = _random_gmm(4, 3, seed)
    x = gmf.sample_data(200_000, generator=seed)
    torch.testing.assert_close(x.mean(0), gmf.mean(), rtol=0, atol=0.01)
    torch.testing.assert_close(torch.cov(x.T), gmf.cov(), rtol=0, atol=0.02)


@pytest.mark.statistical
@pytest.mark.parametrize("d", [2, 8])
def test_ode_maps_noise_to_the_mixture(d: int, seed: int) -> None:
    """Acceptance: 200 midpoint steps push N(0, I) onto the mixture.

    H0: the pushforward is the mixture. n = 20 000. Each coordinate's variance is at
    most ~0.45, so the sample mean's sd is <= 0.0048 and the 0.02 bound is >= 4.2 sd
    (alpha ~ 3e-5 per coordinate). The relative Frobenius covariance error has mean
    ~0.02 at this n and sd ~0.003; the 0.05 bound is ~10 sd away. A velocity off by a
    factor, a wrong time convention or a solver bug moves both by far more.
    """
    gmf = _random_gmm(d, 3, seed)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(20_000, d, generator=g, dtype=F64)
    x1 = solve_ode(gmf.velocity, x0, uniform_grid(200, dtype=F64), method="midpoint")
    mean_err = (x1.mean(0) - gmf.mean()).abs().max().item()
    cov_err = (torch.linalg.norm(torch.cov(x1.T) - gmf.cov()) / torch.linalg.norm(gmf.cov())).item()
    assert mean_err < 0.02, mean_err
    assert cov_err < 0.05, cov_err
    # the discretisation part of the error, measured per sample against a fine RK4 solve
    ref = solve_ode(gmf.velocity, x0[:1000], uniform_grid(200, dtype=F64), method="rk4")
    assert (x1[:1000] - ref).abs().max().item() < 1e-3


def test_tilt_linear_matches_importance_weights(seed: int) -> None:
    # E_tilted[f] = E[f e^{lam b.x}] / E[e^{lam b.x}], checked with exact quadrature in 1-D
    gmf = GaussianMixtureFlow([0.5, 0.5], [[-2.0], [2.0]], [[[0.25]], [[0.25]]])
    tilted = gmf.tilt_linear([1.0], 0.5)
    grid = torch.linspace(-8, 8, 200_001, dtype=F64)[:, None]
    p = gmf.log_prob(grid).exp() * torch.exp(0.5 * grid[:, 0])
    p = p / p.sum()
    torch.testing.assert_close((p * grid[:, 0]).sum(), tilted.mean()[0], rtol=1e-8, atol=1e-8)
    # right-mode weight of the note's two-mode example: 0.881
    assert abs(tilted.weights[1].item() - 0.8808) < 1e-4


def test_bad_input() -> None:
    with pytest.raises(ShapeError):
        GaussianMixtureFlow([1.0], [[0.0, 0.0]], [[[1.0]]])
    with pytest.raises(ValidationError, match="positive definite"):
        GaussianMixtureFlow([1.0], [[0.0]], [[[-1.0]]])
    with pytest.raises(ValidationError, match="non-negative"):
        GaussianMixtureFlow([-1.0], [[0.0]], [[[1.0]]])
    gmf = GaussianMixtureFlow([1.0], [[0.0]], [[[1.0]]])
    with pytest.raises(ShapeError, match=r"\(B, 1\)"):
        gmf.velocity(torch.zeros(3, 2), torch.zeros(3))
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        gmf.velocity(torch.zeros(3, 1), torch.full((3,), 1.5))
    with pytest.raises(ShapeError):
        gmf.tilt_linear([1.0, 2.0], 1.0)
