"""Bipartite experiments: ERL, CA-ERL, exact design variance and randomization CIs.

Randomization units ``j`` (groups, sellers, ads ...) are assigned independently,
``Z_j ~ Bernoulli(p_j)``; outcomes are measured on analysis units ``i`` (users)
linked to them by weights ``w_ij >= 0``. The exposure of unit ``i`` is
``x_i = Σ_j w_ij Z_j``.

* :func:`erl`: the exposure-reweighted linear estimator (Harshaw et al. 2022).
* :func:`ca_erl`: its covariate-adjusted variant, ERL on ``Y - h(X)``. **The CA-ERL
  definition, the imputed-schedule variance, the in-sample bias correction and the
  replicate algorithm are a reconstruction** consistent with the abstract of Shi et
  al. (arXiv 2402.11070); the paper's body was not available
  (``notes/network_experiments.md`` §A.4-A.5). ``h`` is an OLS fit of ``Y`` on
  ``[1, X]`` (``adjustment="in_sample"``, the default; or cross-fitted), or fixed
  before the assignment (``"pre_period"``).
* :func:`exact_design_variance`: the exact mean and variance of any ERL-type estimator
  under the linear exposure-response model: linear, quadratic and cross terms; with
  ``covariates`` it includes the refit of the in-sample OLS at every assignment.
* :func:`sparsity_diagnostics` and :class:`SparsityWarning`.

What the reported SE is. The estimate is written as a quadratic form
``τ̂ = Σ_j C_j e_j + Σ_jk Q_jk e_j e_k`` in the centred assignment ``e = Z - p``. Its
exact design variance (``v = p(1-p)``, ``κ3``, ``κ4`` the Bernoulli central moments)
is ``Σ v C² + Σ (κ4 - v²) Q_jj² + 2 Σ_{j≠k} v_j v_k Q_jk² + 2 Σ κ3 C_j Q_jj``,
evaluated at the imputed potential outcomes ``b_i = τ̂``, ``a_i = Ỹ_i - τ̂ x_i``
(``variance="exact"``), or estimated from ``B`` re-randomizations of the same imputed
schedule (``variance="replicate"``); the Wald interval is ``τ̂ ± z se``. For ERL and
a fixed ``h``, ``Q = Wᵀ diag(τ̂ g) W`` with ``g = 1/(n σ²)``. For the in-sample
(cross-fitted) adjustment the OLS coefficients move with the assignment, so ``Q``
loses a rank-``(q+1)`` (rank-``K(q+1)``) term and the raw estimate is biased towards
0 by a known design factor ``B``; the reported estimate is divided by ``1 - B``
(exactly unbiased with equal slopes) and the variance includes the refit. Both facts
are checked against enumeration of all ``2^m`` assignments in the tests.

Cost: exposures, the estimate and the linear and cross variance terms are one join
plus GROUP BY each, O(|E|); the in-sample refit adds one GROUP BY over ``j`` and one
over ``i``. The quadratic term is a self-join of the edge table on the analysis unit
with ``Σ_i deg_i²`` rows: linear in |E| when the analysis-unit degree is bounded (the
sparsity regime under which the Wald interval is valid). The replicate mode costs
O(B |E|).
"""

from __future__ import annotations

from tessera.interference.bipartite._estimators import EffectEstimate, ca_erl, erl
from tessera.interference.bipartite._stats import (
    DesignVariance,
    SparsityDiagnostics,
    SparsityWarning,
    exact_design_variance,
    sparsity_diagnostics,
)
from tessera.interference.engines import Columns

__all__ = [
    "Columns",
    "DesignVariance",
    "EffectEstimate",
    "SparsityDiagnostics",
    "SparsityWarning",
    "ca_erl",
    "erl",
    "exact_design_variance",
    "sparsity_diagnostics",
]
