"""Exact references: enumerate all 2^m assignments of tiny bipartite graphs.

Acceptance 1: ERL and pre-period CA-ERL are exactly unbiased under the linear
exposure-response model, and the analytic design variance (linear + quadratic + cross
terms) equals the enumerated variance to 1e-10.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from tessera.interference.bipartite import (
    SparsityWarning,
    ca_erl,
    erl,
    exact_design_variance,
)


def _graph(rng: np.random.Generator, n: int, m: int, degree: int | None = None) -> np.ndarray:
    """Random (n, m) weights, rows normalised to sum 1, every row with >= 1 edge."""
    W = np.zeros((n, m))
    for i in range(n):
        k = degree if degree is not None else int(rng.integers(1, min(4, m) + 1))
        js = rng.choice(m, size=k, replace=False)
        W[i, js] = rng.uniform(0.2, 1.0, size=k)
    return W / W.sum(axis=1, keepdims=True)


def _enumerate(W: np.ndarray, p: np.ndarray, a: np.ndarray, b: np.ndarray):
    """Mean and variance of ERL over all 2^m assignments, weighted by their probability."""
    _n, m = W.shape
    Z = np.array(list(itertools.product((0.0, 1.0), repeat=m)))  # (2^m, m)
    prob = np.prod(np.where(Z == 1, p, 1 - p), axis=1)  # (2^m,)
    mu = W @ p
    s2 = (W * W) @ (p * (1 - p))
    x = Z @ W.T  # (2^m, n)
    y = a + b * x
    tau = np.mean(y * (x - mu) / s2, axis=1)  # (2^m,)
    mean = float(prob @ tau)
    return mean, float(prob @ (tau - mean) ** 2), tau, Z


@pytest.mark.parametrize(("n", "m"), [(5, 3), (8, 6), (10, 9), (12, 12)])
def test_erl_exactly_unbiased_and_variance_matches_enumeration(seed: int, n: int, m: int) -> None:
    rng = np.random.default_rng([seed, n, m])
    W = _graph(rng, n, m)
    p = rng.uniform(0.2, 0.8, size=m)
    a = rng.normal(10, 3, size=n)
    b = rng.normal(2, 1, size=n)
    mean, var, _, _ = _enumerate(W, p, a, b)
    dv = exact_design_variance(W, p, a, b)
    np.testing.assert_allclose(mean, b.mean(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(dv.mean, b.mean(), rtol=1e-12)
    np.testing.assert_allclose(dv.total, var, rtol=1e-10, atol=1e-12)
    parts = dv.linear + dv.quadratic_diagonal + dv.quadratic_offdiagonal + dv.cross
    np.testing.assert_allclose(parts, dv.total, rtol=1e-12)


def test_quadratic_and_cross_terms_are_needed(seed: int) -> None:
    """With a large common slope the linear term alone is far from the enumerated variance."""
    rng = np.random.default_rng(seed)
    W = _graph(rng, 10, 8)
    p = np.full(8, 0.3)
    a = rng.normal(0, 0.1, size=10)
    b = np.full(10, 20.0)
    _, var, _, _ = _enumerate(W, p, a, b)
    dv = exact_design_variance(W, p, a, b)
    np.testing.assert_allclose(dv.total, var, rtol=1e-10)
    assert abs(dv.linear - var) > 0.1 * var
    assert dv.quadratic_offdiagonal > 0
    assert dv.cross != 0


@pytest.mark.parametrize("m", [4, 10])
def test_pre_period_ca_erl_exactly_unbiased(seed: int, m: int) -> None:
    """Any h fixed before assignment keeps exact unbiasedness; variance matches enumeration."""
    rng = np.random.default_rng([seed, m])
    n = 9
    W = _graph(rng, n, m)
    p = rng.uniform(0.2, 0.8, size=m)
    alpha = rng.normal(10, 3, size=n)
    xpre = alpha + rng.normal(0, 1, size=n)
    b = rng.normal(3, 1, size=n)
    h = 0.5 + 0.9 * xpre
    mean_ca, var_ca, _, _ = _enumerate(W, p, alpha - h, b)
    np.testing.assert_allclose(mean_ca, b.mean(), rtol=1e-10)
    dv = exact_design_variance(W, p, alpha - h, b)
    np.testing.assert_allclose(dv.total, var_ca, rtol=1e-10)
    _, var_erl, _, _ = _enumerate(W, p, alpha, b)
    assert var_ca < var_erl


def test_degree_one_erl_is_horvitz_thompson(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n, m = 12, 5
    W = _graph(rng, n, m, degree=1)
    p = rng.uniform(0.2, 0.8, size=m)
    a, b = rng.normal(size=n), rng.normal(size=n)
    _, var, tau, Z = _enumerate(W, p, a, b)
    x = Z @ W.T
    pi = W @ p
    y = a + b * x
    ht = np.mean(y * x / pi - y * (1 - x) / (1 - pi), axis=1)
    np.testing.assert_allclose(tau, ht, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(exact_design_variance(W, p, a, b).total, var, rtol=1e-10)


def _tables(W: np.ndarray, p: np.ndarray, z: np.ndarray, y: np.ndarray, xpre: np.ndarray):
    ii, jj = np.nonzero(W)
    edges = pd.DataFrame({"analysis_id": ii, "randomization_id": jj, "weight": W[ii, jj]})
    assign = pd.DataFrame({"randomization_id": np.arange(len(p)), "treated": z, "p": p})
    out = pd.DataFrame({"analysis_id": np.arange(len(y)), "outcome": y, "pre": xpre})
    return edges, assign, out


@pytest.mark.parametrize("engine", ["numpy", "duckdb"])
def test_api_matches_arrays_on_every_assignment(seed: int, engine: str) -> None:
    """The engine pipeline reproduces the enumerated estimates, and its exact SE equals the
    array formula evaluated at the imputed schedule (b = τ̂, a = Ỹ - τ̂ x)."""
    rng = np.random.default_rng(seed)
    n, m = 8, 4
    W = _graph(rng, n, m)
    p = rng.uniform(0.3, 0.7, size=m)
    a, b = rng.normal(5, 1, size=n), rng.normal(2, 0.5, size=n)
    xpre = a + rng.normal(0, 0.3, size=n)
    _, _, tau, Z = _enumerate(W, p, a, b)
    _, _, tau_ca, _ = _enumerate(W, p, a - xpre, b)
    for k in range(0, len(Z), 5):
        z = Z[k]
        x = W @ z
        e, asg, o = _tables(W, p, z, a + b * x, xpre)
        with pytest.warns(SparsityWarning):
            r = erl(e, asg, o, engine=engine)
        np.testing.assert_allclose(r.estimate, tau[k], rtol=1e-10, atol=1e-12)
        dv = exact_design_variance(W, p, (a + b * x) - r.estimate * x, np.full(n, r.estimate))
        np.testing.assert_allclose(r.se**2, dv.total, rtol=1e-9, atol=1e-14)
        with pytest.warns(SparsityWarning):
            rc = ca_erl(e, asg, o, covariates=["pre"], engine=engine)
        np.testing.assert_allclose(rc.estimate, tau_ca[k], rtol=1e-10, atol=1e-12)
