"""Engine contract: the sufficient statistics every engine returns as NumPy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from tessera.errors import ValidationError

__all__ = [
    "Columns",
    "Engine",
    "GraphStats",
    "RandomizationSums",
    "UnitStats",
    "quote_ident",
]


def quote_ident(name: str) -> str:
    """Quote an SQL identifier (double quotes, embedded quotes doubled).

    Args:
        name: a column or table name, any characters.

    Returns:
        The quoted identifier; ``x; DROP TABLE y`` becomes ``"x; DROP TABLE y"``.

    Raises:
        ValidationError: if ``name`` is not a non-empty string or contains a NUL byte.
    """
    if not isinstance(name, str) or not name or "\x00" in name:
        raise ValidationError(
            f"identifier must be a non-empty string without NUL bytes, got {name!r}"
        )
    return '"' + name.replace('"', '""') + '"'


@dataclass(frozen=True, kw_only=True)
class Columns:
    """Column names of the three input tables.

    Attributes:
        analysis_id: edge and outcome tables: the analysis-unit id (e.g. user).
        randomization_id: edge and assignment tables: the randomization-unit id.
        weight: edge table: the edge weight ``w_ij >= 0``.
        treated: assignment table: the realised assignment ``Z_j`` in {0, 1}.
        p: assignment table: the design probability ``P(Z_j = 1)`` in (0, 1).
        outcome: outcome table: the experiment-period outcome ``Y_i``.
    """

    analysis_id: str = "analysis_id"
    randomization_id: str = "randomization_id"
    weight: str = "weight"
    treated: str = "treated"
    p: str = "p"
    outcome: str = "outcome"


@dataclass(frozen=True, kw_only=True)
class UnitStats:
    """Per-analysis-unit sufficient statistics, sorted by analysis id.

    Only units with positive exposure variance are kept; ``n_dropped`` counts the others.

    Attributes:
        ids: shape (n,), analysis-unit ids (sorted).
        x: shape (n,), float64, realised exposure ``Σ_j w_ij Z_j``.
        mu: shape (n,), float64, ``E x_i = Σ_j w_ij p_j``.
        s2: shape (n,), float64, ``Var x_i = Σ_j w_ij² p_j (1 - p_j)``, all > 0.
        deg: shape (n,), int64, number of edges of the unit.
        y: shape (n,), float64, outcome.
        X: shape (n, q), float64, covariates in the requested order.
        n_dropped: outcome rows dropped for zero exposure variance.
        dropped_examples: up to five ids of dropped units.
    """

    ids: np.ndarray
    x: np.ndarray
    mu: np.ndarray
    s2: np.ndarray
    deg: np.ndarray
    y: np.ndarray
    X: np.ndarray
    n_dropped: int
    dropped_examples: tuple[Any, ...] = field(default=())


@dataclass(frozen=True, kw_only=True)
class RandomizationSums:
    """Per-randomization-unit sums for coefficient arrays ``c`` and ``g``.

    Attributes:
        ids: shape (m,), randomization-unit ids (sorted, all assignment rows).
        p: shape (m,), float64, design probabilities.
        C: shape (m,), float64, ``C_j = Σ_i c_i w_ij``.
        G: shape (m,), float64, ``G_jj = Σ_i g_i w_ij²``.
        q_full: float, ``Σ_{j,k} v_j v_k (Σ_i g_i w_ij w_ik)²`` with ``v = p(1 - p)``
            (the self-join on the analysis unit; ``Σ_i deg_i²`` pair rows).
    """

    ids: np.ndarray
    p: np.ndarray
    C: np.ndarray
    G: np.ndarray
    q_full: float


@dataclass(frozen=True, kw_only=True)
class GraphStats:
    """Per-randomization-unit graph totals used by the sparsity diagnostics.

    Attributes:
        ids: shape (m,), randomization-unit ids (sorted, all assignment rows).
        p: shape (m,), float64, design probabilities.
        weight: shape (m,), float64, ``Σ_i w_ij`` over retained units (normalised weights).
        degree: shape (m,), int64, edges of each randomization unit.
        max_analysis_degree: largest number of edges of one analysis unit.
        n_edges: number of edges of retained units.
    """

    ids: np.ndarray
    p: np.ndarray
    weight: np.ndarray
    degree: np.ndarray
    max_analysis_degree: int
    n_edges: int


class Engine(Protocol):
    """What an engine provides: aggregations that return NumPy arrays.

    The statistics (estimates, variances, intervals) live in
    :mod:`tessera.interference.bipartite` and only see these arrays.
    """

    name: str

    def prepare(
        self,
        edges: Any,
        assignments: Any,
        outcomes: Any,
        *,
        columns: Columns,
        covariates: tuple[str, ...],
        normalize: bool,
    ) -> Any:
        """Load and validate the three tables; return an engine-specific handle."""
        ...

    def unit_stats(self, handle: Any) -> UnitStats:
        """Exposure moments, outcomes and covariates per retained analysis unit."""
        ...

    def randomization_sums(
        self, handle: Any, ids: np.ndarray, c: np.ndarray, g: np.ndarray
    ) -> RandomizationSums:
        """Sums of ``c_i w_ij`` and ``g_i w_ij²`` per j, and the quadratic self-join."""
        ...

    def replicate_sums(
        self, handle: Any, ids: np.ndarray, c: np.ndarray, g: np.ndarray, e: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """For centred replicate assignments ``e`` (m, B): ``Σ_i c_i u_ib``, ``Σ_i g_i u_ib²``."""
        ...

    def column_totals(self, handle: Any, ids: np.ndarray, V: np.ndarray) -> np.ndarray:
        """``Wᵀ V``: for per-analysis-unit columns ``V`` (n, L), ``Σ_i w_ij V_il`` (m, L)."""
        ...

    def row_totals(self, handle: Any, ids: np.ndarray, M: np.ndarray) -> np.ndarray:
        """``W M``: for per-randomization-unit columns ``M`` (m, L), ``Σ_j w_ij M_jl`` (n, L)."""
        ...

    def graph_stats(self, handle: Any) -> GraphStats:
        """Totals for the sparsity diagnostics."""
        ...

    def close(self, handle: Any) -> None:
        """Release temporary tables or views."""
        ...


# Order in which input problems are reported; each engine counts them and passes
# {check: (count, example)} to raise_problems, so every engine raises the same error.
_CHECKS: dict[str, str] = {
    "null": "{table}.{column} has {count} missing (NULL/NaN) value(s), e.g. at row with {example}; fill or drop them before the analysis",
    "nonfinite": "{table}.{column} has {count} infinite value(s), e.g. {example}; pass finite numbers",
    "negative_weight": "edges.{column} has {count} negative weight(s), e.g. {example}; weights must be >= 0",
    "duplicate_edge": "edges has {count} duplicate (analysis, randomization) pair(s), e.g. {example}; aggregate duplicate edges (sum their weights) first",
    "duplicate_outcome": "outcomes has {count} duplicate analysis id(s), e.g. {example}; keep one row per analysis unit",
    "duplicate_assignment": "assignments has {count} duplicate randomization id(s), e.g. {example}; keep one row per randomization unit",
    "bad_treated": "assignments.{column} has {count} value(s) not in {{0, 1}}, e.g. {example}; pass 0/1 or booleans",
    "bad_p": "assignments.{column} has {count} design probabilit(ies) outside (0, 1), e.g. {example}; p must satisfy 0 < p < 1 (units with p in {{0, 1}} carry no randomization and must be removed)",
    "unknown_analysis": "edges.{column} has {count} edge(s) whose analysis id is not in outcomes, e.g. {example}; add the units to outcomes or drop the edges",
    "unknown_randomization": "edges.{column} has {count} edge(s) whose randomization id is not in assignments, e.g. {example}; add the units to assignments or drop the edges",
}


def raise_problems(problems: list[tuple[str, str, str, int, Any]]) -> None:
    """Raise a ValidationError for the first problem in the canonical order.

    Args:
        problems: ``(check, table, column, count, example)`` tuples; entries with
            ``count == 0`` are ignored. ``check`` is a key of the canonical order.

    Raises:
        ValidationError: describing the first problem (and how many others exist).
    """
    found = [pr for pr in problems if pr[3] > 0]
    if not found:
        return
    order = list(_CHECKS)
    found.sort(key=lambda pr: order.index(pr[0]))
    check, table, column, count, example = found[0]
    msg = _CHECKS[check].format(table=table, column=column, count=count, example=example)
    if len(found) > 1:
        msg += f" ({len(found) - 1} further problem(s) not shown)"
    raise ValidationError(msg)


def check_columns(table: str, available: list[str], required: list[tuple[str, str]]) -> None:
    """Raise ValidationError if a required column is missing.

    Args:
        table: the table's role (``edges``, ``assignments``, ``outcomes``).
        available: its column names.
        required: ``(role, name)`` pairs, e.g. ``("weight", "w")``.

    Raises:
        ValidationError: naming the missing column, the parameter that sets it and the
            available columns.
    """
    for role, name in required:
        if name not in available:
            raise ValidationError(
                f"{table} has no column {name!r} (the {role} column); available columns: "
                f"{available}; pass columns=Columns({role}=...) or covariates=[...] naming "
                "an existing column"
            )
