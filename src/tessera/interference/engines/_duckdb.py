"""The DuckDB engine: every aggregation is one join plus GROUP BY in embedded SQL.

Inputs given as Parquet/CSV paths are scanned by DuckDB (never loaded into Python),
so edge tables may be larger than memory; DuckDB streams the scans and spills hash
tables to ``temp_directory``. Identifiers are always quoted with :func:`quote_ident`;
user values never enter SQL text (file paths go through DuckDB's reader functions).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tessera._optional import require
from tessera.errors import ValidationError
from tessera.interference.engines._base import (
    Columns,
    GraphStats,
    RandomizationSums,
    UnitStats,
    check_columns,
    quote_ident,
    raise_problems,
)
from tessera.interference.engines._io import table_kind

__all__ = ["DuckDBEngine"]

_NUMERIC = (
    "TINYINT",
    "SMALLINT",
    "INTEGER",
    "BIGINT",
    "HUGEINT",
    "UTINYINT",
    "USMALLINT",
    "UINTEGER",
    "UBIGINT",
    "UHUGEINT",
    "FLOAT",
    "DOUBLE",
    "BOOLEAN",
    "DECIMAL",
)


@dataclass
class _Handle:
    con: Any
    prefix: str
    owns: bool
    q: int  # number of covariates
    views: list[str] = field(default_factory=list)
    tables: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)

    def n(self, suffix: str) -> str:
        return f"{self.prefix}_{suffix}"


class DuckDBEngine:
    """Aggregate with DuckDB (the default engine).

    Args:
        connection: an open ``duckdb`` connection to use; required when tables are
            given as table names or DuckDB relations (which must belong to it).
            Default: a fresh in-memory connection, closed after the analysis.
        threads: DuckDB worker threads (default: DuckDB's choice).
        temp_directory: where DuckDB spills intermediate results larger than memory.
        memory_limit: DuckDB memory limit such as ``"4GB"`` (default: DuckDB's 80% of RAM).

    Example:
        >>> DuckDBEngine(threads=1).name
        'duckdb'
    """

    name = "duckdb"

    def __init__(
        self,
        *,
        connection: Any = None,
        threads: int | None = None,
        temp_directory: str | None = None,
        memory_limit: str | None = None,
    ) -> None:
        self.connection = connection
        self.threads = threads
        self.temp_directory = temp_directory
        self.memory_limit = memory_limit

    # -- loading -----------------------------------------------------------------
    def _view_of(self, h: _Handle, obj: Any, role: str) -> str:
        con = h.con
        name = h.n(f"src_{role}")
        kind = table_kind(obj)
        if kind == "path":
            from pathlib import Path

            path = Path(obj)
            if not path.exists():
                raise ValidationError(
                    f"{role}: file {str(path)!r} does not exist; pass an existing path"
                )
            suffix = path.suffix.lower()
            rel = (
                con.read_csv(str(path), sep="\t" if suffix == ".tsv" else ",")
                if suffix in (".csv", ".tsv")
                else con.read_parquet(str(path))
            )
            rel.create_view(name)
        elif kind in ("pandas", "arrow", "mapping", "spark"):
            data = obj
            if kind == "mapping":
                pa = require("pyarrow")
                data = pa.table({k: np.asarray(v) for k, v in dict(obj).items()})
            elif kind == "spark":
                data = obj.toPandas()
            raw = h.n(f"raw_{role}")
            con.register(raw, data)
            h.registered.append(raw)
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM {raw}")
        elif kind == "duckdb":
            if self.connection is None:
                raise ValidationError(
                    f"{role} is a DuckDB relation; pass engine=DuckDBEngine(connection=con) "
                    "with the connection it belongs to"
                )
            obj.create_view(name)
        else:  # a table or view name in the connection
            if self.connection is None:
                raise ValidationError(
                    f"{role}={obj!r} is a table name; pass engine=DuckDBEngine(connection=con) "
                    "with the connection that holds it, or a .parquet/.csv path"
                )
            exists = con.execute(
                "SELECT count(*) FROM duckdb_tables() WHERE table_name = ? UNION ALL "
                "SELECT count(*) FROM duckdb_views() WHERE view_name = ?",
                [obj, obj],
            ).fetchall()
            if sum(r[0] for r in exists) == 0:
                raise ValidationError(
                    f"{role}: no table or view named {obj!r} in the DuckDB connection; "
                    "pass an existing table name"
                )
            con.execute(f"CREATE TEMP VIEW {name} AS SELECT * FROM {quote_ident(obj)}")
        h.views.append(name)
        return name

    def _describe(self, h: _Handle, view: str) -> dict[str, str]:
        rows = h.con.execute(f"DESCRIBE SELECT * FROM {view}").fetchall()
        return {str(r[0]): str(r[1]) for r in rows}

    @staticmethod
    def _numeric(types: dict[str, str], table: str, cols: list[str]) -> None:
        for col in cols:
            t = types[col].upper()
            if not t.startswith(_NUMERIC):
                raise ValidationError(f"{table}.{col} must be numeric, got type {t}; pass numbers")

    def prepare(
        self,
        edges: Any,
        assignments: Any,
        outcomes: Any,
        *,
        columns: Columns,
        covariates: tuple[str, ...],
        normalize: bool,
    ) -> _Handle:
        """Create views over the inputs and validate them with aggregate queries.

        Args:
            edges: edge table (analysis id, randomization id, weight).
            assignments: assignment table (randomization id, treated, p).
            outcomes: outcome table (analysis id, outcome, covariates).
            columns: the column names.
            covariates: covariate column names in the outcome table.
            normalize: divide weights by their per-analysis-unit sum.

        Returns:
            The engine handle (close it with :meth:`close`).

        Raises:
            ValidationError: for missing columns, missing or non-finite values,
                negative weights, duplicates, unknown ids, treated not 0/1 or p not in (0, 1).
        """
        duckdb = require("duckdb")
        owns = self.connection is None
        con = self.connection
        if con is None:
            config: dict[str, Any] = {}
            if self.threads is not None:
                config["threads"] = int(self.threads)
            if self.temp_directory is not None:
                config["temp_directory"] = str(self.temp_directory)
            if self.memory_limit is not None:
                config["memory_limit"] = str(self.memory_limit)
            con = duckdb.connect(":memory:", config=config)
        h = _Handle(
            con=con, prefix=f"_tessera_{uuid.uuid4().hex[:12]}", owns=owns, q=len(covariates)
        )
        try:
            self._prepare(h, edges, assignments, outcomes, columns, covariates, normalize)
        except BaseException:
            self.close(h)
            raise
        return h

    def _prepare(
        self,
        h: _Handle,
        edges: Any,
        assignments: Any,
        outcomes: Any,
        c: Columns,
        covariates: tuple[str, ...],
        normalize: bool,
    ) -> None:
        con = h.con
        ve = self._view_of(h, edges, "edges")
        va = self._view_of(h, assignments, "assignments")
        vo = self._view_of(h, outcomes, "outcomes")
        te, ta, to = self._describe(h, ve), self._describe(h, va), self._describe(h, vo)
        check_columns(
            "edges",
            list(te),
            [
                ("analysis_id", c.analysis_id),
                ("randomization_id", c.randomization_id),
                ("weight", c.weight),
            ],
        )
        check_columns(
            "assignments",
            list(ta),
            [("randomization_id", c.randomization_id), ("treated", c.treated), ("p", c.p)],
        )
        check_columns(
            "outcomes",
            list(to),
            [("analysis_id", c.analysis_id), ("outcome", c.outcome)]
            + [("covariate", k) for k in covariates],
        )
        self._numeric(te, "edges", [c.weight])
        self._numeric(ta, "assignments", [c.treated, c.p])
        self._numeric(to, "outcomes", [c.outcome, *covariates])
        Q = quote_ident
        E, A, O = h.n("e"), h.n("a"), h.n("o")  # noqa: E741
        con.execute(
            f"CREATE TEMP VIEW {E} AS SELECT {Q(c.analysis_id)} AS i, {Q(c.randomization_id)} AS j, "
            f"CAST({Q(c.weight)} AS DOUBLE) AS w FROM {ve}"
        )
        con.execute(
            f"CREATE TEMP VIEW {A} AS SELECT {Q(c.randomization_id)} AS j, "
            f"CAST({Q(c.treated)} AS DOUBLE) AS z, CAST({Q(c.p)} AS DOUBLE) AS p FROM {va}"
        )
        xs = "".join(f", CAST({Q(k)} AS DOUBLE) AS x{n}" for n, k in enumerate(covariates))
        con.execute(
            f"CREATE TEMP VIEW {O} AS SELECT {Q(c.analysis_id)} AS i, "
            f"CAST({Q(c.outcome)} AS DOUBLE) AS y{xs} FROM {vo}"
        )
        h.views += [E, A, O]

        def isnull(col: str) -> str:
            return f"({col} IS NULL OR isnan({col}))"

        r = con.execute(
            f"SELECT count(*) FILTER (WHERE i IS NULL), count(*) FILTER (WHERE j IS NULL), "
            f"count(*) FILTER (WHERE {isnull('w')}), count(*) FILTER (WHERE isinf(w)), "
            f"min(w) FILTER (WHERE isinf(w)), count(*) FILTER (WHERE w < 0), min(w) FILTER (WHERE w < 0) "
            f"FROM {E}"
        ).fetchall()[0]
        problems: list[tuple[str, str, str, int, Any]] = [
            ("null", "edges", c.analysis_id, r[0], None),
            ("null", "edges", c.randomization_id, r[1], None),
            ("null", "edges", c.weight, r[2], None),
            ("nonfinite", "edges", c.weight, r[3], r[4]),
            ("negative_weight", "edges", c.weight, r[5], r[6]),
        ]
        r = con.execute(
            f"SELECT count(*) FILTER (WHERE j IS NULL), count(*) FILTER (WHERE {isnull('z')}), "
            f"count(*) FILTER (WHERE {isnull('p')}), count(*) FILTER (WHERE isinf(p)), "
            f"min(p) FILTER (WHERE isinf(p)), count(*) FILTER (WHERE z NOT IN (0, 1)), "
            f"min(z) FILTER (WHERE z NOT IN (0, 1)), count(*) FILTER (WHERE NOT (p > 0 AND p < 1)), "
            f"min(p) FILTER (WHERE NOT (p > 0 AND p < 1)) FROM {A}"
        ).fetchall()[0]
        problems += [
            ("null", "assignments", c.randomization_id, r[0], None),
            ("null", "assignments", c.treated, r[1], None),
            ("null", "assignments", c.p, r[2], None),
            ("nonfinite", "assignments", c.p, r[3], r[4]),
            ("bad_treated", "assignments", c.treated, r[5], r[6]),
            ("bad_p", "assignments", c.p, r[7], r[8]),
        ]
        ocols = ["y", *(f"x{n}" for n in range(len(covariates)))]
        onames = [c.outcome, *covariates]
        sel = ", ".join(
            f"count(*) FILTER (WHERE {isnull(col)}), count(*) FILTER (WHERE isinf({col})), "
            f"min({col}) FILTER (WHERE isinf({col}))"
            for col in ocols
        )
        r = con.execute(f"SELECT count(*) FILTER (WHERE i IS NULL), {sel} FROM {O}").fetchall()[0]
        problems.append(("null", "outcomes", c.analysis_id, r[0], None))
        for n, name in enumerate(onames):
            problems.append(("null", "outcomes", name, r[1 + 3 * n], None))
            problems.append(("nonfinite", "outcomes", name, r[2 + 3 * n], r[3 + 3 * n]))
        raise_problems(problems)
        for key, tbl, col, cname in (
            ("duplicate_outcome", "outcomes", "i", c.analysis_id),
            ("duplicate_assignment", "assignments", "j", c.randomization_id),
        ):
            view = O if tbl == "outcomes" else A
            r = con.execute(
                f"SELECT COALESCE(sum(n - 1), 0), min(k) FROM "
                f"(SELECT {col} AS k, count(*) AS n FROM {view} GROUP BY {col} HAVING count(*) > 1)"
            ).fetchall()[0]
            problems.append((key, tbl, cname, int(r[0]), r[1]))
        r = con.execute(
            f"SELECT COALESCE(sum(n - 1), 0), min((i, j)) FROM "
            f"(SELECT i, j, count(*) AS n FROM {E} GROUP BY i, j HAVING count(*) > 1)"
        ).fetchall()[0]
        ex = tuple(r[1].values()) if isinstance(r[1], dict) else r[1]
        problems.append(("duplicate_edge", "edges", "", int(r[0]), ex))
        r = con.execute(
            f"SELECT count(*), min(e.i) FROM {E} e ANTI JOIN {O} o ON e.i = o.i"
        ).fetchall()[0]
        problems.append(("unknown_analysis", "edges", c.analysis_id, r[0], r[1]))
        r = con.execute(
            f"SELECT count(*), min(e.j) FROM {E} e ANTI JOIN {A} a ON e.j = a.j"
        ).fetchall()[0]
        problems.append(("unknown_randomization", "edges", c.randomization_id, r[0], r[1]))
        raise_problems(problems)

        EN, U = h.n("en"), h.n("units")
        if normalize:
            con.execute(
                f"CREATE TEMP VIEW {EN} AS SELECT e.i, e.j, e.w / t.tot AS w FROM {E} e JOIN "
                f"(SELECT i, sum(w) AS tot FROM {E} GROUP BY i HAVING sum(w) > 0) t ON e.i = t.i"
            )
        else:
            con.execute(f"CREATE TEMP VIEW {EN} AS SELECT i, j, w FROM {E}")
        h.views.append(EN)
        xsel = "".join(f", o.x{n}" for n in range(len(covariates)))
        con.execute(
            f"CREATE TEMP TABLE {U} AS SELECT o.i, s.x, s.mu, s.s2, s.deg, o.y{xsel} FROM {O} o JOIN "
            f"(SELECT en.i, sum(en.w * a.z) AS x, sum(en.w * a.p) AS mu, "
            f"sum(en.w * en.w * a.p * (1 - a.p)) AS s2, count(*) AS deg "
            f"FROM {EN} en JOIN {A} a ON en.j = a.j GROUP BY en.i) s ON o.i = s.i WHERE s.s2 > 0"
        )
        h.tables.append(U)

    # -- aggregations ------------------------------------------------------------
    def unit_stats(self, handle: _Handle) -> UnitStats:
        """Exposure moments, outcomes and covariates per retained analysis unit.

        Args:
            handle: from :meth:`prepare`.

        Returns:
            The per-unit arrays (sorted by analysis id).
        """
        h = handle
        xs = "".join(f", x{n}" for n in range(h.q))
        d = h.con.execute(
            f"SELECT i, x, mu, s2, deg, y{xs} FROM {h.n('units')} ORDER BY i"
        ).fetchnumpy()
        r = h.con.execute(
            f"SELECT count(*), list(i ORDER BY i)[1:5] FROM {h.n('o')} o "
            f"WHERE NOT EXISTS (SELECT 1 FROM {h.n('units')} u WHERE u.i = o.i)"
        ).fetchall()[0]
        X = (
            np.column_stack([np.asarray(d[f"x{n}"], dtype=np.float64) for n in range(h.q)])
            if h.q
            else np.zeros((len(d["i"]), 0))
        )
        return UnitStats(
            ids=np.asarray(d["i"]),
            x=np.asarray(d["x"], dtype=np.float64),
            mu=np.asarray(d["mu"], dtype=np.float64),
            s2=np.asarray(d["s2"], dtype=np.float64),
            deg=np.asarray(d["deg"], dtype=np.int64),
            y=np.asarray(d["y"], dtype=np.float64),
            X=X,
            n_dropped=int(r[0]),
            dropped_examples=tuple(r[1] or ()),
        )

    def _register_coef(self, h: _Handle, ids: np.ndarray, c: np.ndarray, g: np.ndarray) -> str:
        pa = require("pyarrow")
        name = h.n("coef")
        h.con.register(
            name, pa.table({"i": ids, "c": np.asarray(c, float), "g": np.asarray(g, float)})
        )
        if name not in h.registered:
            h.registered.append(name)
        return name

    def randomization_sums(
        self, handle: _Handle, ids: np.ndarray, c: np.ndarray, g: np.ndarray
    ) -> RandomizationSums:
        """Per-randomization-unit sums and the quadratic self-join total.

        The self-join on the analysis unit produces ``Σ_i deg_i²`` pair rows: linear in
        the number of edges when the analysis-unit degree is bounded.

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids.
            c: shape (n,), float64, linear coefficients.
            g: shape (n,), float64, quadratic coefficients.

        Returns:
            The sums; see :class:`RandomizationSums`.
        """
        h = handle
        cf = self._register_coef(h, ids, c, g)
        EN, A = h.n("en"), h.n("a")
        d = h.con.execute(
            f"SELECT a.j, a.p, COALESCE(s.C, 0), COALESCE(s.G, 0) FROM {A} a LEFT JOIN "
            f"(SELECT en.j, sum(cf.c * en.w) AS C, sum(cf.g * en.w * en.w) AS G "
            f"FROM {EN} en JOIN {cf} cf ON en.i = cf.i GROUP BY en.j) s ON a.j = s.j ORDER BY a.j"
        ).fetchnumpy()
        keys = list(d)
        r = h.con.execute(
            f"WITH ew AS (SELECT en.i, en.j, en.w, cf.g FROM {EN} en JOIN {cf} cf ON en.i = cf.i), "
            # D is symmetric: pairs with j <= k only, off-diagonal pairs counted twice
            f"pr AS (SELECT x.j AS j, y.j AS k, sum(x.g * x.w * y.w) AS d FROM ew x JOIN ew y "
            f"ON x.i = y.i AND x.j <= y.j GROUP BY x.j, y.j), "
            f"av AS (SELECT j, p * (1 - p) AS v FROM {A}) "
            f"SELECT COALESCE(sum(CASE WHEN pr.j = pr.k THEN 1.0 ELSE 2.0 END * va.v * vb.v "
            f"* pr.d * pr.d), 0) FROM pr JOIN av va ON pr.j = va.j "
            f"JOIN av vb ON pr.k = vb.j"
        ).fetchall()[0]
        return RandomizationSums(
            ids=np.asarray(d[keys[0]]),
            p=np.asarray(d[keys[1]], dtype=np.float64),
            C=np.asarray(d[keys[2]], dtype=np.float64),
            G=np.asarray(d[keys[3]], dtype=np.float64),
            q_full=float(r[0]),
        )

    def replicate_sums(
        self, handle: _Handle, ids: np.ndarray, c: np.ndarray, g: np.ndarray, e: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-replicate sums ``Σ_i c_i u_ib`` and ``Σ_i g_i u_ib²`` (one GROUP BY (i, b)).

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids.
            c: shape (n,), float64.
            g: shape (n,), float64.
            e: shape (m, B), float64, centred replicate assignments, rows in the order
                of the sorted randomization ids.

        Returns:
            Two arrays of shape (B,).
        """
        h = handle
        pa = require("pyarrow")
        cf = self._register_coef(h, ids, c, g)
        rids = h.con.execute(f"SELECT j FROM {h.n('a')} ORDER BY j").fetchnumpy()["j"]
        m, B = e.shape
        rep = h.n("rep")
        h.con.register(
            rep,
            pa.table(
                {
                    "j": np.repeat(np.asarray(rids), B),
                    "b": np.tile(np.arange(B, dtype=np.int64), m),
                    "e": np.ascontiguousarray(e, dtype=np.float64).ravel(),
                }
            ),
        )
        if rep not in h.registered:
            h.registered.append(rep)
        d = h.con.execute(
            f"WITH ub AS (SELECT en.i, r.b, sum(en.w * r.e) AS u FROM {h.n('en')} en "
            f"JOIN {rep} r ON en.j = r.j GROUP BY en.i, r.b) "
            f"SELECT ub.b, sum(cf.c * ub.u) AS s1, sum(cf.g * ub.u * ub.u) AS s2 FROM ub "
            f"JOIN {cf} cf ON ub.i = cf.i GROUP BY ub.b ORDER BY ub.b"
        ).fetchnumpy()
        s1 = np.zeros(B)
        s2 = np.zeros(B)
        s1[np.asarray(d["b"])] = d["s1"]
        s2[np.asarray(d["b"])] = d["s2"]
        return s1, s2

    def _register(self, h: _Handle, suffix: str, columns: dict[str, Any]) -> str:
        pa = require("pyarrow")
        name = h.n(suffix)
        h.con.register(name, pa.table(columns))
        if name not in h.registered:
            h.registered.append(name)
        return name

    def column_totals(self, handle: _Handle, ids: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Per-randomization-unit totals ``Σ_i w_ij V_il`` (``Wᵀ V``): one GROUP BY j.

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids (rows of ``V``).
            V: shape (n, L), float64.

        Returns:
            Shape (m, L), float64, rows in the order of the sorted randomization ids.
        """
        h = handle
        V = np.asarray(V, dtype=np.float64)
        L = V.shape[1]
        cols: dict[str, Any] = {"i": ids}
        cols.update({f"v{k}": np.ascontiguousarray(V[:, k]) for k in range(L)})
        cv = self._register(h, "colv", cols)
        sums = ", ".join(f"sum(en.w * cv.v{k}) AS t{k}" for k in range(L))
        outs = ", ".join(f"COALESCE(s.t{k}, 0) AS t{k}" for k in range(L))
        d = h.con.execute(
            f"SELECT a.j, {outs} FROM {h.n('a')} a LEFT JOIN (SELECT en.j, {sums} "
            f"FROM {h.n('en')} en JOIN {cv} cv ON en.i = cv.i GROUP BY en.j) s "
            f"ON a.j = s.j ORDER BY a.j"
        ).fetchnumpy()
        return np.column_stack([np.asarray(d[f"t{k}"], dtype=np.float64) for k in range(L)])

    def row_totals(self, handle: _Handle, ids: np.ndarray, M: np.ndarray) -> np.ndarray:
        """Per-analysis-unit totals ``Σ_j w_ij M_jl`` (``W M``): one GROUP BY i.

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids (rows of the result).
            M: shape (m, L), float64, rows in the order of the sorted randomization ids.

        Returns:
            Shape (n, L), float64.
        """
        h = handle
        M = np.asarray(M, dtype=np.float64)
        L = M.shape[1]
        rids = h.con.execute(f"SELECT j FROM {h.n('a')} ORDER BY j").fetchnumpy()["j"]
        cols: dict[str, Any] = {"j": np.asarray(rids)}
        cols.update({f"m{k}": np.ascontiguousarray(M[:, k]) for k in range(L)})
        rm = self._register(h, "rowm", cols)
        ix = self._register(h, "ids", {"i": ids, "pos": np.arange(len(ids), dtype=np.int64)})
        sums = ", ".join(f"sum(en.w * rm.m{k}) AS t{k}" for k in range(L))
        outs = ", ".join(f"COALESCE(s.t{k}, 0) AS t{k}" for k in range(L))
        d = h.con.execute(
            f"SELECT ix.pos, {outs} FROM {ix} ix LEFT JOIN (SELECT en.i, {sums} "
            f"FROM {h.n('en')} en JOIN {rm} rm ON en.j = rm.j GROUP BY en.i) s "
            f"ON ix.i = s.i ORDER BY ix.pos"
        ).fetchnumpy()
        return np.column_stack([np.asarray(d[f"t{k}"], dtype=np.float64) for k in range(L)])

    def graph_stats(self, handle: _Handle) -> GraphStats:
        """Totals for the sparsity diagnostics.

        Args:
            handle: from :meth:`prepare`.

        Returns:
            Weight and degree per randomization unit, the largest analysis degree.
        """
        h = handle
        EN, A, U = h.n("en"), h.n("a"), h.n("units")
        d = h.con.execute(
            f"SELECT a.j, a.p, COALESCE(s.w, 0) AS w, COALESCE(s.n, 0) AS n FROM {A} a LEFT JOIN "
            f"(SELECT en.j, sum(en.w) AS w, count(*) AS n FROM {EN} en SEMI JOIN {U} u "
            f"ON en.i = u.i GROUP BY en.j) s ON a.j = s.j ORDER BY a.j"
        ).fetchnumpy()
        r = h.con.execute(
            f"SELECT COALESCE(max(deg), 0), COALESCE(sum(deg), 0) FROM {U}"
        ).fetchall()[0]
        return GraphStats(
            ids=np.asarray(d["j"]),
            p=np.asarray(d["p"], dtype=np.float64),
            weight=np.asarray(d["w"], dtype=np.float64),
            degree=np.asarray(d["n"], dtype=np.int64),
            max_analysis_degree=int(r[0]),
            n_edges=int(r[1]),
        )

    def close(self, handle: _Handle) -> None:
        """Drop the temporary views and tables; close the connection if it was ours.

        Args:
            handle: from :meth:`prepare`.
        """
        h = handle
        if h.owns:
            h.con.close()
            return
        for name in h.tables:
            h.con.execute(f"DROP TABLE IF EXISTS {name}")
        for name in reversed(h.views):
            h.con.execute(f"DROP VIEW IF EXISTS {name}")
        for name in h.registered:
            h.con.unregister(name)
