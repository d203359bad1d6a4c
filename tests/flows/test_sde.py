"""The marginal-preserving SDE family and the memoryless schedule, on a Gaussian law."""

from __future__ import annotations

import pytest
import torch

from tessera.errors import ValidationError
from tessera.flows import VP, CondOT, GaussianMixtureFlow, solve_ode, solve_sde, uniform_grid
from tessera.flows.sde import constant, drift, memoryless

F64 = torch.float64
S2 = 2.25  # data N(0, 1.5^2)


def _v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # exact cond-OT velocity of N(0, S2)
    t = t[:, None]
    return (S2 * t - (1 - t)) / (S2 * t**2 + (1 - t) ** 2) * x


DIFFUSIONS = {
    "ode": lambda k: constant(0.0),
    "0.5": lambda k: constant(0.5),
    "1.0": lambda k: constant(1.0),
    "memoryless": lambda k: memoryless(CondOT(), offset=1.0 / k),
}


def _chain_moments(diffusion, k: int) -> tuple[float, float]:
    """Exact Var(X_1) and Cov(X_0, X_1) of the Euler-Maruyama chain for N(0, S2) data.

    The velocity is linear in x, so the drift is b_k x and the discrete chain obeys
    Var_{k+1} = (1 + h b_k)^2 Var_k + h sigma_k^2, Cov_{k+1} = (1 + h b_k) Cov_k exactly.
    """
    var, cov, h = 1.0, 1.0, 1.0 / k
    one = torch.ones(1, 1, dtype=F64)
    for t in uniform_grid(k, dtype=F64)[:-1]:
        tt = t.reshape(1)
        b = drift(_v, one, tt, CondOT(), diffusion).item()
        sig = diffusion.sigma(t).item()
        var = (1 + h * b) ** 2 * var + h * sig**2
        cov = (1 + h * b) * cov
    return var, cov


@pytest.mark.parametrize("which", list(DIFFUSIONS))
def test_sde_family_keeps_the_marginal_variance(which: str) -> None:
    # Acceptance: Var(X_1) within 2 % of the ODE's for sigma in {0, 0.5, 1, memoryless},
    # computed exactly for the discrete chain (no sampling error), K = 1000.
    ode_var = solve_ode(_v, torch.ones(1, 1, dtype=F64), uniform_grid(1000, dtype=F64)).item() ** 2
    assert abs(ode_var / S2 - 1) < 1e-4
    var, _ = _chain_moments(DIFFUSIONS[which](1000), 1000)
    assert abs(var / ode_var - 1) < 0.02, var


def test_memoryless_forgets_the_source_exactly() -> None:
    # Corr(X_0, X_1) of the chain: ~0 under memoryless, sqrt(1 - C/2.25) = 0.88 under
    # constant(0.5) with C = Var(X_1 | X_0) = 0.518 (notes §1.2).
    var_m, cov_m = _chain_moments(DIFFUSIONS["memoryless"](400), 400)
    var_c, cov_c = _chain_moments(DIFFUSIONS["0.5"](400), 400)
    assert abs(cov_m / var_m**0.5) < 0.02
    assert cov_c / var_c**0.5 > 0.3
    assert abs((var_c - cov_c**2) / 0.518 - 1) < 0.02


@pytest.mark.statistical
@pytest.mark.parametrize("which", ["0.5", "memoryless"])
def test_solve_sde_samples_have_the_chain_moments(which: str, seed: int) -> None:
    """solve_sde draws the Euler-Maruyama chain whose moments are computed exactly above.

    H0: sample moments equal the chain's. n = 100 000, K = 200: the variance estimate
    has relative sd sqrt(2/n) = 0.45 % and the correlation sd <= 1/sqrt(n) = 0.0032;
    bounds of 2.5 % and 0.02 are > 5 sd (alpha < 1e-6). Acceptance: |corr| < 0.02 under
    memoryless and > 0.3 under constant(0.5), here on samples.
    """
    k = 200
    diffusion = DIFFUSIONS[which](k)
    var, cov = _chain_moments(diffusion, k)
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(100_000, 1, generator=g, dtype=F64)
    x1 = solve_sde(_v, x0, uniform_grid(k, dtype=F64), CondOT(), diffusion, generator=seed + 1)
    assert abs(x1.var().item() / var - 1) < 0.025
    corr = torch.corrcoef(torch.stack([x0[:, 0], x1[:, 0]]))[0, 1].item()
    assert abs(corr - cov / var**0.5) < 0.02
    if which == "memoryless":
        assert abs(corr) < 0.02
    else:
        assert corr > 0.3


def test_drift_formulas() -> None:
    gmf = GaussianMixtureFlow([1.0], [[0.0]], [[[S2]]])
    x = torch.linspace(-2, 2, 9, dtype=F64)[:, None]
    t = torch.full((9,), 0.4, dtype=F64)
    s = CondOT()
    v = gmf.velocity(x, t)
    # memoryless: 2 v - kappa x; with offset 0 kappa = 1 / t
    torch.testing.assert_close(drift(gmf.velocity, x, t, s, memoryless(s)), 2 * v - x / 0.4)
    # constant: v + sigma^2 / (2 eta) (v - kappa x)
    eta, kappa = 0.6 / 0.4, 1 / 0.4
    expect = v + 0.25 / (2 * eta) * (v - kappa * x)
    torch.testing.assert_close(drift(gmf.velocity, x, t, s, constant(0.5)), expect)
    # memoryless sigma^2 = 2 eta
    assert abs(memoryless(s).sigma(0.4).item() ** 2 - 2 * eta) < 1e-12
    # the offset keeps t = 0 finite and cancels X_0 in the first Euler step: 1 - h kappa_0 = 0
    assert abs(1 - 0.01 * memoryless(s, offset=0.01).kappa(0.0).item()) < 1e-12
    assert torch.isfinite(drift(gmf.velocity, x, torch.zeros(9, dtype=F64), s, constant(1.0))).all()


def test_bad_input() -> None:
    with pytest.raises(ValidationError, match="sigma"):
        constant(-0.1)
    with pytest.raises(ValidationError, match="offset"):
        memoryless(CondOT(), offset=-1e-3)
    with pytest.raises(ValidationError, match="built for"):
        drift(lambda x, t: x, torch.zeros(2, 1), 0.5, VP(), memoryless(CondOT()))
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        drift(lambda x, t: x, torch.zeros(2, 1), 1.5, CondOT(), constant(1.0))
