"""Engines that aggregate bipartite edge tables into sufficient statistics.

* ``numpy``: in memory (the reference implementation).
* ``duckdb`` (default): embedded SQL; reads Parquet/CSV files without loading them
  into RAM and spills to disk, so edge tables may exceed memory.
* ``spark``: a local (loopback-only) or existing Spark session.

Every engine returns NumPy arrays (:class:`UnitStats`, :class:`RandomizationSums`,
:class:`GraphStats`); the statistics in :mod:`tessera.interference.bipartite` are
written once on those arrays. Identifiers are quoted and values bound as parameters.

Example:
    >>> get_engine("numpy").name
    'numpy'
"""

from __future__ import annotations

from typing import Any

from tessera._validate import check_choice
from tessera.interference.engines._base import (
    Columns,
    Engine,
    GraphStats,
    RandomizationSums,
    UnitStats,
    quote_ident,
)
from tessera.interference.engines._duckdb import DuckDBEngine
from tessera.interference.engines._numpy import NumpyEngine
from tessera.interference.engines._spark import SparkEngine, local_session

__all__ = [
    "ENGINES",
    "Columns",
    "DuckDBEngine",
    "Engine",
    "GraphStats",
    "NumpyEngine",
    "RandomizationSums",
    "SparkEngine",
    "UnitStats",
    "get_engine",
    "local_session",
    "quote_ident",
]

ENGINES = ("duckdb", "numpy", "spark")


def get_engine(engine: Any) -> Any:
    """Return an engine instance from a name or pass an instance through.

    Args:
        engine: ``"duckdb"``, ``"numpy"``, ``"spark"`` or an engine instance.

    Returns:
        The engine.

    Raises:
        UnsupportedError: for an unknown name.
    """
    if not isinstance(engine, str) and all(
        hasattr(engine, m) for m in ("prepare", "unit_stats", "randomization_sums")
    ):
        return engine
    check_choice("engine", engine, ENGINES)
    if engine == "numpy":
        return NumpyEngine()
    if engine == "duckdb":
        return DuckDBEngine()
    return SparkEngine()
