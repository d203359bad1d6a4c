"""GSHM privacy events, privacy-loss-distribution export and a budget ledger."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tessera._validate import check_positive
from tessera.errors import PrivacyBudgetExceededError, ValidationError
from tessera.privacy.gshm._accounting import _terms, delta_exact, epsilon_exact
from tessera.privacy.gshm._calibrate import GSHMParams

__all__ = ["BudgetLedger", "GSHMEvent", "PLDExport"]


@dataclass(frozen=True, kw_only=True)
class PLDExport:
    """A pessimistic privacy loss distribution on a fixed grid (connect-the-dots).

    The masses ``pmf[i]`` sit on losses ``(lower + i) * discretization``; the rest,
    ``infinity_mass``, sits on +∞. Built from the exact GSHM privacy profile with
    Algorithm 1 of Doroshenko et al. (arXiv 2207.04380), so every (ε, δ) it implies
    upper-bounds the mechanism's, in both neighbouring directions.

    Attributes:
        discretization: grid step of the losses (nats).
        lower: integer index of the first loss.
        pmf: shape (n,), float64 masses.
        infinity_mass: mass on +∞ (>= T1 = 1 − p^k).
    """

    discretization: float
    lower: int
    pmf: NDArray[np.float64]
    infinity_mass: float

    def delta(self, epsilon: float) -> float:
        """δ(ε) = E[(1 − e^{ε−L})₊] of this distribution.

        Args:
            epsilon: ε (real).

        Returns:
            δ (float).
        """
        losses = (self.lower + np.arange(self.pmf.size)) * self.discretization
        m = losses > epsilon
        return float(self.infinity_mass + np.sum(self.pmf[m] * -np.expm1(epsilon - losses[m])))

    def to_dp_accounting(self) -> Any:
        """Convert to a ``dp_accounting`` PrivacyLossDistribution (symmetric).

        Returns:
            ``dp_accounting.pld.privacy_loss_distribution.PrivacyLossDistribution``,
            composable with Gaussian, Laplace and subsampled mechanisms.

        Raises:
            ImportError: if dp-accounting is not installed.
        """
        from tessera._optional import require

        pld_pmf = require("dp_accounting.pld.pld_pmf", extra="dev")
        pld = require("dp_accounting.pld.privacy_loss_distribution", extra="dev")
        losses = {int(self.lower + i): float(p) for i, p in enumerate(self.pmf) if p > 0}
        pmf = pld_pmf.SparsePLDPmf(losses, self.discretization, self.infinity_mass, True)
        return pld.PrivacyLossDistribution(pmf)


@dataclass(frozen=True, kw_only=True)
class GSHMEvent:
    r"""One Gaussian sparse histogram release, as a privacy event.

    Mathematics: a user touches at most k keys and adds at most Δ∞ to each; counts
    get N(0, σ²) noise (optionally a value column N(0, σ_v²) with bound B) and only
    keys with noisy count >= τ are released. Its exact privacy profile is

    .. math:: \\delta(\\varepsilon) = \\max\\big(1-p^k,\\ \\max_j T_2(j),\\ \\max_j T_3(j)\\big),
       \\quad p = \\Phi((\\tau-\\Delta_\\infty)/\\sigma)

    (Wilkins, Kifer, Zhang & Karrer 2022; see :func:`delta_exact`). Never change the
    meaning of this event; add a new one instead.

    Attributes:
        sigma: σ (count units).
        tau: τ (count units).
        k: ℓ0 bound.
        linf: Δ∞.
        value_sigma: σ_v or None.
        value_bound: B (1.0 when unused).
    """

    sigma: float
    tau: float
    k: int
    linf: float = 1.0
    value_sigma: float | None = None
    value_bound: float = 1.0

    @classmethod
    def from_params(cls, params: GSHMParams) -> GSHMEvent:
        """The event of a release with calibrated parameters.

        Args:
            params: from :func:`calibrate`.

        Returns:
            A :class:`GSHMEvent`.
        """
        return cls(
            sigma=params.sigma,
            tau=params.tau,
            k=params.k,
            linf=params.linf,
            value_sigma=params.value_sigma,
            value_bound=params.value_bound if params.value_bound is not None else 1.0,
        )

    def _kw(self) -> dict[str, Any]:
        return {
            "sigma": self.sigma,
            "tau": self.tau,
            "k": self.k,
            "linf": self.linf,
            "value_sigma": self.value_sigma,
            "value_bound": self.value_bound,
        }

    def get_delta(self, target_epsilon: float) -> float:
        """Exact δ at ε.

        Args:
            target_epsilon: ε.

        Returns:
            δ_GSHM(ε).
        """
        return float(delta_exact(target_epsilon, **self._kw()))

    def get_epsilon(self, target_delta: float) -> float:
        """Smallest ε with δ_GSHM(ε) <= δ (``inf`` if the leak term exceeds δ).

        Args:
            target_delta: δ in (0, 1).

        Returns:
            ε.
        """
        return float(epsilon_exact(target_delta, **self._kw()))

    def to_pld(self, *, discretization: float = 1e-2, tail: float = 1e-15) -> PLDExport:
        """Export a pessimistic privacy loss distribution for composition.

        Cost: O(n_grid · k) with n_grid = 2 ε_max / discretization.

        Args:
            discretization: loss grid step (nats) > 0.
            tail: the grid stops at ε_max where δ(ε_max) − (1 − p^k) <= tail; the
                remaining δ(ε_max) becomes mass at +∞ (pessimistic).

        Returns:
            A :class:`PLDExport`.

        Raises:
            ValidationError: for a non-positive discretization or tail.
        """
        check_positive("discretization", discretization)
        check_positive("tail", tail)
        kw = self._kw()
        t1 = _terms(
            0.0, self.sigma, self.tau, self.k, self.linf, self.value_sigma, self.value_bound
        )[0]
        hi = 1.0
        while float(delta_exact(hi, **kw)) - t1 > tail and hi < 200.0:
            hi *= 2.0
        n_hi = math.ceil(hi / discretization)
        idx = np.arange(-n_hi, n_hi + 1)
        eps = idx * discretization
        deltas = np.asarray(delta_exact(eps, **kw), dtype=np.float64)
        d = discretization
        ed = math.expm1(d)
        n = deltas.size
        pmf = np.empty(n, dtype=np.float64)
        pmf[0] = (1.0 - deltas[0]) + (deltas[1] - deltas[0]) / ed
        pmf[1:-1] = ((deltas[2:] - deltas[1:-1]) - math.exp(d) * (deltas[1:-1] - deltas[:-2])) / ed
        pmf[-1] = (deltas[-1] - deltas[-2]) / math.expm1(-d)
        pmf = np.maximum(pmf, 0.0)
        return PLDExport(
            discretization=d, lower=int(-n_hi), pmf=pmf, infinity_mass=float(deltas[-1])
        )


@dataclass(kw_only=True)
class BudgetLedger:
    """A declared (ε, δ) budget that refuses releases that would exceed it.

    Composition is basic (ε and δ add), which is valid for any mix of mechanisms
    (adaptive included). For tighter composition export PLDs with
    :meth:`GSHMEvent.to_pld` and compose them with an accountant.

    Attributes:
        epsilon: total ε budget (> 0).
        delta: total δ budget in (0, 1).
        spent: list of ``(name, epsilon, delta)`` charged so far.

    Example:
        >>> ledger = BudgetLedger(epsilon=1.0, delta=1e-5)
        >>> _ = ledger.charge(0.6, 5e-6, name="first")
        >>> ledger.remaining()
        (0.4, 5e-06)
    """

    epsilon: float
    delta: float
    spent: list[tuple[str, float, float]] = field(default_factory=list)

    def __post_init__(self) -> None:
        check_positive("epsilon", self.epsilon)
        if not (0.0 < self.delta < 1.0):
            raise ValidationError(f"delta must lie in (0, 1), got {self.delta!r}")

    def remaining(self) -> tuple[float, float]:
        """The budget left.

        Returns:
            ``(epsilon_left, delta_left)``.
        """
        e = self.epsilon - math.fsum(s[1] for s in self.spent)
        d = self.delta - math.fsum(s[2] for s in self.spent)
        return (round(e, 15), d)

    def charge(self, epsilon: float, delta: float, *, name: str = "release") -> BudgetLedger:
        """Record a mechanism's (ε, δ), or refuse it if the budget would be exceeded.

        Args:
            epsilon: ε of the mechanism (>= 0).
            delta: δ of the mechanism in [0, 1).
            name: a label for the record.

        Returns:
            ``self``.

        Raises:
            ValidationError: for a negative ε or δ outside [0, 1).
            PrivacyBudgetExceededError: if the total would exceed the budget; nothing
                is recorded then.
        """
        check_positive("epsilon", epsilon, allow_zero=True)
        if not (0.0 <= delta < 1.0):
            raise ValidationError(f"delta must lie in [0, 1), got {delta!r}")
        e_left, d_left = self.remaining()
        if epsilon > e_left * (1 + 1e-12) or delta > d_left * (1 + 1e-12):
            raise PrivacyBudgetExceededError(
                f"{name!r} needs (epsilon={epsilon!r}, delta={delta!r}) but only "
                f"(epsilon={e_left!r}, delta={d_left!r}) of the budget "
                f"({self.epsilon!r}, {self.delta!r}) is left; lower the release's budget"
            )
        self.spent.append((name, float(epsilon), float(delta)))
        return self

    def charge_params(self, params: GSHMParams, *, name: str = "gshm") -> BudgetLedger:
        """Charge a GSHM release at its calibrated (ε, δ).

        Args:
            params: from :func:`calibrate`.
            name: label.

        Returns:
            ``self``.

        Raises:
            PrivacyBudgetExceededError: if the budget would be exceeded.
        """
        return self.charge(params.epsilon, params.delta, name=name)
