"""The Gaussian sparse histogram mechanism (GSHM) with exact (ε, δ) accounting.

Private group-by releases over an unknown key set (Wilkins, Kifer, Zhang & Karrer,
arXiv 2202.01100): per-user contribution bounding to k keys and Δ∞ per key, exact
discrete Gaussian noise, and a threshold τ below which keys are suppressed. The exact
δ(ε) is the maximum (not the sum) of the Gaussian and leak terms, which lowers
thresholds by ~4–7 % against the add-the-deltas bound used by prior libraries.

This package never imports torch; DuckDB, pandas and pyspark are imported only by the
engine that needs them.

Example:
    >>> from tessera.privacy.gshm import calibrate, delta_exact
    >>> p = calibrate(1.0, 1e-5, k=10)
    >>> bool(delta_exact(1.0, sigma=p.sigma, tau=p.tau, k=10) <= 1e-5)
    True
"""

from __future__ import annotations

from tessera.privacy.gshm._accounting import (
    GSHMTerms,
    delta_additive,
    delta_exact,
    delta_gaussian,
    epsilon_exact,
    gshm_terms,
)
from tessera.privacy.gshm._calibrate import (
    AdditiveParams,
    GSHMParams,
    ThresholdSavings,
    calibrate,
    calibrate_additive,
    gaussian_mu,
    threshold_savings,
)
from tessera.privacy.gshm._events import BudgetLedger, GSHMEvent, PLDExport
from tessera.privacy.gshm._release import (
    ReleaseResult,
    integer_threshold,
    release,
    release_from_counts,
)
from tessera.privacy.gshm._sampler import IntegerRNG, discrete_gaussian, discrete_gaussian_pmf

__all__ = [
    "AdditiveParams",
    "BudgetLedger",
    "GSHMEvent",
    "GSHMParams",
    "GSHMTerms",
    "IntegerRNG",
    "PLDExport",
    "ReleaseResult",
    "ThresholdSavings",
    "calibrate",
    "calibrate_additive",
    "delta_additive",
    "delta_exact",
    "delta_gaussian",
    "discrete_gaussian",
    "discrete_gaussian_pmf",
    "epsilon_exact",
    "gaussian_mu",
    "gshm_terms",
    "integer_threshold",
    "release",
    "release_from_counts",
    "threshold_savings",
]
