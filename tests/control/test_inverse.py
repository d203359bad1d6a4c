"""OT-ODE / PiGDM for flows against the exact Gaussian posterior; diffusion-to-flow conversion."""

from __future__ import annotations

import pytest
import torch

from tessera.control.inverse import INITS, diffusion_to_flow, flow_dps, ot_ode, pigdm_vp
from tessera.control.operators import Dense, Inpaint
from tessera.errors import NonFiniteError, ShapeError, UnsupportedError, ValidationError
from tessera.flows import VP, CondOT, GaussianMixtureFlow

F64 = torch.float64


def _problem(
    seed: int,
    d: int = 6,
    m: int = 3,
    sigma_y: float = 0.1,
    n: int = 20_000,
    prior_mean: float = 0.0,
):
    """Prior N(prior_mean * 1, I), y = A x + N(0, sigma_y^2 I); exact posterior N(mu, C)."""
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(m, d, generator=g, dtype=F64)
    mu0 = torch.full((d,), prior_mean, dtype=F64)
    x_true = mu0 + torch.randn(1, d, generator=g, dtype=F64)
    y1 = x_true @ A.T + sigma_y * torch.randn(1, m, generator=g, dtype=F64)
    C = torch.linalg.inv(torch.eye(d, dtype=F64) + A.T @ A / sigma_y**2)
    mu = C @ (A.T @ y1[0] / sigma_y**2 + mu0)
    gmf = GaussianMixtureFlow([1.0], [mu0.tolist()], [torch.eye(d, dtype=F64)])
    return gmf, Dense(A), y1.expand(n, m).clone(), mu, C


def _errors(x, mu, C):
    mean_err = (x.mean(0) - mu).abs().max().item()
    cov_err = (torch.linalg.norm(torch.cov(x.T) - C) / torch.linalg.norm(C)).item()
    return mean_err, cov_err


@pytest.mark.statistical
def test_ot_ode_samples_the_exact_posterior(seed: int) -> None:
    """Acceptance 1: N(0, I) prior, A of shape (3, 6), sigma_y = 0.1, gamma = 1, start near 0.

    H0: samples follow the exact posterior N(mu, C). n = 20 000: the posterior sd per
    coordinate is <= 1, so the mean's sd <= 0.007 and the 0.03 bound is >= 4.2 sd; the
    relative Frobenius covariance error of a correct sampler is ~0.02 (MC floor), the 0.05
    bound several sd above. A missing eta weight or a wrong r_t^2 shifts the covariance
    by > 0.1 (the warm start t' = 0.2, a mild bias, already gives ~0.07).
    """
    gmf, op, y, mu, C = _problem(seed)
    x = ot_ode(gmf.velocity, CondOT(), op, y, 0.1, start_time=0.005, steps=200, generator=seed)
    mean_err, cov_err = _errors(x, mu, C)
    assert mean_err < 0.03, mean_err
    assert cov_err < 0.05, cov_err


@pytest.mark.slow
def test_ot_ode_warm_start_bias_is_reported(seed: int) -> None:
    # the warm start t' = 0.2 is biased for this exact problem (notes: ~0.07); reported
    gmf, op, y, mu, C = _problem(seed)
    x = ot_ode(gmf.velocity, CondOT(), op, y, 0.1, start_time=0.2, steps=200, generator=seed)
    _, cov_err_warm = _errors(x, mu, C)
    print(f"start_time=0.2: covariance relative error {cov_err_warm:.3f}")
    assert 0.02 < cov_err_warm < 0.15


@pytest.mark.statistical
def test_posterior_sample_init_makes_the_warm_start_exact(seed: int) -> None:
    """init="posterior-sample" draws x_{t'} from the exact p_{t'}(x | y) for an N(m, I) prior.

    H0: samples follow the exact posterior N(mu, C), started at t' = 0.5 with a prior mean
    of 2 (not centred). Same bounds and power as the test above (mean sd <= 0.007, MC
    covariance floor ~0.02). The paper's back-projection init at the same t' is shown to
    be biased (covariance error ~0.5, and zero instead of the prior mean on the null
    space), so the bounds separate the two; "posterior-mean" fixes the mean only.
    """
    gmf, op, y, mu, C = _problem(seed, prior_mean=2.0)
    runs = {}
    for init in INITS:
        kw = {"start_time": 0.5, "steps": 200, "init": init, "generator": seed}
        x = ot_ode(gmf.velocity, CondOT(), op, y, 0.1, **kw)
        runs[init] = _errors(x, mu, C)
    mean_err, cov_err = runs["posterior-sample"]
    assert mean_err < 0.03, mean_err
    assert cov_err < 0.05, cov_err
    assert runs["backprojection"][0] > 0.1 and runs["backprojection"][1] > 0.3, runs
    assert runs["posterior-mean"][0] < 0.03 and runs["posterior-mean"][1] > 0.3, runs


def test_pigdm_vp_on_a_converted_epsilon_model_matches_ot_ode(seed: int) -> None:
    # PiGDM on the VP path of the same exact prior is also exact for N(0, I) data
    gmf, op, y, mu, C = _problem(seed, n=4000)
    gvp = gmf.with_schedule(VP())

    def eps(x, s):
        return -VP().beta(s)[:, None] * gvp.score(x, s)

    x = pigdm_vp(eps, op, y, 0.1, start_time=0.05, steps=100, generator=seed)
    mean_err, cov_err = _errors(x, mu, C)
    assert mean_err < 0.06 and cov_err < 0.12, (mean_err, cov_err)


def test_diffusion_to_flow_equals_the_ot_velocity(seed: int) -> None:
    # Acceptance 6: the converted closed-form VP epsilon model is the closed-form OT velocity
    gmf = GaussianMixtureFlow(
        [0.3, 0.7], [[1.0, -1.0], [-1.0, 2.0]], [torch.eye(2) * 0.2, torch.eye(2) * 0.5]
    )
    gvp = gmf.with_schedule(VP())

    def eps(x, s):
        return -VP().beta(s)[:, None] * gvp.score(x, s)

    g = torch.Generator().manual_seed(seed)
    x = 2 * torch.randn(1000, 2, generator=g, dtype=F64)
    t = 0.05 + 0.9 * torch.rand(1000, generator=g, dtype=F64)
    err = (diffusion_to_flow(eps)(x, t) - gmf.velocity(x, t)).abs().max().item()
    assert err <= 1e-6, err


def test_flow_dps_moves_towards_the_measurement(seed: int) -> None:
    gmf, op, y, _mu, _ = _problem(seed, n=500)
    x = flow_dps(gmf.velocity, CondOT(), op, y, step_size=0.5, steps=100, generator=seed)
    prior = torch.randn(500, 6, generator=torch.Generator().manual_seed(seed), dtype=F64)
    fit = ((op.forward(x) - y) ** 2).sum(1).mean()
    fit_prior = ((op.forward(prior) - y) ** 2).sum(1).mean()
    assert fit < 0.2 * fit_prior


def test_bad_input() -> None:
    gmf, op, y, _, _ = _problem(0, n=4)
    v = gmf.velocity
    with pytest.raises(ShapeError, match="measurements per sample"):
        ot_ode(v, CondOT(), op, y[:, :2], 0.1)
    with pytest.raises(ShapeError, match=r"\(B, m\)"):
        ot_ode(v, CondOT(), op, y[0], 0.1)
    with pytest.raises(ValidationError, match="sigma_y"):
        ot_ode(v, CondOT(), op, y, -0.1)
    bad = y.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(NonFiniteError, match="y"):
        ot_ode(v, CondOT(), op, bad, 0.1)
    with pytest.raises(ValidationError, match="start_time"):
        ot_ode(v, CondOT(), op, y, 0.1, start_time=0.0)
    with pytest.raises(ValidationError, match="gamma"):
        ot_ode(v, CondOT(), op, y, 0.1, gamma="sometimes")
    with pytest.raises(ValidationError, match="LinearOperator"):
        ot_ode(v, CondOT(), torch.eye(3), y, 0.1)
    with pytest.raises(UnsupportedError, match="init"):
        ot_ode(v, CondOT(), op, y, 0.1, init="zeros")  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="measurements per sample"):
        flow_dps(v, CondOT(), Inpaint(torch.ones(6, dtype=torch.bool)), y)


@pytest.mark.parametrize("method", ["ot-ode", "dps", "pigdm", "dflow", "pinv"])
def test_reconstruct_counts_every_velocity_call(method: str) -> None:
    from tessera.control.tasks import make_operator, reconstruct

    gmf = GaussianMixtureFlow([1.0], [[0.0] * 16], [torch.eye(16).tolist()])
    calls = [0]

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        calls[0] += 1
        return gmf.velocity(x.double(), t.double()).to(x.dtype)

    op = make_operator("inpaint", (4, 4))
    y = op.forward(torch.randn(3, 16, generator=torch.Generator().manual_seed(0)))
    res = reconstruct(v, op, y, 0.05, method, generator=1)
    assert res.settings["nfe"] == calls[0]
    assert (calls[0] == 0) == (method == "pinv")


def test_reconstruct_gaussian_is_the_prior_posterior_mean_and_needs_a_prior() -> None:
    from tessera.control import GaussianPrior
    from tessera.control.tasks import make_operator, reconstruct

    g = torch.Generator().manual_seed(0)
    prior = GaussianPrior.fit(torch.randn(200, 16, generator=g) @ torch.randn(16, 16, generator=g))
    op = make_operator("superres", (4, 4))
    y = op.forward(torch.randn(3, 16, generator=g))

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise AssertionError("the Gaussian posterior mean calls no velocity")

    res = reconstruct(v, op, y, 0.05, "gaussian", prior=prior)
    assert torch.equal(res.x, prior.posterior_mean(op, y, 0.05**2))
    assert res.settings["nfe"] == 0
    with pytest.raises(ValidationError, match="needs prior"):
        reconstruct(v, op, y, 0.05, "gaussian")
