"""Exact (ε, δ) accounting of the Gaussian sparse histogram mechanism (GSHM).

Notation (Wilkins, Kifer, Zhang, Karrer, arXiv 2202.01100; the authors' R code
``gshm_delta`` in ``facebookresearch/gaussian_sparse_histogram_mechanism``):

- k: the most keys one user may touch (ℓ0 bound); Δ∞ (``linf``): the most one user
  adds to one key's count; σ: Gaussian noise sd; τ: release threshold.
- p = Φ((τ − Δ∞)/σ): probability that a key made only by the target user stays
  suppressed.
- δ_G(ε; μ) = Φ(μ/2 − ε/μ) − e^ε Φ(−μ/2 − ε/μ): the Balle–Wang profile of the
  Gaussian mechanism with μ = Δ2/σ, valid for every real ε.

With j of the user's k keys "new" (absent without the user):

- T1 = 1 − p^k,
- T2(j) = 1 − p^j + p^j δ_G(ε − j ln p; μ_j),
- T3(j) = δ_G(ε + j ln p; μ_j), with μ_j² = (k − j)(Δ∞²/σ² + Σ_c B_c²/σ_c²),

and δ_GSHM(ε) = max(T1, max_j T2(j), max_j T3(j)) over j = 0 … k − 1.

Numerics: ln p via ``norm.logcdf``; 1 − p^j as ``-expm1(j ln p)``; e^ε Φ(b) as
``exp(ε + logcdf(b))``; δ_G in log space when it is tiny. Everything is O(k) per
parameter point and vectorised over j.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray
from scipy import optimize, special

from tessera._validate import check_positive, check_positive_int
from tessera.errors import ValidationError

__all__ = [
    "GSHMTerms",
    "delta_additive",
    "delta_exact",
    "delta_gaussian",
    "epsilon_exact",
    "gshm_terms",
]


def _check_scalar_args(
    sigma: float, tau: float, k: int, linf: float, value_sigma: float | None, value_bound: float
) -> None:
    check_positive("sigma", sigma)
    if not np.isfinite(tau):
        raise ValidationError(f"tau must be a finite number, got {tau!r}")
    check_positive_int("k", k)
    check_positive("linf", linf)
    if value_sigma is not None:
        check_positive("value_sigma", value_sigma)
        check_positive("value_bound", value_bound)


def _log_delta_gaussian(eps: ArrayLike, mu: ArrayLike) -> NDArray[np.float64]:
    """Log of δ_G(ε; μ) for arrays (broadcast), -inf where it is 0."""
    eps = np.asarray(eps, dtype=np.float64)
    mu = np.asarray(mu, dtype=np.float64)
    a = mu / 2.0 - eps / mu
    b = -mu / 2.0 - eps / mu
    la = special.log_ndtr(a)
    lb = eps + special.log_ndtr(b)
    diff = lb - la  # <= 0 in exact arithmetic (hockey-stick is >= 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = la + np.log(-np.expm1(np.minimum(diff, 0.0)))
    return np.where(diff >= 0.0, -np.inf, out)


def delta_gaussian(epsilon: ArrayLike, mu: ArrayLike) -> NDArray[np.float64]:
    """The exact (ε, δ) profile of the Gaussian mechanism (Balle & Wang 2018).

    Args:
        epsilon: ε, any real (negative values are allowed); array-like, broadcast.
        mu: μ = Δ2/σ > 0; array-like, broadcast.

    Returns:
        δ_G(ε; μ) = Φ(μ/2 − ε/μ) − e^ε Φ(−μ/2 − ε/μ), float64 array of the broadcast
        shape (0-d for scalars).

    Raises:
        ValidationError: if some μ is not finite and positive, or ε is NaN.

    Example:
        >>> round(float(delta_gaussian(0.5, 1.0)), 10)
        0.2384217081
    """
    eps = np.asarray(epsilon, dtype=np.float64)
    m = np.asarray(mu, dtype=np.float64)
    if np.isnan(eps).any():
        raise ValidationError("epsilon contains NaN; pass real numbers")
    if not (np.isfinite(m).all() and (m > 0).all()):
        raise ValidationError(f"mu must be finite and > 0, got {mu!r}")
    return np.asarray(np.exp(_log_delta_gaussian(eps, m)), dtype=np.float64)


@dataclass(frozen=True, kw_only=True)
class GSHMTerms:
    """The terms of the exact GSHM profile at one parameter point.

    Attributes:
        delta: δ_GSHM(ε) = max(t1, max t2, max t3).
        t1: 1 − p^k (all k keys new).
        t2: shape (k,), T2(j) for j = 0 … k−1 (add direction).
        t3: shape (k,), T3(j) for j = 0 … k−1 (remove direction).
        argmax: ``"t1"``, ``"t2"`` or ``"t3"``: which term attains the max.
        j: the maximising j (k for t1).
    """

    delta: float
    t1: float
    t2: NDArray[np.float64]
    t3: NDArray[np.float64]
    argmax: str
    j: int


def _mu2_per_key(sigma: float, linf: float, value_sigma: float | None, value_bound: float) -> float:
    m2 = (linf / sigma) ** 2
    if value_sigma is not None:
        m2 += (value_bound / value_sigma) ** 2
    return m2


def _terms(
    eps: float,
    sigma: float,
    tau: float,
    k: int,
    linf: float,
    value_sigma: float | None,
    value_bound: float,
) -> tuple[float, NDArray[np.float64], NDArray[np.float64]]:
    log_p = float(special.log_ndtr((tau - linf) / sigma))  # ln p <= 0
    j = np.arange(k, dtype=np.float64)
    mu = np.sqrt((k - j) * _mu2_per_key(sigma, linf, value_sigma, value_bound))
    jlp = j * log_p  # j ln p <= 0
    t1 = float(-np.expm1(k * log_p))
    ldg2 = _log_delta_gaussian(eps - jlp, mu)
    # T2 = 1 - p^j + p^j δ_G = -expm1(j ln p) + exp(j ln p + ln δ_G)
    t2 = -np.expm1(jlp) + np.exp(jlp + ldg2)
    t3 = np.exp(_log_delta_gaussian(eps + jlp, mu))
    return t1, t2, t3


def gshm_terms(
    epsilon: float,
    *,
    sigma: float,
    tau: float,
    k: int,
    linf: float = 1.0,
    value_sigma: float | None = None,
    value_bound: float = 1.0,
) -> GSHMTerms:
    """All terms T1, T2(j), T3(j) of the exact GSHM profile at one point.

    Args:
        epsilon: ε (real).
        sigma: σ > 0, noise sd of the thresholded count (count units).
        tau: τ, the release threshold (count units).
        k: ℓ0 bound, keys per user (>= 1).
        linf: Δ∞ > 0, the most one user adds to one key's count.
        value_sigma: σ_v of an extra Gaussian value column released on the same keys
            (``None``: no value column).
        value_bound: B, the per-(user, key) bound of that value column.

    Returns:
        A :class:`GSHMTerms`.

    Raises:
        ValidationError: for invalid parameters.

    Example:
        >>> t = gshm_terms(0.5, sigma=1.5, tau=4.0, k=3)
        >>> [round(float(x), 8) for x in t.t2]
        [0.29991756, 0.22763847, 0.13906022]
    """
    _check_scalar_args(sigma, tau, k, linf, value_sigma, value_bound)
    if math.isnan(epsilon):
        raise ValidationError("epsilon is NaN; pass a real number")
    t1, t2, t3 = _terms(float(epsilon), sigma, tau, k, linf, value_sigma, value_bound)
    cands = {
        "t1": (t1, k),
        "t2": (float(t2.max()), int(t2.argmax())),
        "t3": (float(t3.max()), int(t3.argmax())),
    }
    name = max(cands, key=lambda n: cands[n][0])
    return GSHMTerms(
        delta=float(min(1.0, cands[name][0])),
        t1=t1,
        t2=t2,
        t3=t3,
        argmax=name,
        j=cands[name][1],
    )


def _vectorise(
    fn: Callable[..., float],
    first: ArrayLike,
    *,
    value_sigma: float | None,
    value_bound: float,
    **params: ArrayLike,
) -> NDArray[np.float64]:
    """Apply a scalar kernel over the broadcast of ``first`` and the array params."""
    names = list(params)
    arrays = np.broadcast_arrays(
        np.asarray(first, dtype=np.float64), *(np.asarray(params[n]) for n in names)
    )
    out = np.empty(arrays[0].shape, dtype=np.float64)
    for idx in np.ndindex(out.shape):
        kw: dict[str, Any] = {n: a[idx].item() for n, a in zip(names, arrays[1:], strict=True)}
        out[idx] = fn(float(arrays[0][idx]), value_sigma=value_sigma, value_bound=value_bound, **kw)
    return out


def _delta_exact_scalar(
    eps: float,
    *,
    sigma: float,
    tau: float,
    k: int,
    linf: float,
    value_sigma: float | None,
    value_bound: float,
) -> float:
    k = _as_int("k", k)
    _check_scalar_args(sigma, tau, k, linf, value_sigma, value_bound)
    if math.isnan(eps):
        raise ValidationError("epsilon contains NaN; pass real numbers")
    t1, t2, t3 = _terms(eps, sigma, tau, k, linf, value_sigma, value_bound)
    return float(min(1.0, max(t1, float(t2.max()), float(t3.max()))))


def _as_int(name: str, value: Any) -> int:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    check_positive_int(name, value)
    return int(value)


def delta_exact(
    epsilon: ArrayLike,
    *,
    sigma: ArrayLike,
    tau: ArrayLike,
    k: ArrayLike,
    linf: ArrayLike = 1.0,
    value_sigma: float | None = None,
    value_bound: float = 1.0,
) -> NDArray[np.float64]:
    r"""The exact δ(ε) of the Gaussian sparse histogram mechanism.

    The full maximum over j = 0 … k−1 of T2(j), T3(j) and T1 (module docstring), not
    only the endpoint identity max(δ_G(ε; Δ∞√k/σ), 1 − p^k).

    Args:
        epsilon: ε (real); array-like, broadcast against the other parameters.
        sigma: σ > 0, sd of the count noise (count units); array-like.
        tau: τ, the release threshold (count units); array-like.
        k: ℓ0 bound (integer >= 1); array-like.
        linf: Δ∞ > 0, per-(user, key) count bound; array-like.
        value_sigma: σ_v of an extra Gaussian value column on the released keys
            (``None``: counts only). Composes exactly in μ (A.6 of the note).
        value_bound: B, the per-(user, key) bound of the value column.

    Returns:
        δ, float64 array of the broadcast shape (0-d for scalars).

    Raises:
        ValidationError: if σ <= 0, k < 1, τ not finite, Δ∞ <= 0 or ε is NaN.

    Notes:
        :math:`\\delta = \\max(1-p^k, \\max_j [1-p^j+p^j\\delta_G(\\varepsilon-j\\ln p;\\mu_j)],
        \\max_j \\delta_G(\\varepsilon+j\\ln p;\\mu_j))`, Wilkins et al. (2022).

    Example:
        >>> round(float(delta_exact(1.0, sigma=2.0, tau=7.0, k=5)), 10)
        0.1700867177
    """
    return _vectorise(
        _delta_exact_scalar,
        epsilon,
        sigma=sigma,
        tau=tau,
        k=k,
        linf=linf,
        value_sigma=value_sigma,
        value_bound=value_bound,
    )


def _delta_additive_scalar(
    eps: float,
    *,
    sigma: float,
    tau: float,
    k: int,
    linf: float,
    value_sigma: float | None,
    value_bound: float,
) -> float:
    k = _as_int("k", k)
    _check_scalar_args(sigma, tau, k, linf, value_sigma, value_bound)
    if math.isnan(eps):
        raise ValidationError("epsilon contains NaN; pass real numbers")
    mu = math.sqrt(k * _mu2_per_key(sigma, linf, value_sigma, value_bound))
    log_p = float(special.log_ndtr((tau - linf) / sigma))
    t1 = float(-np.expm1(k * log_p))
    dg = float(np.exp(_log_delta_gaussian(np.float64(eps), np.float64(mu))))
    return min(1.0, dg + t1)


def delta_additive(
    epsilon: ArrayLike,
    *,
    sigma: ArrayLike,
    tau: ArrayLike,
    k: ArrayLike,
    linf: ArrayLike = 1.0,
    value_sigma: float | None = None,
    value_bound: float = 1.0,
) -> NDArray[np.float64]:
    """The prior "add the deltas" bound: δ_G(ε; Δ∞√k/σ) + (1 − p^k).

    This is the bound of Google's ``Delta_For_Thresholding`` (Lemma 1, Theorem 1),
    used by PyDP, PipelineDP and OpenDP. It is always >= :func:`delta_exact`.

    Args:
        epsilon: ε (real); array-like, broadcast.
        sigma: σ > 0 (count units); array-like.
        tau: τ, the threshold (count units); array-like.
        k: ℓ0 bound (integer >= 1); array-like.
        linf: Δ∞ > 0; array-like.
        value_sigma: σ_v of an extra value column (``None``: none).
        value_bound: B of the value column.

    Returns:
        δ, float64 array of the broadcast shape.

    Raises:
        ValidationError: for invalid parameters.

    Example:
        >>> round(float(delta_additive(1.0, sigma=2.0, tau=7.0, k=5)), 10)
        0.1768180102
    """
    return _vectorise(
        _delta_additive_scalar,
        epsilon,
        sigma=sigma,
        tau=tau,
        k=k,
        linf=linf,
        value_sigma=value_sigma,
        value_bound=value_bound,
    )


def _epsilon_exact_scalar(
    delta: float,
    *,
    sigma: float,
    tau: float,
    k: int,
    linf: float,
    value_sigma: float | None,
    value_bound: float,
) -> float:
    if not (0.0 < delta < 1.0):
        raise ValidationError(f"delta must lie in (0, 1), got {delta!r}; pass e.g. 1e-6")
    kw: dict[str, Any] = {
        "sigma": sigma,
        "tau": tau,
        "k": k,
        "linf": linf,
        "value_sigma": value_sigma,
        "value_bound": value_bound,
    }
    k = _as_int("k", k)
    _check_scalar_args(sigma, tau, k, linf, value_sigma, value_bound)
    t1 = float(-np.expm1(k * float(special.log_ndtr((tau - linf) / sigma))))
    if t1 > delta:
        return math.inf  # the leak term alone exceeds δ: no finite ε works

    def f(e: float) -> float:
        return math.log(max(_delta_exact_scalar(e, **kw), 1e-320)) - math.log(delta)

    if f(0.0) <= 0.0:
        return 0.0
    hi = 1.0
    while f(hi) > 0.0:
        hi *= 2.0
        if hi > 1e6:
            return math.inf
    root = optimize.brentq(f, hi / 2.0 if hi > 1.0 else 0.0, hi, xtol=1e-14, rtol=1e-14)
    # return the side with δ(ε) <= target
    while f(root) > 0.0:
        root = math.nextafter(root, math.inf)
    return float(root)


def epsilon_exact(
    delta: ArrayLike,
    *,
    sigma: ArrayLike,
    tau: ArrayLike,
    k: ArrayLike,
    linf: ArrayLike = 1.0,
    value_sigma: float | None = None,
    value_bound: float = 1.0,
) -> NDArray[np.float64]:
    """The smallest ε with δ_GSHM(ε) <= δ, by root finding (Brent) on ln δ.

    Args:
        delta: target δ in (0, 1); array-like, broadcast.
        sigma: σ > 0 (count units); array-like.
        tau: τ (count units); array-like.
        k: ℓ0 bound (integer >= 1); array-like.
        linf: Δ∞ > 0; array-like.
        value_sigma: σ_v of an extra value column (``None``: none).
        value_bound: B of the value column.

    Returns:
        ε >= 0, float64 array of the broadcast shape; ``inf`` where the leak term
        1 − p^k alone exceeds δ (no finite ε achieves it). The returned ε satisfies
        ``delta_exact(ε) <= delta``.

    Raises:
        ValidationError: for δ outside (0, 1) or invalid mechanism parameters.

    Example:
        >>> e = float(epsilon_exact(1e-5, sigma=3.7306, tau=17.9107, k=1))
        >>> round(e, 3)
        1.0
    """
    return _vectorise(
        _epsilon_exact_scalar,
        delta,
        sigma=sigma,
        tau=tau,
        k=k,
        linf=linf,
        value_sigma=value_sigma,
        value_bound=value_bound,
    )
