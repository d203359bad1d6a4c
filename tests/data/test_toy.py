from __future__ import annotations

import numpy as np
import pytest

from tessera.data import TOY2D_NAMES, eight_gaussians_params, toy2d
from tessera.errors import UnsupportedError, ValidationError


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_shape_dtype_and_range(name: str, seed: int) -> None:
    x = toy2d(name, 2000, rng=seed)
    assert x.shape == (2000, 2)
    assert x.dtype == np.float64
    assert np.isfinite(x).all()
    # Documented range "about [-3, 3]": the largest centre/radius is 2.8 and the noise
    # is at most 0.1 sd, so 3.5 is > 7 sd away for every set.
    assert np.abs(x).max() < 3.5
    # Roughly centred: every set is symmetric about 0 by construction; with n=2000 and
    # per-coordinate sd <= 1.5 the standard error is 0.034, so 0.2 is ~6 se.
    assert np.abs(x.mean(axis=0)).max() < 0.2


@pytest.mark.parametrize("name", TOY2D_NAMES)
def test_reproducible_with_same_seed(name: str, seed: int) -> None:
    a = toy2d(name, 500, rng=seed)
    b = toy2d(name, 500, rng=np.random.default_rng(seed))
    c = toy2d(name, 500, rng=seed + 1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_checkerboard_only_fills_black_cells(seed: int) -> None:
    x = toy2d("checkerboard", 5000, rng=seed)
    assert (x >= -2).all() and (x <= 2).all()
    cell_sum = np.floor(x[:, 0]) + np.floor(x[:, 1])
    assert (np.mod(cell_sum, 2) == 0).all()
    # all 8 black cells are used
    cells = {(int(np.floor(a)), int(np.floor(b))) for a, b in x}
    assert len(cells) == 8


def test_eight_gaussians_params_shapes() -> None:
    w, mu, cov = eight_gaussians_params()
    assert w.shape == (8,) and mu.shape == (8, 2) and cov.shape == (8, 2, 2)
    np.testing.assert_allclose(w.sum(), 1.0, rtol=1e-15)
    np.testing.assert_allclose(np.linalg.norm(mu, axis=1), 2.0, rtol=1e-14)
    angles = np.mod(np.arctan2(mu[:, 1], mu[:, 0]), 2 * np.pi)
    np.testing.assert_allclose(angles, 2 * np.pi * np.arange(8) / 8, atol=1e-12)
    np.testing.assert_array_equal(cov, np.broadcast_to(0.01 * np.eye(2), (8, 2, 2)))
    # fresh arrays: mutating one call's output does not leak into the next
    mu[0] = 99.0
    assert eight_gaussians_params()[1][0, 0] == 2.0


@pytest.mark.statistical
def test_eight_gaussians_matches_params(seed: int) -> None:
    """Per-cluster sample means, covariances and counts match eight_gaussians_params.

    H0: toy2d("eight_gaussians") samples the law of eight_gaussians_params().
    Points are assigned to the nearest centre; neighbouring centres are
    2*2*sin(pi/8) = 1.53 apart = 15 sd, so misassignment has probability < 1e-13.
    With n = 80 000 each cluster has n_k ~ 10 000 points. Test: every statistic is
    within z = 5 standard errors of its H0 value (two-sided p = 5.7e-7 per statistic;
    56 statistics -> family-wise alpha < 4e-5 <= 1e-4).
      mean coordinate: se = 0.1/sqrt(n_k) = 1e-3
      variance: se = 0.01*sqrt(2/(n_k-1)) = 1.4e-4;  covariance: se = 0.01/sqrt(n_k) = 1e-4
      count: se = sqrt(n p (1-p)) with p = 1/8, = 93.5
    Power: the smallest bugs worth catching (a centre off by 0.015, sd 0.11 instead of
    0.1 -> variance off by 0.0021, or a weight of 0.135 instead of 0.125 -> count off
    by 800) are >= 8.5 se away from H0, so each is detected with power > 0.999.
    """
    n, z = 80_000, 5.0
    w, mu, cov = eight_gaussians_params()
    x = toy2d("eight_gaussians", n, rng=seed)
    k = np.argmin(((x[:, None, :] - mu[None]) ** 2).sum(-1), axis=1)
    counts = np.bincount(k, minlength=8)
    assert np.all(np.abs(counts - n * w) <= z * np.sqrt(n * w * (1 - w)))
    for j in range(8):
        xj = x[k == j]
        nj = len(xj)
        sd = np.sqrt(cov[j, 0, 0])
        assert np.all(np.abs(xj.mean(axis=0) - mu[j]) <= z * sd / np.sqrt(nj))
        c = np.cov(xj, rowvar=False)
        var_se = cov[j, 0, 0] * np.sqrt(2.0 / (nj - 1))
        assert np.all(np.abs(np.diag(c) - np.diag(cov[j])) <= z * var_se)
        assert abs(c[0, 1] - cov[j, 0, 1]) <= z * cov[j, 0, 0] / np.sqrt(nj)


def test_unknown_name_lists_the_names() -> None:
    with pytest.raises(UnsupportedError) as info:
        toy2d("swiss_roll", 10, rng=0)
    msg = str(info.value)
    assert "swiss_roll" in msg
    for name in TOY2D_NAMES:
        assert name in msg


@pytest.mark.parametrize("n", [0, -3, 2.5, True, "10", None])
def test_bad_n_raises(n: object) -> None:
    with pytest.raises(ValidationError, match="n must be an integer >= 1"):
        toy2d("moons", n, rng=0)  # type: ignore[arg-type]


def test_legacy_random_state_rejected() -> None:
    with pytest.raises(ValidationError, match="RandomState"):
        toy2d("moons", 10, rng=np.random.RandomState(0))  # type: ignore[arg-type]
