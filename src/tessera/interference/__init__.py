"""Experiments under interference (NumPy/SciPy statistics; never imports torch).

Subpackages:

* :mod:`tessera.interference.bipartite`: ERL and CA-ERL estimators of the total
  treatment effect in bipartite experiments, their exact design variance, Wald and
  replicate confidence intervals, and sparsity diagnostics.
* :mod:`tessera.interference.engines`: the ``numpy``, ``duckdb`` (default) and
  ``spark`` engines that aggregate edge tables into sufficient statistics.
* :mod:`tessera.interference.simulate`: synthetic bipartite experiments with known
  effects.

Importing this package imports neither DuckDB, pandas nor Spark; engines import
them when they run.
"""

from __future__ import annotations

__all__: list[str] = []
