"""GaussianPrior: the Woodbury posterior against the dense closed form, fit, Matheron draws."""

from __future__ import annotations

import pytest
import torch

from tessera.control import (
    Dense,
    GaussianBlur,
    GaussianPrior,
    Inpaint,
    SuperResolution,
    ot_ode,
)
from tessera.errors import NonFiniteError, ShapeError, ValidationError
from tessera.flows import CondOT

F64 = torch.float64


def _prior(seed: int, D: int, k: int, floor: float) -> GaussianPrior:
    g = torch.Generator().manual_seed(seed)
    U, _ = torch.linalg.qr(torch.randn(D, k, generator=g, dtype=F64))
    lam = 0.5 + 3 * torch.rand(k, generator=g, dtype=F64)
    return GaussianPrior(torch.randn(D, generator=g, dtype=F64), U, lam, floor)


def _dense_posterior_mean(p: GaussianPrior, A: torch.Tensor, y: torch.Tensor, s2: float):
    S = p.covariance()
    K = S @ A.T @ torch.linalg.inv(A @ S @ A.T + s2 * torch.eye(A.shape[0], dtype=F64))
    return p.mean + (y - p.mean @ A.T) @ K.T, S - K @ A @ S


def _matrix(op, D: int) -> torch.Tensor:
    return op.forward(torch.eye(D, dtype=F64)).T  # (m, D)


@pytest.mark.parametrize(
    ("name", "floor"),
    [("dense", 0.3), ("dense", 0.0), ("inpaint", 0.2), ("superres", 0.1), ("blur", 0.05)],
)
def test_posterior_mean_equals_the_dense_closed_form(seed: int, name: str, floor: float) -> None:
    g = torch.Generator().manual_seed(seed + 7)
    if name == "dense":
        op, D = Dense(torch.randn(5, 12, generator=g, dtype=F64)), 12
    elif name == "inpaint":
        mask = torch.rand(4, 4, generator=g) > 0.5
        op, D = Inpaint(mask), 16
    elif name == "superres":
        op, D = SuperResolution(2, (4, 4)), 16
    else:
        op, D = GaussianBlur(3, 1.0, (4, 4)), 16
    p = _prior(seed, D, k=3, floor=floor)
    A = _matrix(op, D)
    y = torch.randn(4, A.shape[0], generator=g, dtype=F64)
    mean, _ = _dense_posterior_mean(p, A, y, 0.01)
    err = (p.posterior_mean(op, y, 0.01) - mean).abs().max().item()
    assert err < 1e-8, err


@pytest.mark.statistical
def test_posterior_samples_have_the_posterior_moments(seed: int) -> None:
    """H0: Matheron draws follow N(mean, C). n = 40,000 in D = 8 with posterior sd <= 2:
    mean sd <= 0.01, so 0.05 is >= 5 sd; the relative Frobenius covariance error of a
    correct sampler is ~0.01-0.02, the 0.06 bound is several sd above. Measured on seeds
    0-2 (sigma_y^2 = 1): dropping the measurement-noise draw e gives 0.11-0.22, dropping
    the prior draw 0.91-0.95."""
    g = torch.Generator().manual_seed(seed)
    op = Dense(torch.randn(3, 8, generator=g, dtype=F64))
    p = _prior(seed, 8, k=2, floor=0.4)
    y1 = torch.randn(1, 3, generator=g, dtype=F64)
    mean, C = _dense_posterior_mean(p, _matrix(op, 8), y1, 1.0)
    x = p.posterior_sample(op, y1.expand(40_000, 3), 1.0, generator=g)
    assert (x.mean(0) - mean[0]).abs().max().item() < 0.05
    rel = (torch.linalg.norm(torch.cov(x.T) - C) / torch.linalg.norm(C)).item()
    assert rel < 0.06, rel


@pytest.mark.parametrize("rank", [None, 3])
def test_fit_recovers_the_covariance(seed: int, rank: int | None) -> None:
    # data drawn from a rank-3 + floor Gaussian: full fit = sample covariance exactly;
    # rank 3 recovers the top components and puts the rest in the floor
    p = _prior(seed, 10, k=3, floor=0.05)
    g = torch.Generator().manual_seed(seed)
    x = (
        p.mean
        + torch.randn(20_000, 10, generator=g, dtype=F64) @ torch.linalg.cholesky(p.covariance()).T
    )
    q = GaussianPrior.fit(x.reshape(20_000, 2, 5), rank=rank)
    if rank is None:
        assert torch.allclose(q.covariance(), torch.cov(x.T), atol=1e-10)
    rel = torch.linalg.norm(q.covariance() - p.covariance()) / torch.linalg.norm(p.covariance())
    assert rel.item() < 0.05
    assert abs(q.floor - (0.05 if rank == 3 else 0.0)) < 0.01


def test_ot_ode_with_the_exact_prior_is_exact_for_an_anisotropic_gaussian(seed: int) -> None:
    # the posterior-sample init from the true N(m, Sigma) makes x_{t'} exact; the guided
    # ODE's isotropic r_t^2 is then the only approximation (reported, loose bound)
    from tessera.flows import GaussianMixtureFlow

    p = _prior(seed, 6, k=2, floor=1.0)
    gmf = GaussianMixtureFlow([1.0], [p.mean.tolist()], [p.covariance()])
    g = torch.Generator().manual_seed(seed)
    op = Dense(torch.randn(3, 6, generator=g, dtype=F64))
    y = torch.randn(1, 3, generator=g, dtype=F64).expand(4000, 3).clone()
    mean, _ = _dense_posterior_mean(p, _matrix(op, 6), y[:1], 0.01)
    kw = {"start_time": 0.3, "steps": 100, "generator": seed}
    x = ot_ode(gmf.velocity, CondOT(), op, y, 0.1, init="posterior-sample", prior=p, **kw)
    assert (x.mean(0) - mean[0]).abs().max().item() < 0.15


def test_bad_input() -> None:
    m = torch.zeros(4, dtype=F64)
    with pytest.raises(ShapeError, match="components"):
        GaussianPrior(m, torch.zeros(3, 1, dtype=F64), torch.ones(1, dtype=F64), 0.0)
    with pytest.raises(ShapeError, match="eigenvalues"):
        GaussianPrior(m, torch.zeros(4, 1, dtype=F64), torch.ones(2, dtype=F64), 0.0)
    with pytest.raises(ValidationError, match="eigenvalues must be > 0"):
        GaussianPrior(m, torch.zeros(4, 1, dtype=F64), torch.zeros(1, dtype=F64), 0.0)
    with pytest.raises(ValidationError, match="floor"):
        GaussianPrior.isotropic(m, -1.0)
    with pytest.raises(ShapeError, match="N >= 2"):
        GaussianPrior.fit(torch.zeros(1, 4))
    bad = torch.zeros(3, 4)
    bad[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="x"):
        GaussianPrior.fit(bad)
    with pytest.raises(ValidationError, match="rank"):
        GaussianPrior.fit(torch.randn(5, 4), rank=0)
    p = GaussianPrior.isotropic(torch.zeros(5))
    with pytest.raises(ShapeError, match="fit the prior"):
        p.posterior_mean(Inpaint(torch.ones(2, 2, dtype=torch.bool)), torch.zeros(1, 4), 0.01)
    with pytest.raises(ValidationError, match="GaussianPrior"):
        ot_ode(
            lambda x, t: x,
            CondOT(),
            Inpaint(torch.ones(2, 2, dtype=torch.bool)),
            torch.zeros(1, 4),
            0.1,
            init="posterior-mean",
            prior=torch.zeros(4),  # type: ignore[arg-type]
        )
