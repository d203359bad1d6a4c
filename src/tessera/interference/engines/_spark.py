"""The Spark engine: the same joins and GROUP BYs as the DuckDB engine, on DataFrames.

Column names are referenced with back-quoted identifiers through the DataFrame API,
never pasted into SQL text. A session created here is local and loopback-only
(``SPARK_LOCAL_IP``, ``spark.driver.host`` and ``spark.driver.bindAddress`` are
127.0.0.1, the UI is off).

Spark pays a fixed cost per action (planning, scheduling, a sort's sampling pass), so
each method runs as few actions as it can: per-unit results come back unsorted through
Arrow and are placed by id in NumPy (the sorted randomization ids are read once per
handle), and the replicate sums keep the ``B`` replicates as ``B`` columns of one
GROUP BY i instead of ``B |E|`` rows of a GROUP BY (i, b).
"""

from __future__ import annotations

import os
import re
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
    raise_problems,
)
from tessera.interference.engines._io import table_kind

__all__ = ["SparkEngine", "local_session"]

_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double", "boolean", "decimal")


def local_session(
    master: str = "local[2]", *, shuffle_partitions: int = 4, driver_memory: str = "4g"
) -> Any:
    """Get or create a loopback-only local SparkSession.

    Args:
        master: Spark master URL, ``local[k]``.
        shuffle_partitions: ``spark.sql.shuffle.partitions`` (small for local runs).
        driver_memory: JVM heap (``spark.driver.memory``; in local mode the executors run
            in the driver). Spark's 1g default runs out of heap near 1e7 edges. It takes
            effect only when this call starts the JVM, not on an existing session.

    Returns:
        A ``pyspark.sql.SparkSession``.

    Raises:
        ValidationError: if ``master`` is not a ``local`` master.
    """
    if not master.startswith("local"):
        raise ValidationError(
            f"master must be a local master such as 'local[2]', got {master!r}; pass your "
            "own session with SparkEngine(session=...) for a cluster"
        )
    if not re.fullmatch(r"[1-9][0-9]*[kmgt]?", str(driver_memory).lower()):
        raise ValidationError(
            f"driver_memory must be a JVM size such as '4g' or '512m', got {driver_memory!r}"
        )
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    sql = require("pyspark.sql")
    return (
        sql.SparkSession.builder.master(master)
        .appName("tessera-bipartite")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.driver.memory", str(driver_memory))
        .config("spark.ui.showConsoleProgress", "false")  # no stage bars over CLI output
        .config("spark.sql.shuffle.partitions", str(int(shuffle_partitions)))
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .getOrCreate()
    )


def _c(name: str) -> Any:
    F = require("pyspark.sql.functions")
    return F.col("`" + name.replace("`", "``") + "`")


@dataclass
class _Handle:
    spark: Any
    e: Any = None  # (i, j, w) raw
    a: Any = None  # (j, z, p)
    o: Any = None  # (i, y, x0..)
    en: Any = None  # normalised edges
    units: Any = None  # retained units with stats
    q: int = 0
    cached: list[Any] = field(default_factory=list)
    rids: Any = None  # sorted randomization ids, read once
    rp: Any = None  # p in the order of rids


def _place(keys: np.ndarray, d: Any, key: str, cols: list[str]) -> np.ndarray:
    """Rows of the frame ``d`` at the positions of ``d[key]`` in ``keys``; zeros elsewhere.

    Args:
        keys: shape (k,), unique ids that index the result.
        d: pandas frame with column ``key`` and ``cols``; rows whose key is not in
            ``keys`` are ignored.
        key: the id column of ``d``.
        cols: the value columns, in result order.

    Returns:
        Shape (k, len(cols)), float64.
    """
    pd = require("pandas")
    out = np.zeros((len(keys), len(cols)))
    pos = pd.Index(keys).get_indexer(d[key])
    keep = pos >= 0
    out[pos[keep]] = d[cols].to_numpy(dtype=np.float64)[keep]
    return out


def _weighted_totals(h: _Handle, key: str, keys: np.ndarray, M: Any, *, by: str) -> Any:
    """Spark frame of ``Σ w · M[:, k]`` over the edges, grouped by ``by``, as columns t{k}.

    Args:
        h: the prepared handle (its edges ``h.en`` have columns i, j, w).
        key: the edge column that indexes the rows of ``M`` (``"i"`` or ``"j"``).
        keys: shape (r,), the ids of the rows of ``M``.
        M: shape (r, L), float64.
        by: the edge column to group by (the other one).

    Returns:
        A DataFrame with columns ``by``, t0 ... t{L-1} (one row per id of ``by`` that
        has an edge to a row of ``M``): one join and one GROUP BY with L sums.
    """
    F = require("pyspark.sql.functions")
    pd = require("pandas")
    M = np.asarray(M, dtype=np.float64)
    cols: dict[str, Any] = {key: keys}
    cols.update({f"m{k}": M[:, k] for k in range(M.shape[1])})
    right = h.spark.createDataFrame(pd.DataFrame(cols))
    return (
        h.en.join(right, on=key)
        .groupBy(by)
        .agg(*(F.sum(F.col("w") * F.col(f"m{k}")).alias(f"t{k}") for k in range(M.shape[1])))
    )


class SparkEngine:
    """Aggregate with Spark DataFrames.

    Args:
        session: an existing ``SparkSession``; default: :func:`local_session` with
            ``master``.
        master: local master used when no session is given.

    Example:
        >>> SparkEngine().name
        'spark'
    """

    name = "spark"

    def __init__(self, *, session: Any = None, master: str = "local[2]") -> None:
        self.session = session
        self.master = master

    def _df(self, spark: Any, obj: Any, role: str) -> Any:
        kind = table_kind(obj)
        if kind == "spark":
            return obj
        if kind == "path":
            from pathlib import Path

            path = Path(obj)
            if not path.exists():
                raise ValidationError(
                    f"{role}: file {str(path)!r} does not exist; pass an existing path"
                )
            if path.suffix.lower() in (".csv", ".tsv"):
                sep = "\t" if path.suffix.lower() == ".tsv" else ","
                return spark.read.csv(str(path), header=True, inferSchema=True, sep=sep)
            return spark.read.parquet(str(path))
        if kind == "name":
            if not spark.catalog.tableExists(obj):
                raise ValidationError(
                    f"{role}: no Spark table named {obj!r}; pass an existing table"
                )
            return spark.table(obj)
        pd = require("pandas")
        if kind == "arrow":
            frame = obj.to_pandas()
        elif kind == "mapping":
            frame = pd.DataFrame(dict(obj))
        elif kind == "duckdb":
            frame = obj.df()
        else:
            frame = obj
        return spark.createDataFrame(frame)

    @staticmethod
    def _numeric(df: Any, table: str, cols: list[str]) -> None:
        types = dict(df.dtypes)
        for col in cols:
            if not types[col].lower().startswith(_NUMERIC):
                raise ValidationError(
                    f"{table}.{col} must be numeric, got type {types[col]}; pass numbers"
                )

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
        """Build DataFrames over the inputs and validate them with aggregations.

        Args:
            edges: edge table (analysis id, randomization id, weight).
            assignments: assignment table (randomization id, treated, p).
            outcomes: outcome table (analysis id, outcome, covariates).
            columns: the column names.
            covariates: covariate column names in the outcome table.
            normalize: divide weights by their per-analysis-unit sum.

        Returns:
            The engine handle.

        Raises:
            ValidationError: for missing columns, missing or non-finite values,
                negative weights, duplicates, unknown ids, treated not 0/1 or p not in (0, 1).
        """
        F = require("pyspark.sql.functions")
        spark = self.session if self.session is not None else local_session(self.master)
        c = columns
        E = self._df(spark, edges, "edges")
        A = self._df(spark, assignments, "assignments")
        O = self._df(spark, outcomes, "outcomes")  # noqa: E741
        check_columns(
            "edges",
            list(E.columns),
            [
                ("analysis_id", c.analysis_id),
                ("randomization_id", c.randomization_id),
                ("weight", c.weight),
            ],
        )
        check_columns(
            "assignments",
            list(A.columns),
            [("randomization_id", c.randomization_id), ("treated", c.treated), ("p", c.p)],
        )
        check_columns(
            "outcomes",
            list(O.columns),
            [("analysis_id", c.analysis_id), ("outcome", c.outcome)]
            + [("covariate", k) for k in covariates],
        )
        self._numeric(E, "edges", [c.weight])
        self._numeric(A, "assignments", [c.treated, c.p])
        self._numeric(O, "outcomes", [c.outcome, *covariates])
        dbl = "double"
        e = E.select(
            _c(c.analysis_id).alias("i"),
            _c(c.randomization_id).alias("j"),
            _c(c.weight).cast(dbl).alias("w"),
        )
        a = A.select(
            _c(c.randomization_id).alias("j"),
            _c(c.treated).cast(dbl).alias("z"),
            _c(c.p).cast(dbl).alias("p"),
        )
        o = O.select(
            _c(c.analysis_id).alias("i"),
            _c(c.outcome).cast(dbl).alias("y"),
            *[_c(k).cast(dbl).alias(f"x{n}") for n, k in enumerate(covariates)],
        )
        h = _Handle(spark=spark, e=e, a=a, o=o, q=len(covariates))

        def cnt(cond: Any) -> Any:
            return F.sum(F.when(cond, 1).otherwise(0))

        def mn(col: str, cond: Any) -> Any:
            return F.min(F.when(cond, F.col(col)))

        def isnull(col: str) -> Any:
            return F.col(col).isNull() | F.isnan(F.col(col))

        def isinf(col: str) -> Any:
            return F.abs(F.col(col)) == float("inf")

        r = e.agg(
            cnt(F.col("i").isNull()),
            cnt(F.col("j").isNull()),
            cnt(isnull("w")),
            cnt(isinf("w")),
            mn("w", isinf("w")),
            cnt(F.col("w") < 0),
            mn("w", F.col("w") < 0),
        ).collect()[0]
        problems: list[tuple[str, str, str, int, Any]] = [
            ("null", "edges", c.analysis_id, int(r[0] or 0), None),
            ("null", "edges", c.randomization_id, int(r[1] or 0), None),
            ("null", "edges", c.weight, int(r[2] or 0), None),
            ("nonfinite", "edges", c.weight, int(r[3] or 0), r[4]),
            ("negative_weight", "edges", c.weight, int(r[5] or 0), r[6]),
        ]
        badz = ~F.col("z").isin(0.0, 1.0)
        badp = ~((F.col("p") > 0) & (F.col("p") < 1))
        r = a.agg(
            cnt(F.col("j").isNull()),
            cnt(isnull("z")),
            cnt(isnull("p")),
            cnt(isinf("p")),
            mn("p", isinf("p")),
            cnt(badz),
            mn("z", badz),
            cnt(badp),
            mn("p", badp),
        ).collect()[0]
        problems += [
            ("null", "assignments", c.randomization_id, int(r[0] or 0), None),
            ("null", "assignments", c.treated, int(r[1] or 0), None),
            ("null", "assignments", c.p, int(r[2] or 0), None),
            ("nonfinite", "assignments", c.p, int(r[3] or 0), r[4]),
            ("bad_treated", "assignments", c.treated, int(r[5] or 0), r[6]),
            ("bad_p", "assignments", c.p, int(r[7] or 0), r[8]),
        ]
        ocols = ["y", *(f"x{n}" for n in range(len(covariates)))]
        aggs = [cnt(F.col("i").isNull())]
        for col in ocols:
            aggs += [cnt(isnull(col)), cnt(isinf(col)), mn(col, isinf(col))]
        r = o.agg(*aggs).collect()[0]
        problems.append(("null", "outcomes", c.analysis_id, int(r[0] or 0), None))
        for n, name in enumerate([c.outcome, *covariates]):
            problems.append(("null", "outcomes", name, int(r[1 + 3 * n] or 0), None))
            problems.append(("nonfinite", "outcomes", name, int(r[2 + 3 * n] or 0), r[3 + 3 * n]))
        raise_problems(problems)
        for key, df, col, tbl, cname in (
            ("duplicate_outcome", o, "i", "outcomes", c.analysis_id),
            ("duplicate_assignment", a, "j", "assignments", c.randomization_id),
        ):
            r = (
                df.groupBy(col)
                .count()
                .where(F.col("count") > 1)
                .agg(F.sum(F.col("count") - 1), F.min(col))
                .collect()[0]
            )
            problems.append((key, tbl, cname, int(r[0] or 0), r[1]))
        r = (
            e.groupBy("i", "j")
            .count()
            .where(F.col("count") > 1)
            .agg(F.sum(F.col("count") - 1), F.min(F.struct("i", "j")))
            .collect()[0]
        )
        problems.append(
            (
                "duplicate_edge",
                "edges",
                "",
                int(r[0] or 0),
                tuple(r[1]) if r[1] is not None else None,
            )
        )
        r = e.join(o, on="i", how="left_anti").agg(F.count(F.lit(1)), F.min("i")).collect()[0]
        problems.append(("unknown_analysis", "edges", c.analysis_id, int(r[0] or 0), r[1]))
        r = e.join(a, on="j", how="left_anti").agg(F.count(F.lit(1)), F.min("j")).collect()[0]
        problems.append(
            ("unknown_randomization", "edges", c.randomization_id, int(r[0] or 0), r[1])
        )
        raise_problems(problems)

        if normalize:
            tot = e.groupBy("i").agg(F.sum("w").alias("tot")).where(F.col("tot") > 0)
            en = e.join(tot, on="i").select("i", "j", (F.col("w") / F.col("tot")).alias("w"))
        else:
            en = e
        en = en.cache()
        h.cached.append(en)
        s = (
            en.join(a, on="j")
            .groupBy("i")
            .agg(
                F.sum(F.col("w") * F.col("z")).alias("x"),
                F.sum(F.col("w") * F.col("p")).alias("mu"),
                F.sum(F.col("w") * F.col("w") * F.col("p") * (1 - F.col("p"))).alias("s2"),
                F.count(F.lit(1)).alias("deg"),
            )
            .where(F.col("s2") > 0)
        )
        units = o.join(s, on="i").cache()
        h.cached.append(units)
        h.en, h.units = en, units
        return h

    def unit_stats(self, handle: _Handle) -> UnitStats:
        """Exposure moments, outcomes and covariates per retained analysis unit.

        Args:
            handle: from :meth:`prepare`.

        Returns:
            The per-unit arrays (sorted by analysis id).
        """
        F = require("pyspark.sql.functions")
        h = handle
        cols = ["i", "x", "mu", "s2", "deg", "y", *(f"x{n}" for n in range(h.q))]
        d = h.units.select(*cols).toPandas().sort_values("i", kind="stable")
        # units = outcomes joined with one row per exposed unit, and outcome ids are
        # unique (prepare checks), so the dropped units are the difference in counts
        n_dropped = int(h.o.count()) - len(d)
        ex: list[Any] = []
        if n_dropped:
            dropped = h.o.join(h.units, on="i", how="left_anti")
            ex = [row[0] for row in dropped.select("i").orderBy(F.col("i")).limit(5).collect()]
        X = (
            np.column_stack([d[f"x{n}"].to_numpy(dtype=np.float64) for n in range(h.q)])
            if h.q
            else np.zeros((len(d), 0))
        )
        return UnitStats(
            ids=d["i"].to_numpy(),
            x=d["x"].to_numpy(dtype=np.float64),
            mu=d["mu"].to_numpy(dtype=np.float64),
            s2=d["s2"].to_numpy(dtype=np.float64),
            deg=d["deg"].to_numpy(dtype=np.int64),
            y=d["y"].to_numpy(dtype=np.float64),
            X=X,
            n_dropped=n_dropped,
            dropped_examples=tuple(ex),
        )

    @staticmethod
    def _assignments(h: _Handle) -> tuple[np.ndarray, np.ndarray]:
        """The sorted randomization ids and their p (one Arrow read per handle)."""
        if h.rids is None:
            d = h.a.select("j", "p").toPandas().sort_values("j", kind="stable")
            h.rids = d["j"].to_numpy()
            h.rp = d["p"].to_numpy(dtype=np.float64)
        return h.rids, h.rp

    def _coef(self, h: _Handle, ids: np.ndarray, c: np.ndarray, g: np.ndarray) -> Any:
        pd = require("pandas")
        return h.spark.createDataFrame(
            pd.DataFrame({"i": ids, "c": np.asarray(c, float), "g": np.asarray(g, float)})
        )

    def randomization_sums(
        self, handle: _Handle, ids: np.ndarray, c: np.ndarray, g: np.ndarray
    ) -> RandomizationSums:
        """Per-randomization-unit sums and the quadratic self-join total.

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids.
            c: shape (n,), float64, linear coefficients.
            g: shape (n,), float64, quadratic coefficients.

        Returns:
            The sums; see :class:`RandomizationSums`.
        """
        F = require("pyspark.sql.functions")
        h = handle
        rids, rp = self._assignments(h)
        ew = h.en.join(self._coef(h, ids, c, g), on="i").cache()  # read twice below
        s = ew.groupBy("j").agg(
            F.sum(F.col("c") * F.col("w")).alias("C"),
            F.sum(F.col("g") * F.col("w") * F.col("w")).alias("G"),
        )
        CG = _place(rids, s.toPandas(), "j", ["C", "G"])
        x = ew.select("i", F.col("j").alias("j1"), F.col("w").alias("w1"), "g")
        y = h.en.select("i", F.col("j").alias("j2"), F.col("w").alias("w2"))
        pr = (  # D is symmetric: pairs with j1 <= j2 only, off-diagonal pairs counted twice
            x.join(y, on="i")
            .where(F.col("j1") <= F.col("j2"))
            .groupBy("j1", "j2")
            .agg(F.sum(F.col("g") * F.col("w1") * F.col("w2")).alias("d"))
        )
        av = h.a.select("j", (F.col("p") * (1 - F.col("p"))).alias("v"))
        q = (
            pr.join(av.withColumnRenamed("j", "j1").withColumnRenamed("v", "v1"), on="j1")
            .join(av.withColumnRenamed("j", "j2").withColumnRenamed("v", "v2"), on="j2")
            .agg(
                F.sum(
                    F.when(F.col("j1") == F.col("j2"), 1.0).otherwise(2.0)
                    * F.col("v1")
                    * F.col("v2")
                    * F.col("d")
                    * F.col("d")
                )
            )
            .collect()[0][0]
        )
        ew.unpersist()
        return RandomizationSums(
            ids=rids.copy(),
            p=rp.copy(),
            C=CG[:, 0],
            G=CG[:, 1],
            q_full=float(q or 0.0),
        )

    def replicate_sums(
        self, handle: _Handle, ids: np.ndarray, c: np.ndarray, g: np.ndarray, e: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-replicate sums ``Σ_i c_i u_ib`` and ``Σ_i g_i u_ib²`` (one GROUP BY i).

        The ``B`` replicates are ``B`` columns: one join of the edges with an (m, B)
        table, one GROUP BY i with ``B`` sums, one global sum with ``2B``.

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
        F = require("pyspark.sql.functions")
        h = handle
        rids, _ = self._assignments(h)
        B = np.shape(e)[1]
        ub = _weighted_totals(h, "j", rids, e, by="i")  # u{b}_i = Σ_j w_ij e_jb as t{b}
        r = (
            ub.join(self._coef(h, ids, c, g), on="i")
            .agg(
                *(F.sum(F.col("c") * F.col(f"t{b}")) for b in range(B)),
                *(F.sum(F.col("g") * F.col(f"t{b}") * F.col(f"t{b}")) for b in range(B)),
            )
            .collect()[0]
        )
        s = np.array([float(v or 0.0) for v in r])
        return s[:B], s[B:]

    def column_totals(self, handle: _Handle, ids: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Per-randomization-unit totals ``Σ_i w_ij V_il`` (``Wᵀ V``): one GROUP BY j.

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids (rows of ``V``).
            V: shape (n, L), float64.

        Returns:
            Shape (m, L), float64, rows in the order of the sorted randomization ids.
        """
        rids, _ = self._assignments(handle)
        s = _weighted_totals(handle, "i", ids, V, by="j")
        return _place(rids, s.toPandas(), "j", [f"t{k}" for k in range(np.shape(V)[1])])

    def row_totals(self, handle: _Handle, ids: np.ndarray, M: np.ndarray) -> np.ndarray:
        """Per-analysis-unit totals ``Σ_j w_ij M_jl`` (``W M``): one GROUP BY i.

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids (rows of the result).
            M: shape (m, L), float64, rows in the order of the sorted randomization ids.

        Returns:
            Shape (n, L), float64.
        """
        rids, _ = self._assignments(handle)
        s = _weighted_totals(handle, "j", rids, M, by="i")
        return _place(np.asarray(ids), s.toPandas(), "i", [f"t{k}" for k in range(np.shape(M)[1])])

    def graph_stats(self, handle: _Handle) -> GraphStats:
        """Totals for the sparsity diagnostics.

        Args:
            handle: from :meth:`prepare`.

        Returns:
            Weight and degree per randomization unit, the largest analysis degree.
        """
        F = require("pyspark.sql.functions")
        h = handle
        s = (
            h.en.join(h.units.select("i"), on="i", how="left_semi")
            .groupBy("j")
            .agg(F.sum("w").alias("w"), F.count(F.lit(1)).alias("n"))
        )
        rids, rp = self._assignments(h)
        wn = _place(rids, s.toPandas(), "j", ["w", "n"])
        r = h.units.agg(F.max("deg"), F.sum("deg")).collect()[0]
        return GraphStats(
            ids=rids.copy(),
            p=rp.copy(),
            weight=wn[:, 0],
            degree=wn[:, 1].astype(np.int64),
            max_analysis_degree=int(r[0] or 0),
            n_edges=int(r[1] or 0),
        )

    def close(self, handle: _Handle) -> None:
        """Unpersist cached DataFrames (the session stays up for reuse).

        Args:
            handle: from :meth:`prepare`.
        """
        for df in handle.cached:
            df.unpersist()
