"""Exact references: enumerate all 2^m assignments of tiny bipartite graphs.

Acceptance 1: ERL and pre-period CA-ERL are exactly unbiased under the linear
exposure-response model, and the analytic design variance (linear + quadratic + cross
terms) equals the enumerated variance to 1e-10. The in-sample and cross-fitted CA-ERL
(OLS refitted at every assignment, divided by 1 - B) are exactly unbiased when the slopes
are equal, and their refit-aware variance equals the enumerated one to 1e-10.
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
            rc = ca_erl(e, asg, o, covariates=["pre"], adjustment="pre_period", engine=engine)
        np.testing.assert_allclose(rc.estimate, tau_ca[k], rtol=1e-10, atol=1e-12)


def _insample_enumerate(W, p, a, b, X, fold=None):
    """Raw in-sample (or cross-fitted) CA-ERL at every assignment, OLS refitted each time."""
    n, m = W.shape
    Z = np.array(list(itertools.product((0.0, 1.0), repeat=m)))  # (2^m, m)
    prob = np.prod(np.where(Z == 1, p, 1 - p), axis=1)
    mu = W @ p
    s2 = (W * W) @ (p * (1 - p))
    x = Z @ W.T  # (2^m, n)
    y = a + b * x
    D = np.column_stack([np.ones(n), X])
    fitted = np.empty_like(y)
    for k in np.unique(fold) if fold is not None else [None]:
        rows = np.ones(n, bool) if k is None else fold != k
        out = np.ones(n, bool) if k is None else fold == k
        beta, *_ = np.linalg.lstsq(D[rows], y[:, rows].T, rcond=None)  # (q+1, 2^m)
        fitted[:, out] = (D[out] @ beta).T
    raw = np.mean((y - fitted) * (x - mu) / s2, axis=1)
    return prob, raw, Z, x


@pytest.mark.parametrize("cross_fit", [False, True])
@pytest.mark.parametrize(("n", "m"), [(30, 8), (40, 11)])
def test_in_sample_ca_erl_exact_by_enumeration(seed: int, n: int, m: int, cross_fit: bool) -> None:
    rng = np.random.default_rng([seed, n, m, cross_fit])
    W = _graph(rng, n, m)
    p = rng.uniform(0.3, 0.7, size=m)
    a = rng.normal(10, 3, size=n)
    X = a + rng.normal(0, 1, size=n)
    fold = np.arange(n) % 3 if cross_fit else None
    # the design bias factor: 1 - E[raw] under a = 0, b = 1 (enumerated)
    prob, raw1, _, _ = _insample_enumerate(W, p, np.zeros(n), np.ones(n), X, fold)
    B = 1.0 - float(prob @ raw1)
    assert 0 < B < 0.5
    # equal slopes: the corrected estimator is exactly unbiased
    prob, raw, _, _ = _insample_enumerate(W, p, a, np.full(n, 2.5), X, fold)
    np.testing.assert_allclose(prob @ raw / (1 - B), 2.5, rtol=1e-10)
    # unequal slopes: mean and variance equal the refit-aware formula
    b = rng.normal(2, 1, size=n)
    prob, raw, _, _ = _insample_enumerate(W, p, a, b, X, fold)
    est = raw / (1 - B)
    mean = float(prob @ est)
    var = float(prob @ (est - mean) ** 2)
    dv = exact_design_variance(W, p, a, b, covariates=X, fold=fold)
    np.testing.assert_allclose(dv.bias_factor, B, rtol=1e-10)
    np.testing.assert_allclose(dv.mean, mean, rtol=1e-10)
    np.testing.assert_allclose(dv.total, var, rtol=1e-10)
    parts = dv.linear + dv.quadratic_diagonal + dv.quadratic_offdiagonal + dv.cross
    np.testing.assert_allclose(parts, dv.total, rtol=1e-12)


@pytest.mark.parametrize("engine", ["numpy", "duckdb"])
def test_in_sample_api_matches_enumeration(seed: int, engine: str) -> None:
    """ca_erl(adjustment="in_sample") reports raw / (1 - B) at every assignment, B as
    enumerated, and an SE equal to the refit-aware formula at the imputed schedule."""
    rng = np.random.default_rng(seed)
    n, m = 30, 8
    W = _graph(rng, n, m)
    p = rng.uniform(0.3, 0.7, size=m)
    a, b = rng.normal(5, 1, size=n), rng.normal(2, 0.5, size=n)
    xpre = a + rng.normal(0, 0.3, size=n)
    prob, raw1, _, _ = _insample_enumerate(W, p, np.zeros(n), np.ones(n), xpre)
    B = 1.0 - float(prob @ raw1)
    _, raw, Z, x = _insample_enumerate(W, p, a, b, xpre)
    for k in range(0, len(Z), 37):
        y = a + b * x[k]
        e, asg, o = _tables(W, p, Z[k], y, xpre)
        with pytest.warns(SparsityWarning):
            r = ca_erl(e, asg, o, covariates=["pre"], engine=engine)
        assert r.method == "ca_erl[in_sample]"
        np.testing.assert_allclose(r.diagnostics["adjustment"]["design_bias_factor"], B, rtol=1e-10)
        np.testing.assert_allclose(r.estimate, raw[k] / (1 - B), rtol=1e-10, atol=1e-12)
        t = r.estimate
        dv = exact_design_variance(W, p, y - t * x[k], np.full(n, t), covariates=xpre)
        np.testing.assert_allclose(r.se**2, dv.total, rtol=1e-9, atol=1e-14)
