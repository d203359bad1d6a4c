"""Tests for tessera.metrics.distances: exact references first, then bad input."""

from __future__ import annotations

import itertools
import subprocess
import sys

import numpy as np
import pytest

from tessera.errors import NonFiniteError, ShapeError, ValidationError
from tessera.metrics import (
    energy_distance,
    mmd_rbf,
    nearest_distance,
    sliced_w2,
    tvd,
    w2_exact,
)

# float64 throughout: sums of O(n^2) terms of size O(1) agree to ~1e-14.
RTOL = 1e-12


# ---------------------------------------------------------------- references
def w2_1d_sorted(a: np.ndarray, b: np.ndarray) -> float:
    """Closed form for equal-size 1-D laws: match the order statistics."""
    return float(np.sqrt(np.mean((np.sort(a) - np.sort(b)) ** 2)))


def w2_brute_force(x: np.ndarray, y: np.ndarray) -> float:
    """Minimum over all n! permutations of the mean squared matched distance."""
    n = x.shape[0]
    cost = ((x[:, None, :] - y[None, :, :]) ** 2).sum(-1)  # (n, n)
    perms = np.array(list(itertools.permutations(range(n))))  # (n!, n)
    return float(np.sqrt(cost[np.arange(n), perms].sum(axis=1).min() / n))


def dist_loop(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.sqrt(sum((ai - bi) ** 2 for ai, bi in zip(a, b, strict=True))))


def mmd_loop(x: np.ndarray, y: np.ndarray, h: float | None) -> float:
    """Direct O(n^2) loops over the definition of the unbiased MMD^2 (Gretton 2012, eq. 3)."""
    if h is None:
        pooled = list(x) + list(y)
        pairs = [
            dist_loop(pooled[i], pooled[j])
            for i in range(len(pooled))
            for j in range(i + 1, len(pooled))
        ]
        h = float(np.median(pairs))

    def k(a, b):
        return np.exp(-(dist_loop(a, b) ** 2) / (2 * h * h))

    n, m = len(x), len(y)
    kxx = sum(k(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    kyy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    kxy = sum(k(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    return float(kxx + kyy - 2 * kxy)


def energy_loop(x: np.ndarray, y: np.ndarray) -> float:
    n, m = len(x), len(y)
    exy = sum(dist_loop(x[i], y[j]) for i in range(n) for j in range(m)) / (n * m)
    exx = sum(dist_loop(x[i], x[j]) for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    eyy = sum(dist_loop(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    return float(2 * exy - exx - eyy)


# ---------------------------------------------------------------- w2_exact
def test_w2_exact_1d_equals_sorted_matching(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=50)
    y = rng.exponential(size=50) + 0.5
    got = w2_exact(x[:, None], y[:, None])
    assert got == pytest.approx(w2_1d_sorted(x, y), rel=RTOL)


def test_w2_exact_of_a_permuted_copy_is_zero(seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(40, 3))
    assert w2_exact(x, x[rng.permutation(40)]) == 0.0


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
@pytest.mark.parametrize("d", [1, 2, 3])
def test_w2_exact_equals_brute_force_over_permutations(seed, n, d):
    rng = np.random.default_rng([seed, n, d])
    x = rng.normal(size=(n, d))
    y = rng.normal(size=(n, d)) * 2.0 + 0.3
    assert w2_exact(x, y) == pytest.approx(w2_brute_force(x, y), rel=RTOL)


def test_w2_exact_translation_gives_norm_of_shift(seed):
    # sum_i |x_i - x_s(i) - c|^2 = sum_i |x_i - x_s(i)|^2 + n |c|^2, minimised by s = id.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(30, 4))
    c = np.array([0.5, -1.0, 2.0, 0.25])
    assert w2_exact(x, x + c) == pytest.approx(np.linalg.norm(c), rel=RTOL)
    assert w2_exact(x + c, x) == pytest.approx(np.linalg.norm(c), rel=RTOL)


def test_w2_exact_returns_python_float_and_accepts_torch(seed):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(10, 2)), rng.normal(size=(10, 2))
    got = w2_exact(torch.tensor(x, requires_grad=True), torch.tensor(y, dtype=torch.float32))
    assert type(got) is float
    assert got == pytest.approx(w2_exact(x, y.astype(np.float32)), rel=RTOL)
    # bfloat16 has no NumPy dtype; it is widened to float64 first.
    ones = torch.ones(3, 2, dtype=torch.bfloat16)
    assert w2_exact(ones, torch.zeros(3, 2)) == pytest.approx(np.sqrt(2.0), rel=RTOL)


def test_w2_exact_bad_input():
    x = np.zeros((5, 2))
    with pytest.raises(ShapeError, match=r"x must have 2 dimension.*got shape \(5,\)"):
        w2_exact(np.zeros(5), x)
    with pytest.raises(ShapeError, match=r"y must have 2 dimension.*got shape \(5, 2, 1\)"):
        w2_exact(x, np.zeros((5, 2, 1)))
    with pytest.raises(ShapeError, match=r"same number of features.*\(5, 2\).*\(5, 3\)"):
        w2_exact(x, np.zeros((5, 3)))
    with pytest.raises(ShapeError, match=r"n >= 1.*got shape \(0, 2\)"):
        w2_exact(np.zeros((0, 2)), np.zeros((0, 2)))
    with pytest.raises(NonFiniteError, match="y contains 5 NaN"):
        w2_exact(x, np.column_stack([np.zeros(5), np.full(5, np.nan)]))
    bad = x.copy()
    bad[2, 1] = np.inf
    with pytest.raises(NonFiniteError, match="x contains 1 NaN or infinite"):
        w2_exact(bad, x)
    with pytest.raises(ValidationError, match=r"equal sample sizes.*5.*4.*sliced_w2"):
        w2_exact(x, np.zeros((4, 2)))
    with pytest.raises(ValidationError, match=r"n=5.*max_n=4.*O\(n\^3\).*sliced_w2"):
        w2_exact(x, x, max_n=4)
    with pytest.raises(ValidationError, match="max_n must be an integer >= 1, got 0"):
        w2_exact(x, x, max_n=0)
    with pytest.raises(ValidationError, match="x must be a numeric array"):
        w2_exact([["a", "b"]], [[0.0, 1.0]])


# ---------------------------------------------------------------- sliced_w2
def test_sliced_w2_in_1d_is_exact_w2(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(60, 1)), rng.gamma(2.0, size=(60, 1))
    exact = w2_1d_sorted(x[:, 0], y[:, 0])
    assert sliced_w2(x, y, n_projections=7, rng=seed) == pytest.approx(exact, rel=RTOL)


@pytest.mark.parametrize(("n", "m"), [(3, 5), (4, 6), (7, 2), (1, 9)])
def test_sliced_w2_unequal_sizes_equal_replicated_exact_w2(seed, n, m):
    # Repeating each of the n points m times (and each of the m points n times) leaves
    # the empirical laws unchanged and makes the sizes equal, so w2_exact is a reference.
    rng = np.random.default_rng([seed, n, m])
    x, y = rng.normal(size=(n, 1)), rng.normal(size=(m, 1)) + 1.0
    exact = w2_exact(np.repeat(x, m, axis=0), np.repeat(y, n, axis=0))
    assert sliced_w2(x, y, n_projections=3, rng=seed) == pytest.approx(exact, rel=RTOL)


def test_sliced_w2_unequal_sizes_doctest_value():
    x = np.array([[0.0], [1.0]])
    y = np.array([[2.0], [2.5], [3.0], [3.5]])
    # Quantile functions: x = 0 on (0, 1/2], 1 on (1/2, 1]; y steps every 1/4.
    expected = np.sqrt(0.25 * (2.0**2 + 2.5**2 + 2.0**2 + 2.5**2))
    assert sliced_w2(x, y, rng=0) == pytest.approx(expected, rel=RTOL)


def test_sliced_w2_never_exceeds_exact_w2(seed):
    # Projection onto a unit vector is 1-Lipschitz, so every slice has W2 <= W2(x, y).
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(80, 3))
    y = rng.normal(size=(80, 3)) @ np.diag([3.0, 0.5, 1.0]) + 1.0
    assert sliced_w2(x, y, n_projections=500, rng=seed) <= w2_exact(x, y) * (1 + 1e-12)


def test_sliced_w2_translation_matches_sphere_average(seed):
    # For y = x + c every slice has W2^2 = (theta . c)^2 exactly, and for theta uniform
    # on the sphere in d = 2, E[(theta . c)^2] = |c|^2 / 2 with sd(theta_1^2) = 0.354.
    # With L = 4096 the Monte Carlo sd of the mean is 0.0055, i.e. 1.1 % of 0.5; the
    # tolerance of 7 % is 6 sd, so a seed sweep fails with probability ~1e-9.
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(50, 2))
    c = np.array([0.6, -0.8])  # |c| = 1
    got = sliced_w2(x, x + c, n_projections=4096, rng=seed)
    assert got**2 == pytest.approx(0.5, rel=0.07)


def test_sliced_w2_is_reproducible_with_seed(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(20, 5)), rng.normal(size=(30, 5))
    assert sliced_w2(x, y, rng=seed) == sliced_w2(x, y, rng=seed)
    assert sliced_w2(x, y, rng=seed) != sliced_w2(x, y, rng=seed + 1)


def test_sliced_w2_bad_input():
    x = np.zeros((5, 2))
    with pytest.raises(ShapeError, match=r"x must have 2 dimension.*got shape \(5,\)"):
        sliced_w2(np.zeros(5), x)
    with pytest.raises(ShapeError, match="same number of features"):
        sliced_w2(x, np.zeros((6, 3)))
    with pytest.raises(NonFiniteError, match="y contains 10 NaN"):
        sliced_w2(x, np.full((5, 2), np.nan))
    with pytest.raises(ValidationError, match="n_projections must be an integer >= 1, got 0"):
        sliced_w2(x, x, n_projections=0)
    with pytest.raises(ValidationError, match="rng must be None, an int"):
        sliced_w2(x, x, rng="zero")


# ---------------------------------------------------------------- mmd_rbf
@pytest.mark.parametrize("bandwidth", [None, 0.7, 3.0])
def test_mmd_rbf_equals_direct_loops(seed, bandwidth):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(7, 2)), rng.normal(size=(5, 2)) + 0.5
    assert mmd_rbf(x, y, bandwidth=bandwidth) == pytest.approx(
        mmd_loop(x, y, bandwidth), rel=RTOL, abs=1e-14
    )


def test_mmd_rbf_blockwise_sum_equals_full_matrix(seed):
    # n > 1024 exercises the row-block summation; the reference builds the full matrices.
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(1500, 2)), rng.normal(size=(1100, 2)) + 0.2
    h = 0.9

    def gram(a, b):
        return np.exp(-((a[:, None, :] - b[None, :, :]) ** 2).sum(-1) / (2 * h * h))

    n, m = len(x), len(y)
    ref = (
        (gram(x, x).sum() - n) / (n * (n - 1))
        + (gram(y, y).sum() - m) / (m * (m - 1))
        - 2 * gram(x, y).mean()
    )
    assert mmd_rbf(x, y, bandwidth=h) == pytest.approx(ref, rel=1e-9, abs=1e-13)


def test_mmd_rbf_near_zero_for_iid_and_large_for_shift(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    same = mmd_rbf(x, y)
    shifted = mmd_rbf(x, y + 3.0)
    # Under H0 the U-statistic has mean 0 and sd O(1/n) ~ 3e-3 here.
    assert abs(same) < 0.02
    assert shifted > 0.5


def test_mmd_rbf_bad_input():
    x = np.zeros((5, 2))
    with pytest.raises(ShapeError, match=r"n >= 2 points.*got shape \(1, 2\)"):
        mmd_rbf(np.zeros((1, 2)), x)
    with pytest.raises(ShapeError, match=r"x must have 2 dimension.*\(5, 2, 2\)"):
        mmd_rbf(np.zeros((5, 2, 2)), x)
    with pytest.raises(ShapeError, match="same number of features"):
        mmd_rbf(x, np.zeros((5, 1)))
    with pytest.raises(NonFiniteError, match="x contains 1 NaN"):
        mmd_rbf(np.vstack([x, [[np.nan, 0.0]]]), x)
    with pytest.raises(ValidationError, match=r"bandwidth must be a finite number > 0, got 0\.0"):
        mmd_rbf(x, x + 1, bandwidth=0.0)
    with pytest.raises(ValidationError, match="median heuristic gave bandwidth 0"):
        mmd_rbf(x, x)


# ---------------------------------------------------------------- energy_distance
def test_energy_distance_equals_direct_loops(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(8, 3)), rng.standard_t(3, size=(6, 3))
    assert energy_distance(x, y) == pytest.approx(energy_loop(x, y), rel=RTOL, abs=1e-14)


def test_energy_distance_small_exact_value():
    x = np.array([[0.0], [1.0]])
    # E|X-Y| = (2 + 3 + 1 + 2) / 4 = 2, E|X-X'| = E|Y-Y'| = 1.
    assert energy_distance(x, x + 2.0) == 2.0


def test_energy_distance_near_zero_for_iid_and_large_for_shift(seed):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(300, 2)), rng.normal(size=(300, 2))
    # The unbiased statistic has mean 0 under H0 and sd O(1/n); a shift of 3 gives ~ 3.
    assert abs(energy_distance(x, y)) < 0.05
    assert energy_distance(x, y + 3.0) > 2.0


def test_energy_distance_bad_input():
    x = np.zeros((5, 2))
    with pytest.raises(ShapeError, match=r"y must have shape \(n, d\) with n >= 2"):
        energy_distance(x, np.zeros((1, 2)))
    with pytest.raises(ShapeError, match=r"x must have 2 dimension"):
        energy_distance(np.zeros(5), x)
    with pytest.raises(ShapeError, match="same number of features"):
        energy_distance(x, np.zeros((5, 4)))
    with pytest.raises(NonFiniteError, match="y contains 1 NaN or infinite"):
        energy_distance(x, np.vstack([x, [[-np.inf, 0.0]]]))


# ---------------------------------------------------------------- tvd
@pytest.mark.parametrize(
    ("p", "q", "expected"),
    [
        ([1, 0], [0, 1], 1.0),
        ([2, 2], [1, 1], 0.0),
        ([1, 1, 0], [0, 1, 1], 0.5),
        ([0.5, 0.5], [0.25, 0.75], 0.25),
        ([3, 1, 0, 0], [1, 1, 1, 1], 0.5),  # |.75-.25| + 0 + .25 + .25 = 1, halved
    ],
)
def test_tvd_exact_values(p, q, expected):
    got = tvd(np.array(p, dtype=float), np.array(q, dtype=float))
    assert type(got) is float
    assert got == pytest.approx(expected, abs=1e-15)
    assert tvd(q, p) == pytest.approx(expected, abs=1e-15)


def test_tvd_bad_input():
    with pytest.raises(ShapeError, match=r"p must have 1 dimension.*got shape \(2, 2\)"):
        tvd(np.ones((2, 2)), np.ones(4))
    with pytest.raises(ShapeError, match="same length, got 3 and 4"):
        tvd(np.ones(3), np.ones(4))
    with pytest.raises(ValidationError, match=r"q must be non-negative, got 1 negative"):
        tvd([1, 1], [2, -1])
    with pytest.raises(ValidationError, match=r"p must have a positive sum, got 0\.0"):
        tvd([0, 0], [1, 1])
    with pytest.raises(NonFiniteError, match="p contains 1 NaN"):
        tvd([np.nan, 1.0], [1, 1])


# ---------------------------------------------------------------- packaging
@pytest.mark.parametrize("chunk", [1, 7, 2048])
def test_nearest_distance_equals_brute_force(seed, chunk):
    rng = np.random.default_rng(seed)
    x, ref = rng.normal(size=(23, 2, 3)), rng.normal(size=(31, 6))
    from scipy.spatial.distance import cdist

    expect = cdist(x.reshape(23, -1), ref).min(1)
    np.testing.assert_allclose(nearest_distance(x, ref, chunk=chunk), expect, rtol=1e-10)
    # a sample that is in the reference set is at distance 0
    assert nearest_distance(ref[:3], ref).max() < 1e-7


def test_nearest_distance_bad_input():
    with pytest.raises(ShapeError, match="same size per sample"):
        nearest_distance(np.zeros((2, 3)), np.zeros((2, 4)))
    with pytest.raises(NonFiniteError):
        nearest_distance(np.full((2, 3), np.nan), np.zeros((2, 3)))
    with pytest.raises(ValidationError, match="chunk"):
        nearest_distance(np.zeros((2, 3)), np.zeros((2, 3)), chunk=0)


def test_metrics_import_pulls_in_neither_torch_nor_sklearn():
    code = (
        "import sys, tessera.metrics, tessera.metrics.distances, tessera.metrics.images; "
        "print('torch' in sys.modules, 'sklearn' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
