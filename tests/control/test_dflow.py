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
