"""Bipartite experiments: ERL, CA-ERL, exact design variance and randomization CIs.

Randomization units ``j`` (groups, sellers, ads ...) are assigned independently,
``Z_j ~ Bernoulli(p_j)``; outcomes are measured on analysis units ``i`` (users)
linked to them by weights ``w_ij >= 0``. The exposure of unit ``i`` is
``x_i = Σ_j w_ij Z_j``.

* :func:`erl`: the exposure-reweighted linear estimator (Harshaw et al. 2022).
* :func:`ca_erl`: its covariate-adjusted variant, ERL on ``Y - h(X)``. **The CA-ERL
  definition, the imputed-schedule variance and the replicate algorithm are a
  reconstruction** consistent with the abstract of Shi et al. (arXiv 2402.11070);
  the paper's body was not available (``notes/network_experiments.md`` §A.4-A.5).
* :func:`exact_design_variance`: the exact variance of any ERL-type estimator under
  the linear exposure-response model: linear, quadratic and cross terms.
* :func:`sparsity_diagnostics` and :class:`SparsityWarning`.

Cost: exposures, the estimate and the linear and cross variance terms are one join
plus GROUP BY each, O(|E|). The quadratic term is a self-join of the edge table on the
analysis unit with ``Σ_i deg_i²`` rows: linear in |E| when the analysis-unit degree
is bounded (the sparsity regime under which the Wald interval is valid). The
replicate mode costs O(B |E|).
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
