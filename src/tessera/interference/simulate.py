"""Synthetic bipartite experiments with known effects (sparse, dense and hub graphs).

The data-generating process follows ``notes/network_experiments.md`` §G.1:

* analysis unit ``i`` has ``1 + Poisson(λ)`` draws of randomization units, drawn with
  Zipf popularity ``P(j) ∝ rank_j^{-a}`` (duplicates merged); ``graph="sparse"`` is
  ``λ = 2, a = 0.3``, ``"dense"`` is ``λ = 20, a = 0.3`` and ``"hub"`` is
  ``λ = 2, a = 1`` (one unit then touches about 30% of analysis units);
* weights ``U(0.5, 1.5)``, normalised to sum 1 per analysis unit;
* control outcome ``α_i = level + σ_α (√r2 s_i + √(1-r2) ε_i)`` and pre-period covariate
  ``y_pre_i = level + σ_α √r2 s_i`` with ``s, ε ~ N(0, 1)``, so ``y_pre`` explains the
  share ``r2`` of the variance of ``α`` and ``h(X) = y_pre`` is its best predictor;
* slopes ``β_i = τ (1 + slope_sd η_i)``, ``η ~ N(0, 1)``; outcome
  ``Y_i = α_i + β_i x_i`` with exposure ``x_i = Σ_j w_ij Z_j`` and
  ``Z_j ~ Bernoulli(p)``. The estimand is ``true_effect = mean(β)``.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any, Literal

import numpy as np
import scipy.sparse as sp

from tessera._optional import require
from tessera._rng import as_rng
from tessera._validate import (
    check_choice,
    check_in_unit_interval,
    check_positive,
    check_positive_int,
)
from tessera.errors import ValidationError

__all__ = ["SimulatedBipartite", "bipartite"]

_GRAPHS = {"sparse": (2.0, 0.3), "dense": (20.0, 0.3), "hub": (2.0, 1.0)}


@dataclass(frozen=True, kw_only=True)
class SimulatedBipartite:
    """A simulated bipartite experiment with known potential outcomes.

    Attributes:
        analysis: shape (E,), int64, analysis-unit index of each edge.
        randomization: shape (E,), int64, randomization-unit index of each edge.
        weight: shape (E,), float64, normalised edge weights (sum 1 per analysis unit).
        p: shape (m,), float64, design probabilities.
        z: shape (m,), float64, realised assignment in {0, 1}.
        alpha: shape (n,), float64, control outcomes ``α_i``.
        beta: shape (n,), float64, slopes ``β_i``.
        y_pre: shape (n,), float64, pre-period covariate.
        true_effect: ``mean(β)``, the total treatment effect.
        graph: the graph family.
    """

    analysis: np.ndarray
    randomization: np.ndarray
    weight: np.ndarray
    p: np.ndarray
    z: np.ndarray
    alpha: np.ndarray
    beta: np.ndarray
    y_pre: np.ndarray
    true_effect: float
    graph: str

    @property
    def n_analysis(self) -> int:
        """Number of analysis units ``n``."""
        return len(self.alpha)

    @property
    def n_randomization(self) -> int:
        """Number of randomization units ``m``."""
        return len(self.p)

    def weights_matrix(self) -> sp.csr_matrix:
        """The (n, m) sparse weight matrix ``W``.

        Returns:
            SciPy CSR matrix of shape (n, m), float64.
        """
        return sp.csr_matrix(
            (self.weight, (self.analysis, self.randomization)),
            shape=(self.n_analysis, self.n_randomization),
        )

    def exposure(self) -> np.ndarray:
        """Realised exposures ``x = W z``.

        Returns:
            Shape (n,), float64.
        """
        return np.asarray(self.weights_matrix() @ self.z)

    def outcome(self) -> np.ndarray:
        """Realised outcomes ``Y = α + β x``.

        Returns:
            Shape (n,), float64.
        """
        return self.alpha + self.beta * self.exposure()

    def redraw(self, rng: Any = None) -> SimulatedBipartite:
        """The same graph and potential outcomes with a fresh assignment from the design.

        Args:
            rng: seed or Generator.

        Returns:
            A new :class:`SimulatedBipartite`.
        """
        gen = as_rng(rng)
        return replace(self, z=(gen.random(len(self.p)) < self.p).astype(np.float64))

    def tables(self) -> tuple[Any, Any, Any]:
        """The edge, assignment and outcome tables as pandas DataFrames.

        Returns:
            ``(edges, assignments, outcomes)`` with the default :class:`Columns` names;
            outcomes carry the covariate column ``y_pre``.
        """
        pd = require("pandas")
        edges = pd.DataFrame(
            {
                "analysis_id": self.analysis,
                "randomization_id": self.randomization,
                "weight": self.weight,
            }
        )
        assignments = pd.DataFrame(
            {"randomization_id": np.arange(self.n_randomization), "treated": self.z, "p": self.p}
        )
        outcomes = pd.DataFrame(
            {
                "analysis_id": np.arange(self.n_analysis),
                "outcome": self.outcome(),
                "y_pre": self.y_pre,
            }
        )
        return edges, assignments, outcomes


def bipartite(
    n_analysis: int = 2000,
    n_randomization: int = 400,
    *,
    graph: Literal["sparse", "dense", "hub"] = "sparse",
    tau: float = 1.0,
    p: float = 0.5,
    r2: float = 0.8,
    alpha_sd: float = 3.0,
    level: float = 10.0,
    slope_sd: float = 0.5,
    rng: Any = None,
) -> SimulatedBipartite:
    """Simulate a bipartite experiment with a known total treatment effect.

    Args:
        n_analysis: analysis units ``n`` (>= 1).
        n_randomization: randomization units ``m`` (>= 1).
        graph: ``"sparse"`` (mean degree 3), ``"dense"`` (mean degree ≈ 21) or
            ``"hub"`` (Zipf-1 popularity: one unit touches ≈ 30% of analysis units).
        tau: mean slope ``E β`` (the effect of full exposure).
        p: Bernoulli design probability in (0, 1).
        r2: share of the variance of the control outcome explained by ``y_pre``, in [0, 1].
        alpha_sd: standard deviation of the control outcome ``σ_α`` (> 0).
        level: mean of the control outcome and of ``y_pre``. ERL is not location
            invariant, so a large level inflates its variance and ``h = y_pre`` removes it.
        slope_sd: relative standard deviation of the slopes (>= 0).
        rng: seed or Generator.

    Returns:
        The :class:`SimulatedBipartite`.

    Raises:
        ValidationError: for out-of-range arguments.
        UnsupportedError: for an unknown graph family.

    Example:
        >>> sim = bipartite(50, 10, rng=0)
        >>> sim.n_analysis, sim.n_randomization
        (50, 10)
    """
    check_positive_int("n_analysis", n_analysis)
    check_positive_int("n_randomization", n_randomization)
    check_choice("graph", graph, tuple(_GRAPHS))
    check_in_unit_interval("p", p, open_=True)
    check_in_unit_interval("r2", r2)
    check_positive("alpha_sd", alpha_sd)
    check_positive("slope_sd", slope_sd, allow_zero=True)
    if not (np.isfinite(tau) and np.isfinite(level)):
        raise ValidationError(f"tau and level must be finite, got {tau!r} and {level!r}")
    gen = as_rng(rng)
    lam, a = _GRAPHS[graph]
    n, m = n_analysis, n_randomization
    pop = np.arange(1, m + 1, dtype=np.float64) ** -a
    pop /= pop.sum()
    pop = pop[gen.permutation(m)]  # popular units at random positions
    draws = 1 + gen.poisson(lam, size=n)  # (n,)
    ei = np.repeat(np.arange(n), draws)
    ej = gen.choice(m, size=len(ei), p=pop)
    key = np.unique(ei * m + ej)  # merge duplicate draws
    ei, ej = key // m, key % m
    w = gen.uniform(0.5, 1.5, size=len(ei))
    w /= np.bincount(ei, weights=w, minlength=n)[ei]
    s, eps, eta = gen.standard_normal((3, n))
    alpha = level + alpha_sd * (np.sqrt(r2) * s + np.sqrt(1 - r2) * eps)
    y_pre = level + alpha_sd * np.sqrt(r2) * s
    beta = tau * (1.0 + slope_sd * eta)
    pv = np.full(m, float(p))
    z = (gen.random(m) < pv).astype(np.float64)
    return SimulatedBipartite(
        analysis=ei.astype(np.int64),
        randomization=ej.astype(np.int64),
        weight=w,
        p=pv,
        z=z,
        alpha=alpha,
        beta=beta,
        y_pre=y_pre,
        true_effect=float(beta.mean()),
        graph=graph,
    )
