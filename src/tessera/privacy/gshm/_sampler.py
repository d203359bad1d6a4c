"""Exact discrete Gaussian sampling (Canonne, Kamath & Steinke, NeurIPS 2020).

Why not ``rng.normal``? Mironov (CCS 2012) showed that floating-point Laplace noise
leaks: the set of doubles ``x + noise`` can reach depends on ``x`` (gaps and rounding
of the float grid, and of ``log`` of a uniform double), so an attacker can sometimes
tell ``x`` from ``x + 1`` with certainty from the low-order bits of one output. The
same holds for float Gaussian samplers (Box–Muller, ziggurat). Here noise is an
*integer* drawn exactly from N_Z(0, σ²), P[Z = z] ∝ exp(−z²/(2σ²)), using only integer
arithmetic on the exact rational σ² (the float σ is converted without rounding) and
uniform integers from a cryptographic source (``secrets.SystemRandom``). Counts are
integers, so ``count + Z`` is exact and so is the comparison with the threshold.

The algorithm is CKS20 Algorithm 3 (discrete Laplace proposals with rejection), with
Bernoulli(exp(−γ)) for rational γ (their Algorithm 1) and geometric sampling
(Algorithm 2). Expected work is O(1) uniform integers per sample.
"""

from __future__ import annotations

import math
import secrets
from fractions import Fraction
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

from tessera._validate import check_positive
from tessera.errors import ValidationError

__all__ = ["IntegerRNG", "discrete_gaussian", "discrete_gaussian_pmf"]


class IntegerRNG(Protocol):
    """Anything with ``randrange(n)`` returning a uniform integer in [0, n).

    ``secrets.SystemRandom()`` (the default, cryptographic) and ``random.Random(seed)``
    (reproducible, for tests only; *not* secure) both qualify.
    """

    def randrange(self, start: int, stop: int | None = ..., step: int = ...) -> int:
        """Uniform integer in ``range(start)`` (or ``range(start, stop)``)."""
        ...


def _bern(num: int, den: int, rng: IntegerRNG) -> bool:
    """Bernoulli(num/den), 0 <= num <= den."""
    return rng.randrange(den) < num


def _bern_exp_le1(num: int, den: int, rng: IntegerRNG) -> bool:
    """Bernoulli(exp(−γ)) for γ = num/den in [0, 1] (CKS Algorithm 1, von Neumann)."""
    k = 1
    while _bern(num, den * k, rng):
        k += 1
    return k % 2 == 1


def _bern_exp(num: int, den: int, rng: IntegerRNG) -> bool:
    """Bernoulli(exp(−γ)) for rational γ = num/den >= 0."""
    while num > den:
        if not _bern_exp_le1(1, 1, rng):
            return False
        num -= den
    return _bern_exp_le1(num, den, rng)


def _geometric_exp_slow(rng: IntegerRNG) -> int:
    """Geometric with success probability 1 − e^{−1}: count of Bernoulli(e^{−1}) ones."""
    k = 0
    while _bern_exp_le1(1, 1, rng):
        k += 1
    return k


def _geometric_exp_fast(s: int, t: int, rng: IntegerRNG) -> int:
    """Geometric(1 − exp(−s/t)) on {0, 1, ...} for integers s, t >= 1 (CKS Alg. 2)."""
    while True:
        u = rng.randrange(t)
        if _bern_exp(u, t, rng):
            break
    v = _geometric_exp_slow(rng)
    return (v * t + u) // s


def _discrete_laplace(t: int, rng: IntegerRNG) -> int:
    """Discrete Laplace with P[Y = y] ∝ exp(−|y|/t), integer t >= 1."""
    while True:
        negative = _bern(1, 2, rng)
        mag = _geometric_exp_fast(1, t, rng)
        if negative and mag == 0:
            continue
        return -mag if negative else mag


def _sample_one(s2n: int, s2d: int, t: int, rng: IntegerRNG) -> int:
    """One draw of N_Z(0, σ²) with σ² = s2n/s2d and proposal scale t (CKS Alg. 3)."""
    while True:
        y = _discrete_laplace(t, rng)
        # bias γ = (|y| − σ²/t)² / (2σ²) = (|y| t s2d − s2n)² / (2 t² s2d s2n)
        a = abs(y) * t * s2d - s2n
        if _bern_exp(a * a, 2 * t * t * s2d * s2n, rng):
            return y


def discrete_gaussian(
    sigma: float, size: int, *, rng: IntegerRNG | None = None
) -> NDArray[np.int64]:
    """Draw exact samples of the discrete Gaussian N_Z(0, σ²).

    Args:
        sigma: σ > 0, the scale parameter (P[z] ∝ exp(−z²/(2σ²))); the float is
            converted to an exact rational, so no rounding enters the sampler.
        size: number of samples (>= 0).
        rng: an object with ``randrange(n)``; default ``secrets.SystemRandom()``
            (cryptographic). Pass ``random.Random(seed)`` for reproducible tests only.

    Returns:
        shape (size,), int64 integers.

    Raises:
        ValidationError: for σ <= 0, a negative size, or an rng without ``randrange``.

    Example:
        >>> import random
        >>> discrete_gaussian(3.0, 5, rng=random.Random(0)).shape
        (5,)
    """
    check_positive("sigma", sigma)
    if isinstance(size, bool) or not isinstance(size, int | np.integer) or size < 0:
        raise ValidationError(f"size must be an integer >= 0, got {size!r}")
    if rng is None:
        rng = secrets.SystemRandom()
    if not callable(getattr(rng, "randrange", None)):
        raise ValidationError(
            f"rng must have randrange(n) (secrets.SystemRandom or random.Random), got "
            f"{type(rng).__name__}; numpy Generators are not accepted for secure noise"
        )
    s2 = Fraction(float(sigma)) ** 2
    s2n, s2d = s2.numerator, s2.denominator
    t = math.isqrt(s2n // s2d) + 1  # floor(σ) + 1
    out = np.empty(int(size), dtype=np.int64)
    for i in range(int(size)):
        out[i] = _sample_one(s2n, s2d, t, rng)
    return out


def discrete_gaussian_pmf(sigma: float, support: NDArray[np.int64]) -> NDArray[np.float64]:
    """The exact pmf of N_Z(0, σ²) on integer points (normaliser summed to 1e-16).

    Args:
        sigma: σ > 0.
        support: integer array of any shape.

    Returns:
        P[Z = z] for each z, float64, same shape as ``support``.

    Raises:
        ValidationError: for σ <= 0.

    Example:
        >>> p = discrete_gaussian_pmf(1.0, np.arange(-30, 31))
        >>> round(float(p.sum()), 12)
        1.0
    """
    check_positive("sigma", sigma)
    half = math.ceil(40.0 * sigma) + 1
    grid = np.arange(-half, half + 1, dtype=np.float64)
    norm = float(np.exp(-(grid**2) / (2.0 * sigma * sigma)).sum())
    z = np.asarray(support, dtype=np.float64)
    return np.asarray(np.exp(-(z**2) / (2.0 * sigma * sigma)) / norm, dtype=np.float64)
