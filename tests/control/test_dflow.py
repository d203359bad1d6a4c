"""D-Flow against the exact posterior of a noiseless linear-Gaussian problem."""

from __future__ import annotations

import math

import pytest
import torch

from tessera.control.dflow import (
    blend_init,
    chi_regulariser,
    classifier_cost,
    dflow,
    linear_cost,
    regressor_cost,
)
from tessera.control.operators import Dense
from tessera.errors import ShapeError, ValidationError
from tessera.flows import GaussianMixtureFlow

F64 = torch.float64


def _problem(seed: int, d: int = 8, m: int = 4):
    # an anisotropic prior N(0, S) (eigenvalues 0.05 .. 3), as in the research notes
    g = torch.Generator().manual_seed(seed)
    Q, _ = torch.linalg.qr(torch.randn(d, d, generator=g, dtype=F64))
    ev = torch.exp(torch.linspace(math.log(0.05), math.log(3.0), d, dtype=F64))
    S = Q @ torch.diag(ev) @ Q.T
    gmf = GaussianMixtureFlow([1.0], [[0.0] * d], [S])
    A = torch.randn(m, d, generator=g, dtype=F64)
    y1 = gmf.sample_data(1, generator=seed) @ A.T
    K = torch.linalg.solve(A @ S @ A.T, A @ S)  # (m, d)
    C = S - S @ A.T @ K
    mu = S @ A.T @ torch.linalg.solve(A @ S @ A.T, y1[0])
    return gmf, Dense(A), y1, mu, C


def _errors(x, mu, C):
    return (
        (x.mean(0) - mu).abs().max().item(),
        (torch.linalg.norm(torch.cov(x.T) - C) / torch.linalg.norm(C)).item(),
    )


def test_from_zero_it_returns_the_posterior_mean(seed: int) -> None:
    gmf, op, y1, mu, _ = _problem(seed)
    res = dflow(
        gmf.velocity,
        linear_cost(op, y1),
        torch.zeros(1, 8, dtype=F64),
        ode_steps=20,
        reg_weight=0.0,
        max_iter=10,
    )
    assert (res.x1[0] - mu).abs().max().item() <= 1e-3
    assert res.nfe > 0 and res.history[-1] < 1e-6


@pytest.mark.statistical
def test_from_random_sources_it_samples_the_posterior(seed: int) -> None:
    """Acceptance 2: exact posterior samples from random x0; data-space descent is wrong.

    H0: the solutions follow N(mu, C). n = 4000; the posterior has rank 4 with
    variances <= 3, so the mean's sd is <= 0.027 per coordinate and 0.05 is ~1.8 sd for
    the largest; the expected relative covariance error is ~0.03 at this n (measured
    0.017-0.031 over seeds 0-2) against the 0.1 bound. The data-space baseline has
    covariance error > 1 for this anisotropic prior (measured 1.2-2.0).
    """
    gmf, op, y1, mu, C = _problem(seed)
    n = 4000
    y = y1.expand(n, -1)
    g = torch.Generator().manual_seed(seed + 10)
    res = dflow(
        gmf.velocity,
        linear_cost(op, y),
        torch.randn(n, 8, generator=g, dtype=F64),
        ode_steps=20,
        reg_weight=0.0,
        max_iter=10,
    )
    mean_err, cov_err = _errors(res.x1, mu, C)
    assert mean_err < 0.05, mean_err
    assert cov_err < 0.1, cov_err
    # the same descent directly in data space, from prior samples: a zero velocity makes
    # the flow map the identity
    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    base = dflow(
        zero,
        linear_cost(op, y),
        gmf.sample_data(n, generator=seed + 11),
        ode_steps=1,
        method="euler",
        reg_weight=0.0,
        max_iter=10,
    )
    _, cov_err_data = _errors(base.x1, mu, C)
    assert cov_err_data > 0.5, cov_err_data


def test_costs_and_regulariser() -> None:
    x = torch.tensor([[3.0, 4.0]], dtype=F64)
    assert abs(chi_regulariser(x).item() - (12.5 - math.log(5.0))) < 1e-12
    logits = lambda z: torch.stack([z[:, 0], z[:, 1]], 1)  # noqa: E731
    expect = -torch.log_softmax(torch.tensor([3.0, 4.0], dtype=F64), 0)[1]
    assert abs(classifier_cost(logits, 1)(x).item() - expect.item()) < 1e-12
    assert regressor_cost(lambda z: z.sum(1), 10.0)(x).item() == 9.0


def test_blend_init_inverts_the_flow(seed: int) -> None:
    gmf, *_ = _problem(seed)
    x1 = gmf.sample_data(5, generator=seed)
    x0 = blend_init(gmf.velocity, x1, alpha=1.0, generator=seed, atol=1e-9, rtol=1e-9)
    from tessera.flows import solve_ode, uniform_grid

    back = solve_ode(gmf.velocity, x0, uniform_grid(200, dtype=F64), method="rk4")
    torch.testing.assert_close(back, x1, rtol=0, atol=1e-5)


def test_bad_input() -> None:
    gmf, op, y1, *_ = _problem(0)
    v = gmf.velocity
    with pytest.raises(ValidationError, match="not differentiable"):
        dflow(v, lambda x: x.detach().sum(1), torch.zeros(1, 8, dtype=F64))
    with pytest.raises(ValidationError, match=r"shape \(B,\)"):
        dflow(v, lambda x: (x**2).sum(), torch.zeros(1, 8, dtype=F64))
    with pytest.raises(ShapeError, match="x0_init"):
        dflow(v, linear_cost(op, y1), torch.zeros(8, dtype=F64))
    with pytest.raises(ValueError, match="NaN"):
        dflow(v, linear_cost(op, y1), torch.full((1, 8), float("nan"), dtype=F64))
    with pytest.raises(ValueError, match="optimizer"):
        dflow(v, linear_cost(op, y1), torch.zeros(1, 8, dtype=F64), optimizer="sgd")
    with pytest.raises(ValidationError, match="alpha"):
        blend_init(v, torch.zeros(1, 8, dtype=F64), alpha=1.5)
    with pytest.raises(ValidationError, match="restarts"):
        dflow(v, linear_cost(op, y1), torch.zeros(1, 8, dtype=F64), restarts=0)


def test_per_sample_lbfgs_solves_each_quadratic_exactly(seed: int) -> None:
    # identity flow map (zero velocity, one Euler step); row i minimises
    # 0.5 x^T H_i x - b_i^T x with its own conditioning: the exact minimiser is H_i^{-1} b_i
    g = torch.Generator().manual_seed(seed)
    B, d = 16, 5
    Q = torch.linalg.qr(torch.randn(B, d, d, generator=g, dtype=F64))[0]
    ev = torch.exp(torch.randn(B, d, generator=g, dtype=F64) * 1.5)  # condition up to ~1e4
    H = Q @ torch.diag_embed(ev) @ Q.transpose(1, 2)
    b = torch.randn(B, d, generator=g, dtype=F64)

    def cost(x):
        return 0.5 * torch.einsum("bi,bij,bj->b", x, H, x) - (b * x).sum(1)

    zero = lambda x, t: torch.zeros_like(x)  # noqa: E731
    res = dflow(
        zero, cost, torch.zeros(B, d, dtype=F64), ode_steps=1, method="euler",
        reg_weight=0.0, per_sample=True, max_iter=10,
    )  # fmt: skip
    # each row stops on its own tolerances (max |gradient| <= 1e-7, or objective change and
    # step both <= 1e-9, as torch.optim.LBFGS); the stalled rows end with |gradient| below
    # 1e-6 (measured 7e-7 at most), so each error is at most sqrt(d) 1e-6 / lambda_min(H_i)
    grad = torch.einsum("bij,bj->bi", H, res.x1) - b
    assert grad.abs().max().item() <= 1e-6
    err = (res.x1 - torch.linalg.solve(H, b)).norm(dim=1)
    assert (err <= 1e-6 * d**0.5 / ev.min(1).values).all(), err


def _eight_gaussians_hits(seed: int, n: int, **settings) -> tuple[float, object]:
    """Fraction of D-Flow solutions on a mode compatible with y = x[0] + N(0, 0.05^2)."""
    from tessera.data.toy import eight_gaussians_params

    w, mu, cov = eight_gaussians_params()
    gmf = GaussianMixtureFlow(w, mu, cov)
    g = torch.Generator().manual_seed(seed)
    sigma_y = 0.05
    y = gmf.sample_data(n, generator=g)[:, 0] + sigma_y * torch.randn(n, generator=g, dtype=F64)
    x0 = torch.randn(n, 2, generator=g, dtype=F64)
    res = dflow(gmf.velocity, lambda x: (x[:, 0] - y) ** 2, x0, generator=seed + 1, **settings)
    m = torch.as_tensor(mu)
    sd = math.sqrt(0.1**2 + sigma_y**2)
    compatible = (m[None, :, 0] - y[:, None]).abs() < 3 * sd  # (n, 8): modes y could come from
    near = (res.x1[:, None, :] - m[None]).norm(dim=-1) < 3 * 0.1  # within 3 sd of a mode
    fits = (res.x1[:, 0] - y).abs() < 0.15
    return float(((near & compatible).any(1) & fits).double().mean()), res


@pytest.mark.statistical
def test_eight_gaussians_solutions_land_on_compatible_modes(seed: int) -> None:
    """Acceptance 3 (notes DF-2): eight Gaussians (radius 2, sd 0.1), observe x[0] with
    sigma_y = 0.05; a hit is within 3 sd of a mode whose x[0] is within 3 sd of y, with
    |x[0] - y| < 0.15.

    H0: the hit rate is >= 0.95. Settings: 5 midpoint steps, lambda_R = 0.01, per-sample
    L-BFGS 20 x 20, 2 restarts (keep each sample's lower objective). Measured hit rates
    at n = 1000, seeds 0-2: one run 0.91-0.93; 2 restarts 0.970-0.975 (the misses of one run
    are local minima: a source in the flat basin of the wrong neighbouring mode, with a
    gradient of 1e-8 there; a second start leaves that basin). At n = 1000 the rate's SE
    is 0.005, so 0.95 is >= 4 SE below the measured rate. The joint L-BFGS over the batch
    (the reference implementation's batching) is far below (measured 0.42-0.55, n = 200).
    """
    n = 1000
    rate, res = _eight_gaussians_hits(seed, n, per_sample=True, restarts=2)
    assert rate >= 0.95, rate
    assert res.objective is not None and res.restart is not None
    assert res.objective.shape == (n,) and set(res.restart.tolist()) == {0, 1}
    joint, _ = _eight_gaussians_hits(seed, 200, per_sample=False)
    assert joint < 0.8, joint
