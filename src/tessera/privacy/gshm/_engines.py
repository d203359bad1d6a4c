"""Engines for GSHM releases: they only aggregate, returning sufficient statistics.

Every engine computes, from rows ``(user, key[, value])``:

1. per (user, key): the row count clamped to Δ∞ and, with a value column, the value
   sum clamped to [−B, B] and truncated toward zero onto the grid g·Z (an integer
   number of grid units, so |contribution| <= B still holds);
2. per user, a random priority for each of its distinct keys, ``md5(salt | user |
   key)`` with a fresh secret salt per release, and keeps the k keys of smallest
   priority (``ROW_NUMBER()`` in SQL). The choice is uniform among the user's keys
   and never depends on the data values;
3. per key: the sum of the kept contributions.

The salt and hash are the same in every engine, so the same seed gives the same
statistics everywhere (parity tests). The mechanism (noise, threshold) lives in
:mod:`tessera.privacy.gshm._release` and runs on these arrays.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tessera._optional import require
from tessera.errors import ValidationError

__all__: list[str] = []


@dataclass(frozen=True, kw_only=True)
class Bounds:
    """Contribution bounds and the salt of one release (all public, none from data)."""

    k: int
    linf: int
    value_bound: float | None
    grid: float | None
    salt: str


@dataclass(frozen=True, kw_only=True)
class KeyStats:
    """Sufficient statistics per candidate key, sorted by key.

    Attributes:
        keys: shape (n_keys,), the keys.
        counts: shape (n_keys,), int64 bounded counts.
        sums: shape (n_keys,), int64 bounded value sums in grid units, or None.
    """

    keys: NDArray[Any]
    counts: NDArray[np.int64]
    sums: NDArray[np.int64] | None


def _sorted(keys: NDArray[Any], counts: Any, sums: Any) -> KeyStats:
    keys = np.asarray(keys)
    order = np.argsort(keys, kind="stable")
    c = np.asarray(counts, dtype=np.int64)[order]
    s = None if sums is None else np.asarray(sums, dtype=np.int64)[order]
    return KeyStats(keys=keys[order], counts=c, sums=s)


def _columns_of(data: Any) -> list[str]:
    if isinstance(data, dict):
        return list(data)
    cols = getattr(data, "columns", None)
    if cols is None:
        cols = getattr(data, "column_names", None)
    if cols is None:
        raise ValidationError(
            f"data must be a pandas DataFrame, a pyarrow Table, a dict of columns or a file "
            f"path, got {type(data).__name__}"
        )
    return [str(c) for c in cols]


def check_columns(data: Any, needed: dict[str, str | None]) -> None:
    """Raise ValidationError naming the missing column and the available ones."""
    cols = _columns_of(data)
    for param, name in needed.items():
        if name is not None and name not in cols:
            raise ValidationError(
                f"{param}={name!r} is not a column of data; available columns: {cols}"
            )


def _priority(salt: str, users: Any, keys: Any) -> NDArray[Any]:
    return np.array(
        [
            hashlib.md5(f"{salt}|{u}|{x}".encode(), usedforsecurity=False).hexdigest()
            for u, x in zip(users, keys, strict=True)
        ],
        dtype=object,
    )


def aggregate_numpy(
    data: Any, *, key: str, user: str, value: str | None, bounds: Bounds
) -> KeyStats:
    """In-memory engine (pandas group-bys on NumPy arrays)."""
    pd = require("pandas")
    if isinstance(data, str | Path):
        path = str(data)
        data = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_csv(path)
        check_columns(data, {"key": key, "user": user, "value": value})
    if isinstance(data, pd.DataFrame):
        df = data[[c for c in (user, key, value) if c is not None]]
    elif isinstance(data, dict):
        df = pd.DataFrame({c: np.asarray(data[c]) for c in (user, key, value) if c is not None})
    else:
        df = data.select([c for c in (user, key, value) if c is not None]).to_pandas()
    if df[user].isna().any() or df[key].isna().any():
        raise ValidationError(
            f"user column {user!r} or key column {key!r} holds missing values; drop or fill "
            "them before the release"
        )
    g = df.groupby([user, key], sort=False, dropna=False)
    pairs = g.size().rename("c").to_frame()
    pairs["c"] = np.minimum(pairs["c"].to_numpy(), bounds.linf)
    if value is not None:
        vs = g[value].sum().to_numpy(dtype=np.float64)
        if not np.isfinite(vs).all():
            raise ValidationError(f"value column {value!r} holds NaN or infinite values")
        assert bounds.value_bound is not None and bounds.grid is not None
        vs = np.clip(vs, -bounds.value_bound, bounds.value_bound)
        pairs["v"] = np.trunc(vs / bounds.grid).astype(np.int64)
    pairs = pairs.reset_index()
    pairs["p"] = _priority(bounds.salt, pairs[user].to_numpy(), pairs[key].to_numpy())
    pairs = pairs.sort_values([user, "p"], kind="stable")
    pairs = pairs[pairs.groupby(user, sort=False).cumcount() < bounds.k]
    agg = pairs.groupby(key, sort=False)
    counts = agg["c"].sum()
    sums = agg["v"].sum().to_numpy() if value is not None else None
    return _sorted(counts.index.to_numpy(), counts.to_numpy(), sums)


def _q(name: str, quote: str = '"') -> str:
    """Quote an SQL identifier (the quote character doubled inside)."""
    return quote + name.replace(quote, quote * 2) + quote


def _bounding_sql(
    src: str,
    key: str,
    user: str,
    value: str | None,
    param: Callable[[str], str],
    quote: str = '"',
) -> str:
    """The shared bounding query; ``param(name)`` renders a bound parameter."""
    u, x = _q(user, quote), _q(key, quote)
    vsel = ""
    vagg = ""
    if value is not None:
        v = _q(value, quote)
        clamped = f"GREATEST(LEAST(SUM(CAST({v} AS DOUBLE)), {param('vb')}), -{param('vb')})"
        vsel = (
            # truncation toward zero, written portably (CAST rounds in DuckDB, truncates in Spark)
            f", CAST(sign({clamped}) * floor(abs({clamped}) / {param('grid')}) AS BIGINT) AS v"
        )
        vagg = ", SUM(v) AS s"
    return (
        f"WITH pairs AS (SELECT {u} AS u, {x} AS x, LEAST(COUNT(*), {param('linf')}) AS c{vsel} "
        f"FROM {src} GROUP BY {u}, {x}), "
        f"ranked AS (SELECT *, ROW_NUMBER() OVER (PARTITION BY u ORDER BY "
        f"md5(concat({param('salt')}, '|', CAST(u AS STRING), '|', CAST(x AS STRING)))) AS r "
        f"FROM pairs) "
        f"SELECT x, SUM(c) AS n{vagg} FROM ranked WHERE r <= {param('k')} GROUP BY x"
    )


def _null_sql(src: str, key: str, user: str, quote: str = '"') -> str:
    u, x = _q(user, quote), _q(key, quote)
    return f"SELECT COUNT(*) FROM {src} WHERE {u} IS NULL OR {x} IS NULL"


def aggregate_duckdb(
    data: Any, *, key: str, user: str, value: str | None, bounds: Bounds
) -> KeyStats:
    """DuckDB engine: the bounding query runs inside DuckDB (embedded, in-process)."""
    duckdb = require("duckdb")
    con = duckdb.connect()
    try:
        if isinstance(data, str | Path):
            path = str(data)
            rel = con.read_parquet(path) if path.endswith(".parquet") else con.read_csv(path)
            rel.create_view("src")
            check_columns(
                {c: None for c in rel.columns}, {"key": key, "user": user, "value": value}
            )
        elif isinstance(data, dict):
            pd = require("pandas")
            frame = pd.DataFrame({c: np.asarray(v) for c, v in data.items()})
            con.register("src", frame)
        else:
            con.register("src", data)
        nulls = con.execute(_null_sql("src", key, user)).fetchone()
        if nulls is not None and nulls[0]:
            raise ValidationError(
                f"user column {user!r} or key column {key!r} holds {nulls[0]} missing "
                "value(s); drop or fill them before the release"
            )
        params: dict[str, Any] = {"linf": bounds.linf, "salt": bounds.salt, "k": bounds.k}
        if value is not None:
            params["vb"] = bounds.value_bound
            params["grid"] = bounds.grid
        sql = _bounding_sql("src", key, user, value, lambda n: f"${n}")
        res = con.execute(sql, params).fetchnumpy()
    finally:
        con.close()
    return _sorted(
        np.asarray(res["x"]),
        np.asarray(res["n"]),
        None if value is None else np.asarray(res["s"]),
    )


def aggregate_spark(
    data: Any, *, key: str, user: str, value: str | None, bounds: Bounds
) -> KeyStats:
    """Spark engine: the same bounding query through Spark SQL (named parameters)."""
    require("pyspark")
    from pyspark.sql import DataFrame, SparkSession

    spark = SparkSession.getActiveSession()
    if isinstance(data, str | Path) and spark is not None:
        path = str(data)
        reader = spark.read
        data = (
            reader.parquet(path)
            if path.endswith(".parquet")
            else reader.csv(path, header=True, inferSchema=True)
        )
        check_columns(data, {"key": key, "user": user, "value": value})
    if not isinstance(data, DataFrame):
        if spark is None:
            raise ValidationError(
                "engine='spark' needs an active SparkSession or a Spark DataFrame as data; "
                "create one with SparkSession.builder.getOrCreate()"
            )
        pd = require("pandas")
        if isinstance(data, dict):
            data = pd.DataFrame({c: np.asarray(v) for c, v in data.items()})
        if not isinstance(data, pd.DataFrame):
            data = data.to_pandas()
        data = spark.createDataFrame(data)
    spark = data.sparkSession
    view = f"tessera_gshm_{bounds.salt[:16]}"
    data.createOrReplaceTempView(view)
    try:
        nulls = spark.sql(_null_sql(view, key, user, "`")).collect()[0][0]
        if nulls:
            raise ValidationError(
                f"user column {user!r} or key column {key!r} holds {nulls} missing "
                "value(s); drop or fill them before the release"
            )
        params: dict[str, Any] = {"linf": bounds.linf, "salt": bounds.salt, "k": bounds.k}
        if value is not None:
            params["vb"] = float(bounds.value_bound or 0.0)
            params["grid"] = float(bounds.grid or 1.0)
        sql = _bounding_sql(view, key, user, value, lambda n: f":{n}", "`")
        rows = spark.sql(sql, args=params).collect()
    finally:
        spark.catalog.dropTempView(view)
    keys = np.array([r["x"] for r in rows], dtype=object if not rows else None)
    counts = np.array([int(r["n"]) for r in rows], dtype=np.int64)
    sums = None if value is None else np.array([int(r["s"]) for r in rows], dtype=np.int64)
    return _sorted(keys, counts, sums)
