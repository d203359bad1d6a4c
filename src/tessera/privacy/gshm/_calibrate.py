"""Calibration of the GSHM: (ε, δ, k, Δ∞) -> (σ, τ), exact and add-the-deltas."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from scipy import optimize, special

from tessera._validate import check_choice, check_positive, check_positive_int
from tessera.errors import ValidationError
from tessera.privacy.gshm._accounting import _log_delta_gaussian, _mu2_per_key, delta_exact

__all__ = [
    "AdditiveParams",
    "GSHMParams",
    "ThresholdSavings",
    "calibrate",
    "calibrate_additive",
    "gaussian_mu",
    "threshold_savings",
]

Objective = Literal["min_threshold", "min_sigma", "balanced"]
_OBJECTIVES = ("min_threshold", "min_sigma", "balanced")


def _check_eps_delta(epsilon: float, delta: float) -> None:
    if isinstance(epsilon, bool) or not isinstance(epsilon, int | float | np.floating | np.integer):
        raise ValidationError(f"epsilon must be a number > 0, got {epsilon!r}")
    if not (math.isfinite(epsilon) and epsilon > 0):
        raise ValidationError(
            f"epsilon must be a finite number > 0, got {epsilon!r}; pass e.g. 1.0"
        )
    if isinstance(delta, bool) or not isinstance(delta, int | float | np.floating | np.integer):
        raise ValidationError(f"delta must be a number in (0, 1), got {delta!r}")
    if not (0.0 < delta < 1.0):
        raise ValidationError(f"delta must lie in (0, 1), got {delta!r}; pass e.g. 1e-6")


def _check_k(k: Any) -> int:
    check_positive_int("k", k)
    return int(k)


def _log_dg(eps: float, mu: float) -> float:
    return float(_log_delta_gaussian(np.float64(eps), np.float64(mu)))


def gaussian_mu(epsilon: float, delta: float) -> float:
    """The largest μ = Δ2/σ with δ_G(ε; μ) <= δ (analytic Gaussian, Balle & Wang 2018).

    Args:
        epsilon: ε > 0.
        delta: δ in (0, 1).

    Returns:
        μ > 0 such that δ_G(ε; μ) <= δ, tight to a few ulps (root found by Brent's
        method on ln δ_G, then stepped to the feasible side).

    Raises:
        ValidationError: for ε <= 0 or δ outside (0, 1).

    Example:
        >>> round(gaussian_mu(0.349, 1e-5), 10)
        0.1022428608
    """
    _check_eps_delta(epsilon, delta)
    target = math.log(delta)

    def f(mu: float) -> float:
        return _log_dg(epsilon, mu) - target  # increasing in mu

    lo, hi = 1e-3, 1.0
    while f(lo) > 0:
        lo /= 2.0
    while f(hi) < 0:
        hi *= 2.0
    mu = float(optimize.brentq(f, lo, hi, xtol=1e-300, rtol=4 * np.finfo(float).eps))
    while math.exp(_log_dg(epsilon, mu)) > delta:
        mu = math.nextafter(mu, 0.0)
    return mu


def _z_threshold(delta_thr: float, k: int) -> float:
    """Z with 1 − Φ(z)^k = δ: z = −Φ⁻¹(1 − (1 − δ)^{1/k}), computed stably."""
    q = -math.expm1(math.log1p(-delta_thr) / k)
    return -float(special.ndtri(q))


@dataclass(frozen=True, kw_only=True)
class GSHMParams:
    """Calibrated parameters of one GSHM release.

    Attributes:
        sigma: σ, sd of the Gaussian noise on counts (count units).
        tau: τ, the release threshold on noisy counts (count units).
        epsilon: ε of the guarantee.
        delta: δ of the guarantee (``delta_exact(epsilon) <= delta``).
        k: ℓ0 bound, keys per user.
        linf: Δ∞, per-(user, key) count contribution bound.
        value_sigma: σ_v of the value-sum noise, or ``None`` when no value column is
            budgeted.
        value_bound: B, the clamp bound |value| <= B per (user, key), or ``None``.
    """

    sigma: float
    tau: float
    epsilon: float
    delta: float
    k: int
    linf: float = 1.0
    value_sigma: float | None = None
    value_bound: float | None = None

    def __post_init__(self) -> None:
        _check_eps_delta(self.epsilon, self.delta)
        check_positive("sigma", self.sigma)
        check_positive_int("k", self.k)
        check_positive("linf", self.linf)
        if not math.isfinite(self.tau):
            raise ValidationError(f"tau must be finite, got {self.tau!r}")
        if (self.value_sigma is None) != (self.value_bound is None):
            raise ValidationError(
                "value_sigma and value_bound must be given together (or both None), got "
                f"value_sigma={self.value_sigma!r}, value_bound={self.value_bound!r}"
            )
        if self.value_sigma is not None:
            check_positive("value_sigma", self.value_sigma)
            check_positive("value_bound", float(self.value_bound or 0.0))

    def delta_exact(self) -> float:
        """The exact δ at ``self.epsilon`` for these parameters.

        Returns:
            δ_GSHM(ε) as a float (<= ``self.delta`` for calibrated parameters).
        """
        return float(
            delta_exact(
                self.epsilon,
                sigma=self.sigma,
                tau=self.tau,
                k=self.k,
                linf=self.linf,
                value_sigma=self.value_sigma,
                value_bound=self.value_bound if self.value_bound is not None else 1.0,
            )
        )

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict of the fields.

        Returns:
            ``{field: value}``.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> GSHMParams:
        """Rebuild from :meth:`to_dict` output; unknown keys are an error.

        Args:
            d: the dict.

        Returns:
            A :class:`GSHMParams`.

        Raises:
            ValidationError: on unknown keys or invalid values.
        """
        known = set(cls.__dataclass_fields__)
        extra = set(d) - known
        if extra:
            raise ValidationError(
                f"unknown GSHMParams keys {sorted(extra)}; known: {sorted(known)}"
            )
        return cls(**d)


def _min_tau_at_sigma(
    epsilon: float,
    delta: float,
    *,
    sigma: float,
    k: int,
    linf: float,
    value_sigma: float | None,
    value_bound: float,
) -> float:
    """Smallest τ at σ with the full exact δ(ε) <= δ (endpoint start, then stepped)."""
    tau = linf + sigma * _z_threshold(delta, k)

    def d(t: float) -> float:
        return float(
            delta_exact(
                epsilon,
                sigma=sigma,
                tau=t,
                k=k,
                linf=linf,
                value_sigma=value_sigma,
                value_bound=value_bound,
            )
        )

    if d(tau) <= delta:
        return tau
    # interior j or rounding put δ above target: δ(τ) is non-increasing in τ
    lo, step = tau, max(abs(tau), 1.0) * 1e-12
    hi = tau + step
    while d(hi) > delta:
        step *= 2.0
        hi = tau + step
        if step > 1e6 * max(sigma, 1.0):
            raise ValidationError(
                f"no threshold reaches delta={delta!r} at sigma={sigma!r}: the Gaussian part "
                "alone exceeds it; increase sigma"
            )
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if mid in (lo, hi):
            break
        if d(mid) <= delta:
            hi = mid
        else:
            lo = mid
    return hi


def calibrate(
    epsilon: float,
    delta: float,
    *,
    k: int,
    linf: float = 1.0,
    objective: Objective = "min_threshold",
    sigma: float | None = None,
    value_bound: float | None = None,
    value_share: float = 0.5,
) -> GSHMParams:
    """Calibrate (σ, τ) of the GSHM for (ε, δ) with the exact accounting.

    Because the exact profile is (numerically, A.3 of the note) the max rather than the
    sum of the Gaussian and leak terms, calibration decouples: σ_min comes from the
    analytic Gaussian at the *full* δ, and τ = Δ∞ + σ·Φ⁻¹((1−δ)^{1/k}). The returned τ
    is then checked against the full O(k) maximum and raised if an interior j needed it.

    Under exact accounting τ − Δ∞ grows linearly with σ, so the smallest feasible σ also
    gives the smallest threshold: ``"min_threshold"``, ``"min_sigma"`` and
    ``"balanced"`` return the same parameters here (they differ for the add-the-deltas
    baseline, :func:`calibrate_additive`). The argument is kept so that callers state
    their intent and so the search is re-run if the accounting ever changes.

    Args:
        epsilon: ε > 0.
        delta: δ in (0, 1).
        k: ℓ0 bound, keys per user (>= 1).
        linf: Δ∞ > 0, per-(user, key) count bound.
        objective: ``"min_threshold"``, ``"min_sigma"`` or ``"balanced"``.
        sigma: use this σ (count units) instead of σ_min; must be >= σ_min.
        value_bound: B > 0 to also budget one value-sum column clamped to [−B, B]
            per (user, key); ``None`` for counts only.
        value_share: share of the Gaussian budget μ² given to the value column, in
            (0, 1) (only with ``value_bound``).

    Returns:
        A frozen :class:`GSHMParams` with ``delta_exact(ε) <= δ``, tight to ~1e-12.

    Raises:
        ValidationError: for ε <= 0, δ outside (0, 1), k < 1, Δ∞ <= 0, or σ < σ_min.
        UnsupportedError: for an unknown objective.

    Example:
        >>> p = calibrate(1.0, 1e-5, k=10)
        >>> round(p.sigma, 4), round(p.tau, 4)
        (11.7973, 57.0775)
    """
    _check_eps_delta(epsilon, delta)
    k = _check_k(k)
    check_positive("linf", linf)
    check_choice("objective", objective, _OBJECTIVES)
    mu = gaussian_mu(float(epsilon), float(delta))
    value_sigma: float | None = None
    if value_bound is not None:
        check_positive("value_bound", value_bound)
        if not (0.0 < value_share < 1.0):
            raise ValidationError(f"value_share must lie in (0, 1), got {value_share!r}")
        # μ² = k (Δ∞²/σ² + B²/σ_v²), split value_share : 1 − value_share
        sigma_min = linf * math.sqrt(k / ((1.0 - value_share) * mu * mu))
        value_sigma = value_bound * math.sqrt(k / (value_share * mu * mu))
    else:
        sigma_min = linf * math.sqrt(k) / mu
    vb0 = float(value_bound) if value_bound is not None else 1.0

    def infeasible(s_: float, vs_: float | None) -> bool:
        # the same arithmetic as the accountant's j = 0 term
        m = math.sqrt(k * _mu2_per_key(s_, linf, vs_, vb0))
        return math.exp(_log_dg(float(epsilon), m)) > delta

    while infeasible(sigma_min, value_sigma):
        sigma_min = math.nextafter(sigma_min, math.inf)
        if value_sigma is not None:
            value_sigma = math.nextafter(value_sigma, math.inf)
    if sigma is not None:
        check_positive("sigma", sigma)
        if sigma < sigma_min:
            raise ValidationError(
                f"sigma={sigma!r} is below sigma_min={sigma_min!r} for epsilon={epsilon!r}, "
                f"delta={delta!r}, k={k}; pass sigma >= sigma_min or omit it"
            )
        s = float(sigma)
    else:
        s = sigma_min
    vb = float(value_bound) if value_bound is not None else 1.0
    tau = _min_tau_at_sigma(
        float(epsilon),
        float(delta),
        sigma=s,
        k=k,
        linf=linf,
        value_sigma=value_sigma,
        value_bound=vb,
    )
    return GSHMParams(
        sigma=s,
        tau=tau,
        epsilon=float(epsilon),
        delta=float(delta),
        k=k,
        linf=float(linf),
        value_sigma=value_sigma,
        value_bound=float(value_bound) if value_bound is not None else None,
    )


@dataclass(frozen=True, kw_only=True)
class AdditiveParams:
    """(σ, τ) calibrated with the add-the-deltas bound δ = δ_gauss + δ_thr.

    Attributes:
        sigma: σ (count units).
        tau: τ (count units).
        delta_gauss: δ given to the Gaussian part.
        delta_threshold: δ given to the leak term.
        split: ``"best"`` (τ minimised over the split) or ``"even"`` (δ/2 + δ/2,
            Google's ``GaussianPartitionSelection``).
    """

    sigma: float
    tau: float
    delta_gauss: float
    delta_threshold: float
    split: str


def calibrate_additive(
    epsilon: float,
    delta: float,
    *,
    k: int,
    linf: float = 1.0,
    split: Literal["best", "even"] = "best",
) -> AdditiveParams:
    """Calibrate (σ, τ) with the prior add-the-deltas bound (the baseline GSHM beats).

    Args:
        epsilon: ε > 0.
        delta: total δ in (0, 1).
        k: ℓ0 bound (>= 1).
        linf: Δ∞ > 0.
        split: ``"best"``: minimise τ over δ_gauss + δ_thr = δ; ``"even"``: δ/2 each.

    Returns:
        An :class:`AdditiveParams`.

    Raises:
        ValidationError: for invalid (ε, δ, k, Δ∞).
        UnsupportedError: for an unknown split.

    Example:
        >>> round(calibrate_additive(1.0, 1e-5, k=10, split="even").tau, 2)
        61.08
    """
    _check_eps_delta(epsilon, delta)
    k = _check_k(k)
    check_positive("linf", linf)
    check_choice("split", split, ("best", "even"))

    def at(frac: float) -> tuple[float, float, float, float]:
        d1 = delta * frac
        d2 = delta - d1
        s = linf * math.sqrt(k) / gaussian_mu(epsilon, d1)
        return s, linf + s * _z_threshold(d2, k), d1, d2

    if split == "even":
        s, t, d1, d2 = at(0.5)
    else:
        res = optimize.minimize_scalar(
            lambda u: at(float(special.expit(u)))[1],
            bounds=(-12.0, 12.0),
            method="bounded",
            options={"xatol": 1e-10},
        )
        s, t, d1, d2 = at(float(special.expit(res.x)))
    return AdditiveParams(sigma=s, tau=t, delta_gauss=d1, delta_threshold=d2, split=split)


@dataclass(frozen=True, kw_only=True)
class ThresholdSavings:
    """Exact GSHM calibration against the add-the-deltas baselines at the same (ε, δ).

    Attributes:
        exact: the exact calibration.
        additive_best: add-the-deltas with the best δ split.
        additive_even: add-the-deltas with δ/2 + δ/2 (Google).
        threshold_ratio_best: (τ_best − Δ∞)/(τ_exact − Δ∞) (> 1 means GSHM is lower).
        threshold_ratio_even: (τ_even − Δ∞)/(τ_exact − Δ∞).
        sigma_ratio_best: σ_best / σ_exact.
        sigma_ratio_even: σ_even / σ_exact.
    """

    exact: GSHMParams
    additive_best: AdditiveParams
    additive_even: AdditiveParams
    threshold_ratio_best: float
    threshold_ratio_even: float
    sigma_ratio_best: float
    sigma_ratio_even: float


def threshold_savings(
    epsilon: float, delta: float, *, k: int, linf: float = 1.0
) -> ThresholdSavings:
    """Report the threshold and noise saving of exact GSHM over add-the-deltas.

    Args:
        epsilon: ε > 0.
        delta: δ in (0, 1).
        k: ℓ0 bound (>= 1).
        linf: Δ∞ > 0.

    Returns:
        A :class:`ThresholdSavings`.

    Raises:
        ValidationError: for invalid parameters.

    Example:
        >>> s = threshold_savings(0.349, 1e-5, k=51914)
        >>> round(s.exact.tau - 1, 2), round(s.additive_best.tau - 1, 2)
        (13950.05, 14712.04)
    """
    ex = calibrate(epsilon, delta, k=k, linf=linf)
    best = calibrate_additive(epsilon, delta, k=k, linf=linf, split="best")
    even = calibrate_additive(epsilon, delta, k=k, linf=linf, split="even")
    base = ex.tau - linf
    return ThresholdSavings(
        exact=ex,
        additive_best=best,
        additive_even=even,
        threshold_ratio_best=(best.tau - linf) / base,
        threshold_ratio_even=(even.tau - linf) / base,
        sigma_ratio_best=best.sigma / ex.sigma,
        sigma_ratio_even=even.sigma / ex.sigma,
    )
