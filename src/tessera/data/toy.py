"""Two-dimensional toy distributions for flow-matching experiments (NumPy only).

Every set is generated from scratch from a NumPy ``Generator``; nothing is downloaded
and torch is never imported. All sets are roughly centred at the origin with values in
about ``[-3, 3]``.

Example:
    >>> x = toy2d("moons", 100, rng=0)
    >>> x.shape, x.dtype
    ((100, 2), dtype('float64'))
"""

from __future__ import annotations

import numpy as np

from tessera._rng import as_rng
from tessera._validate import check_positive_int
from tessera.errors import UnsupportedError

__all__ = ["TOY2D_NAMES", "eight_gaussians_params", "toy2d"]

TOY2D_NAMES = ("eight_gaussians", "moons", "checkerboard", "spirals")

# eight_gaussians: the law is fixed by these three numbers (see eight_gaussians_params).
_EIGHT_RADIUS = 2.0
_EIGHT_VAR = 0.01  # sd 0.1; stored as the variance so covs are exactly 0.01 * I
_EIGHT_K = 8

# moons: two interleaved unit half-circles (the sklearn ``make_moons`` shape), shifted
# so the bounding box is centred, scaled by 1.5 and jittered with N(0, 0.1^2) noise.
_MOONS_SCALE = 1.5
_MOONS_NOISE = 0.1

# spirals: two arms r(θ) = θ for θ in [0, 3π], the second arm the first rotated by π,
# jittered with N(0, 0.25^2) noise and divided by 3.4 so the arms end near radius 2.8.
_SPIRAL_TURN = 3.0 * np.pi
_SPIRAL_NOISE = 0.25
_SPIRAL_SCALE = 3.4


def eight_gaussians_params() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    r"""Return the exact mixture law that ``toy2d("eight_gaussians")`` samples from.

    The law is an equal-weight mixture of 8 isotropic Gaussians with centres at
    radius 2 and angles :math:`2\pi k / 8`, :math:`k = 0, \dots, 7`, each with
    standard deviation 0.1.

    Returns:
        A tuple ``(weights, means, covs)``: ``weights`` of shape (8,), float64,
        summing to 1; ``means`` of shape (8, 2), float64; ``covs`` of shape
        (8, 2, 2), float64, each equal to ``0.01 * I``. Fresh arrays on every call.

    Example:
        >>> w, mu, cov = eight_gaussians_params()
        >>> w.shape, mu.shape, cov.shape
        ((8,), (8, 2), (8, 2, 2))
        >>> float(np.round(np.linalg.norm(mu[3]), 12)), float(cov[0, 0, 0])
        (2.0, 0.01)
    """
    angles = 2.0 * np.pi * np.arange(_EIGHT_K) / _EIGHT_K
    means = _EIGHT_RADIUS * np.stack([np.cos(angles), np.sin(angles)], axis=1)  # (8, 2)
    weights = np.full(_EIGHT_K, 1.0 / _EIGHT_K)
    covs = np.broadcast_to(_EIGHT_VAR * np.eye(2), (_EIGHT_K, 2, 2)).copy()  # (8, 2, 2)
    return weights, means, covs


def _eight_gaussians(n: int, rng: np.random.Generator) -> np.ndarray:
    weights, means, covs = eight_gaussians_params()
    k = rng.choice(_EIGHT_K, size=n, p=weights)
    sd = np.sqrt(covs[0, 0, 0])
    return means[k] + sd * rng.standard_normal((n, 2))


def _moons(n: int, rng: np.random.Generator) -> np.ndarray:
    upper = rng.random(n) < 0.5
    theta = np.pi * rng.random(n)
    x = np.where(upper, np.cos(theta), 1.0 - np.cos(theta))
    y = np.where(upper, np.sin(theta), 0.5 - np.sin(theta))
    pts = np.stack([x - 0.5, y - 0.25], axis=1)  # (n, 2), bounding box [-1.5, 1.5] x [-.75, .75]
    return _MOONS_SCALE * pts + _MOONS_NOISE * rng.standard_normal((n, 2))


def _checkerboard(n: int, rng: np.random.Generator) -> np.ndarray:
    # 4 x 4 board of unit cells on [-2, 2]^2; the 8 cells with floor(x) + floor(y)
    # even are filled uniformly.
    x = rng.uniform(-2.0, 2.0, size=n)
    col = np.floor(x)
    row = -2.0 + 2.0 * rng.integers(0, 2, size=n) + np.mod(col, 2.0)
    y = row + rng.random(n)
    return np.stack([x, y], axis=1)  # (n, 2)


def _spirals(n: int, rng: np.random.Generator) -> np.ndarray:
    theta = np.sqrt(rng.random(n)) * _SPIRAL_TURN
    arm = np.where(rng.random(n) < 0.5, 1.0, -1.0)
    pts = arm[:, None] * np.stack([-np.cos(theta) * theta, np.sin(theta) * theta], axis=1)
    pts = pts + _SPIRAL_NOISE * rng.standard_normal((n, 2))  # (n, 2)
    return pts / _SPIRAL_SCALE


_GENERATORS = {
    "eight_gaussians": _eight_gaussians,
    "moons": _moons,
    "checkerboard": _checkerboard,
    "spirals": _spirals,
}


def toy2d(
    name: str,
    n: int,
    rng: int | np.random.Generator | np.random.SeedSequence | None = None,
) -> np.ndarray:
    r"""Draw ``n`` points from a named two-dimensional toy distribution.

    The sets (all roughly centred, values within about ``[-3, 3]``):

    - ``"eight_gaussians"``: equal-weight mixture of 8 isotropic Gaussians, centres at
      radius 2 and angles :math:`2\pi k/8`, sd 0.1 (exact law in
      :func:`eight_gaussians_params`).
    - ``"moons"``: two interleaved half circles, scaled by 1.5, noise sd 0.1.
    - ``"checkerboard"``: uniform on the 8 "black" unit cells of a 4 x 4 board
      covering ``[-2, 2]^2``.
    - ``"spirals"``: two interleaved spiral arms, 1.5 turns each, with noise.

    Args:
        name: one of :data:`TOY2D_NAMES`.
        n: number of points, >= 1.
        rng: seed, ``SeedSequence`` or ``numpy.random.Generator`` (SPEC 7).

    Returns:
        Array of shape (n, 2), float64.

    Raises:
        UnsupportedError: if ``name`` is not in :data:`TOY2D_NAMES`.
        ValidationError: if ``n`` is not an integer >= 1 or ``rng`` has a bad type.

    Example:
        >>> a = toy2d("eight_gaussians", 5, rng=1)
        >>> bool(np.array_equal(a, toy2d("eight_gaussians", 5, rng=1)))
        True
    """
    if name not in _GENERATORS:
        raise UnsupportedError(
            f"name must be one of {', '.join(map(repr, TOY2D_NAMES))}; got {name!r}"
        )
    check_positive_int("n", n)
    gen = as_rng(rng)
    out = _GENERATORS[name](int(n), gen)
    return np.ascontiguousarray(out, dtype=np.float64)
