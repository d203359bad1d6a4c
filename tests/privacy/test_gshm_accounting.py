"""Exact GSHM accounting and calibration: golden vectors, identities, properties.

Golden vectors come from the paper's own figure script (``R/GSHM_Figures.R`` in
facebookresearch/gaussian_sparse_histogram_mechanism), re-run in Python in
/work/shared/notes/privacy.md A.5.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import norm

from tessera.errors import UnsupportedError, ValidationError
from tessera.privacy.gshm import (
    GSHMParams,
    calibrate,
    calibrate_additive,
    delta_additive,
    delta_exact,
    delta_gaussian,
    epsilon_exact,
    gaussian_mu,
    gshm_terms,
    threshold_savings,
)

K_PAPER = 51_914
EPS_PAPER = 0.349
DELTA_PAPER = 1e-5


# ---------------------------------------------------------------- golden vectors (A.5 a)


def test_paper_sigma_min_and_threshold() -> None:
    mu = gaussian_mu(EPS_PAPER, DELTA_PAPER)
    assert mu == pytest.approx(0.1022428608, rel=1e-9)
    p = calibrate(EPS_PAPER, DELTA_PAPER, k=K_PAPER)
    assert p.sigma == pytest.approx(2228.482632, rel=1e-6, abs=0)
    assert abs(p.sigma - 2228.482632) < 5e-7 * 1.01  # printed to 6 decimals
    # delta_inf = 1e-8 at sigma_min (the "epsilon, delta curves" part)
    p8 = calibrate(EPS_PAPER, 1e-5, k=K_PAPER)
    z = -norm.ppf(-math.expm1(math.log1p(-1e-8) / K_PAPER))
    assert p8.sigma * z == pytest.approx(16180.218374, rel=1e-9)
    assert z == pytest.approx(7.260644, abs=5e-7)


def test_paper_threshold_at_delta_inf_via_delta_exact() -> None:
    """τ−1 = 16180.218374 makes the leak term exactly 1e-8 in delta_exact's T1."""
    sigma = calibrate(EPS_PAPER, DELTA_PAPER, k=K_PAPER).sigma
    t = gshm_terms(EPS_PAPER, sigma=sigma, tau=1 + 16180.218374, k=K_PAPER)
    assert t.t1 == pytest.approx(1e-8, rel=1e-6)


@pytest.mark.parametrize(
    ("target", "eps_expected", "ratio"),
    [
        (1e-8, 0.504443, 2.000),
        (1e-7, 0.457682, 1.100),
        (1e-6, 0.406382, 1.010),
        (1e-5, 0.349, 1.001),
    ],
)
def test_paper_figure_b_ratios(target: float, eps_expected: float, ratio: float) -> None:
    sigma = calibrate(EPS_PAPER, DELTA_PAPER, k=K_PAPER).sigma
    tau = 1 + 16180.218374
    mu = math.sqrt(K_PAPER) / sigma
    # the ε where δ_G = target
    from scipy.optimize import brentq

    eps = brentq(
        lambda e: math.log(float(delta_gaussian(e, mu))) - math.log(target), 0.01, 2.0, xtol=1e-14
    )
    assert eps == pytest.approx(eps_expected, abs=5e-7)
    d_ex = float(delta_exact(eps, sigma=sigma, tau=tau, k=K_PAPER))
    d_add = float(delta_additive(eps, sigma=sigma, tau=tau, k=K_PAPER))
    assert d_ex == pytest.approx(target, rel=1e-6)
    assert d_add / d_ex == pytest.approx(ratio, rel=1e-6)
    terms = gshm_terms(eps, sigma=sigma, tau=tau, k=K_PAPER)
    assert terms.j == 0 and terms.argmax in ("t2", "t3")


def test_paper_best_thresholds() -> None:
    s = threshold_savings(EPS_PAPER, DELTA_PAPER, k=K_PAPER)
    # printed to 2 decimals in the note: |err| <= 0.005 (3.6e-7 relative)
    assert s.exact.tau - 1 == pytest.approx(13950.05, rel=1e-6)
    assert s.additive_best.tau - 1 == pytest.approx(14712.04, rel=1e-6)
    assert s.additive_best.sigma == pytest.approx(2274.43, abs=0.01)
    assert s.additive_even.tau - 1 == pytest.approx(14865.53, rel=1e-6)
    assert s.additive_even.sigma == pytest.approx(2334.74, abs=0.005)
    assert s.threshold_ratio_best == pytest.approx(14712.04 / 13950.05, rel=1e-6)


@pytest.mark.parametrize(
    ("offset", "add_tau", "gshm_tau"),
    [
        (0.01, 16988.34, 13950.11),
        (1, 15617.97, 13956.31),
        (10, 14951.67, 14012.65),
        (50, 14713.23, 14263.05),
        (100, 14841.12, 14576.04),
        (300, 15884.43, 15828.02),
    ],
)
def test_paper_figure_a(offset: float, add_tau: float, gshm_tau: float) -> None:
    """Threshold needed for total δ = 1e-5 at ε = 0.349 as σ grows (Figure A)."""
    sigma_min = calibrate(EPS_PAPER, DELTA_PAPER, k=K_PAPER).sigma
    sigma = sigma_min + offset
    p = calibrate(EPS_PAPER, DELTA_PAPER, k=K_PAPER, sigma=sigma)
    assert p.tau - 1 == pytest.approx(gshm_tau, abs=0.006)
    # add-the-deltas: the leak gets δ − δ_G(ε; √k/σ)
    d2 = DELTA_PAPER - float(delta_gaussian(EPS_PAPER, math.sqrt(K_PAPER) / sigma))
    tau_add = -sigma * norm.ppf(-math.expm1(math.log1p(-d2) / K_PAPER))
    assert tau_add == pytest.approx(add_tau, abs=0.006)
    # R-script check: exact δ at the GSHM threshold equals δ within δ²
    assert abs(p.delta_exact() - DELTA_PAPER) <= DELTA_PAPER**2


# ---------------------------------------------------------------- small-k vectors (A.5 b)

SMALL = [
    # k, sigma, tau-1, eps, exact, additive
    (1, 1.0, 3.0, 0.5, 2.3842170813e-01, 2.3977160617e-01),
    (1, 2.0, 8.0, 1.0, 6.8295949831e-03, 6.8612662249e-03),
    (2, 1.0, 3.0, 1.0, 2.8620821192e-01, 2.8890618576e-01),
    (5, 2.0, 6.0, 1.0, 1.7008671773e-01, 1.7681801022e-01),
    (10, 3.0, 9.0, 0.5, 2.5999140024e-01, 2.7340867492e-01),
    (100, 10.0, 40.0, 2.0, 2.0923635821e-02, 2.4085799953e-02),
    (5, 1.0, 2.0, 1.0, 5.8909966615e-01, 6.9779105508e-01),
    (3, 0.5, 1.0, 0.3, 9.0351524223e-01, 9.7022470732e-01),
]


@pytest.mark.parametrize(("k", "sigma", "tdiff", "eps", "exact", "additive"), SMALL)
def test_small_k_vectors(
    k: int, sigma: float, tdiff: float, eps: float, exact: float, additive: float
) -> None:
    # the note prints 11 significant digits: rel 1e-9
    assert float(delta_exact(eps, sigma=sigma, tau=1 + tdiff, k=k)) == pytest.approx(
        exact, rel=1e-9
    )
    assert float(delta_additive(eps, sigma=sigma, tau=1 + tdiff, k=k)) == pytest.approx(
        additive, rel=1e-9
    )


def test_per_j_terms_table() -> None:
    """A.2 table: k=3, σ=1.5, τ−1=3, ε=0.5 (analytic columns)."""
    t = gshm_terms(0.5, sigma=1.5, tau=4.0, k=3)
    np.testing.assert_allclose(t.t2, [0.29991756, 0.22763847, 0.13906022], atol=5e-9)
    np.testing.assert_allclose(t.t3, [0.29991756, 0.22166507, 0.11965529], atol=5e-9)
    assert t.t1 == pytest.approx(0.06670947, abs=5e-9)
    # U-shaped T2 for eps = 1.5
    t = gshm_terms(1.5, sigma=1.5, tau=4.0, k=3)
    np.testing.assert_allclose([*t.t2, t.t1], [0.0994, 0.0635, 0.0495, 0.0667], atol=6e-5)


def test_k1_reduces_to_endpoints() -> None:
    for s, t, e in [(1.0, 3.0, 0.2), (2.0, 5.0, 1.3), (0.7, 0.5, 3.0)]:
        p = norm.cdf((t - 1) / s)
        ref = max(float(delta_gaussian(e, 1 / s)), 1 - p)
        assert float(delta_exact(e, sigma=s, tau=t, k=1)) == pytest.approx(ref, rel=1e-12)


def test_vectorised_matches_scalar() -> None:
    eps = np.array([[0.3], [1.0]])
    sig = np.array([1.0, 2.0, 3.0])
    out = delta_exact(eps, sigma=sig, tau=8.0, k=[4, 5, 6])
    assert out.shape == (2, 3)
    for i in range(2):
        for j in range(3):
            ref = float(delta_exact(float(eps[i, 0]), sigma=float(sig[j]), tau=8.0, k=[4, 5, 6][j]))
            assert out[i, j] == ref


def test_large_k_and_tiny_delta_are_finite() -> None:
    p = calibrate(1.0, 1e-300, k=1_000_000)
    d = p.delta_exact()
    assert 0 < d <= 1e-300 and d == pytest.approx(1e-300, rel=1e-9)
    assert np.isfinite(float(delta_exact(50.0, sigma=1.0, tau=10.0, k=3)))
    assert float(delta_gaussian(-5.0, 1.0)) == pytest.approx(
        norm.cdf(0.5 + 5.0) - math.exp(-5.0) * norm.cdf(-0.5 + 5.0), rel=1e-12
    )


def test_epsilon_exact_inverts_delta_exact() -> None:
    eps = float(epsilon_exact(1e-5, sigma=11.797293, tau=57.08, k=10))
    assert float(delta_exact(eps, sigma=11.797293, tau=57.08, k=10)) <= 1e-5
    assert float(delta_exact(eps - 1e-9, sigma=11.797293, tau=57.08, k=10)) > 1e-5
    # the leak term alone above δ: no finite ε
    assert math.isinf(float(epsilon_exact(1e-5, sigma=2.0, tau=3.0, k=10)))
    assert float(epsilon_exact(0.9, sigma=5.0, tau=40.0, k=1)) == 0.0


def test_calibrate_exact_vs_pydp_table() -> None:
    """A.5 (c): GSHM σ_min / τ at the same (ε, δ) as PyDP's Gaussian partition selection."""
    rows = [
        (0.5, 1e-5, 1, 7.0318, 30.9900),
        (1, 1e-5, 100, 37.3063, 194.9681),
        (2, 1e-8, 100, 26.5293, 169.7617),
    ]
    for eps, d, k, s, t in rows:
        p = calibrate(eps, d, k=k)
        assert p.sigma == pytest.approx(s, abs=6e-5)
        assert p.tau == pytest.approx(t, abs=6e-5)
        # the exact δ at Google's even split is δ/2
        g = calibrate_additive(eps, d, k=k, split="even")
        assert float(delta_exact(eps, sigma=g.sigma, tau=g.tau, k=k)) == pytest.approx(
            d / 2, rel=1e-9
        )


def test_objectives_and_value_column() -> None:
    a = calibrate(1.0, 1e-6, k=7, objective="min_sigma")
    b = calibrate(1.0, 1e-6, k=7, objective="balanced")
    assert a == b == calibrate(1.0, 1e-6, k=7)
    v = calibrate(1.0, 1e-6, k=7, value_bound=5.0)
    assert v.value_sigma is not None and v.sigma > a.sigma
    assert v.delta_exact() <= 1e-6
    assert v.delta_exact() == pytest.approx(1e-6, rel=1e-9)
    assert GSHMParams.from_dict(v.to_dict()) == v


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"epsilon": 0.0, "delta": 1e-5, "k": 3}, ValidationError, "epsilon"),
        ({"epsilon": -1.0, "delta": 1e-5, "k": 3}, ValidationError, "epsilon"),
        ({"epsilon": 1.0, "delta": 0.0, "k": 3}, ValidationError, "delta"),
        ({"epsilon": 1.0, "delta": 1.0, "k": 3}, ValidationError, "delta"),
        ({"epsilon": 1.0, "delta": 1e-5, "k": 0}, ValidationError, "k must be"),
        ({"epsilon": 1.0, "delta": 1e-5, "k": 2.5}, ValidationError, "k must be"),
        ({"epsilon": 1.0, "delta": 1e-5, "k": 3, "linf": 0.0}, ValidationError, "linf"),
        ({"epsilon": 1.0, "delta": 1e-5, "k": 3, "objective": "x"}, UnsupportedError, "objective"),
        ({"epsilon": 1.0, "delta": 1e-5, "k": 3, "sigma": 1.0}, ValidationError, "sigma_min"),
    ],
)
def test_calibrate_bad_input(kwargs: dict, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        calibrate(**kwargs)


def test_accounting_bad_input() -> None:
    with pytest.raises(ValidationError, match="sigma"):
        delta_exact(1.0, sigma=0.0, tau=3.0, k=2)
    with pytest.raises(ValidationError, match="k must be"):
        delta_exact(1.0, sigma=1.0, tau=3.0, k=0)
    with pytest.raises(ValidationError, match="delta"):
        epsilon_exact(1.5, sigma=1.0, tau=3.0, k=2)
    with pytest.raises(ValidationError, match="NaN"):
        delta_exact(float("nan"), sigma=1.0, tau=3.0, k=2)


# ---------------------------------------------------------------- properties (hypothesis)

configs = st.tuples(
    st.integers(1, 300),  # k
    st.floats(0.05, 100.0),  # sigma
    st.floats(-1.0, 6.0),  # (tau - 1) / sigma
    st.floats(1e-3, 20.0),  # eps
)


@settings(max_examples=150, deadline=None)
@given(configs)
def test_exact_le_additive_le_twice_exact(cfg: tuple[int, float, float, float]) -> None:
    k, s, z, e = cfg
    tau = 1 + z * s
    ex = float(delta_exact(e, sigma=s, tau=tau, k=k))
    add = float(delta_additive(e, sigma=s, tau=tau, k=k))
    assert ex <= add * (1 + 1e-12) + 1e-300
    if add < 1.0:
        assert add <= 2 * ex * (1 + 1e-12) + 1e-300
    # numerically the max sits at the endpoints (A.3)
    t1 = -math.expm1(k * norm.logcdf(z))
    endpoint = max(float(delta_gaussian(e, math.sqrt(k) / s)), t1)
    assert ex == pytest.approx(min(endpoint, 1.0), rel=1e-9, abs=1e-300)


@settings(max_examples=100, deadline=None)
@given(configs, st.floats(1.0001, 3.0))
def test_monotone_in_eps_tau_and_sigma_at_fixed_z(
    cfg: tuple[int, float, float, float], f: float
) -> None:
    """Non-increasing in ε and τ; in σ at a fixed standardised threshold (τ−Δ∞)/σ.

    At fixed τ, δ is *not* monotone in σ (the Gaussian term falls while the leak
    term rises, note A.5 / D.1), so monotonicity in σ is tested with τ − Δ∞ = zσ.
    """
    k, s, z, e = cfg
    tau = 1 + z * s
    d = float(delta_exact(e, sigma=s, tau=tau, k=k))
    assert float(delta_exact(e * f, sigma=s, tau=tau, k=k)) <= d * (1 + 1e-12) + 1e-300
    assert float(delta_exact(e, sigma=s, tau=tau + f, k=k)) <= d * (1 + 1e-12) + 1e-300
    assert float(delta_exact(e, sigma=s * f, tau=1 + z * s * f, k=k)) <= d * (1 + 1e-12) + 1e-300


@settings(max_examples=60, deadline=None)
@given(
    st.floats(0.01, 10.0),
    st.floats(-20.0, -1.0).map(lambda x: 10.0**x),
    st.integers(1, 5000),
)
def test_calibrate_is_tight(eps: float, delta: float, k: int) -> None:
    p = calibrate(eps, delta, k=k)
    d = p.delta_exact()
    assert d <= delta
    assert d >= delta * (1 - 1e-9)
