"""Engine parity (acceptance 2), input validation (5) and SQL-injection safety."""

from __future__ import annotations

from pathlib import Path

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tessera.errors import UnsupportedError, ValidationError
from tessera.interference.bipartite import Columns, SparsityWarning, ca_erl, erl
from tessera.interference.engines import DuckDBEngine, quote_ident
from tessera.interference.simulate import bipartite

RTOL = 1e-9  # float64 sums in a different order: ~1e-13 expected, 1e-9 required


@pytest.fixture(scope="module")
def sim():
    return bipartite(3000, 300, graph="sparse", tau=2.0, r2=0.8, rng=11)


def _close(a, b) -> None:
    np.testing.assert_allclose(a.estimate, b.estimate, rtol=RTOL, atol=1e-12)
    np.testing.assert_allclose(a.se, b.se, rtol=RTOL, atol=1e-12)
    assert a.n_analysis == b.n_analysis
    assert a.n_randomization == b.n_randomization


@pytest.mark.parametrize(
    "kwargs",
    [
        {"variance": "exact"},
        {"variance": "linear"},
        {"variance": "replicate", "replicates": 40, "rng": 5},
        {"covariates": ["y_pre"], "adjustment": "pre_period"},
        {"covariates": ["y_pre"], "adjustment": "in_sample"},
        {"covariates": ["y_pre"], "adjustment": "cross_fit", "folds": 3, "rng": 2},
        {
            "covariates": ["y_pre"],
            "adjustment": "in_sample",
            "variance": "replicate",
            "replicates": 20,
            "rng": 9,
        },
    ],
)
def test_numpy_duckdb_parity(sim, kwargs) -> None:
    e, a, o = sim.tables()
    fn = ca_erl if "covariates" in kwargs else erl
    r_np = fn(e, a, o, engine="numpy", **kwargs)
    r_db = fn(e, a, o, engine="duckdb", **kwargs)
    _close(r_np, r_db)
    assert r_np.diagnostics["sparsity"] == pytest.approx(r_db.diagnostics["sparsity"], rel=1e-12)


def test_input_kinds_agree(sim, tmp_path: Path) -> None:
    e, a, o = sim.tables()
    ref = erl(e, a, o, engine="numpy")
    e.to_parquet(tmp_path / "e.parquet")
    a.to_csv(tmp_path / "a.csv", index=False)
    _close(ref, erl(tmp_path / "e.parquet", str(tmp_path / "a.csv"), pa.Table.from_pandas(o)))
    _close(ref, erl(str(tmp_path / "e.parquet"), tmp_path / "a.csv", o, engine="numpy"))
    con = duckdb.connect()
    con.register("e_src", e)
    con.execute("CREATE TABLE edges_t AS SELECT * FROM e_src")
    rel = con.sql("SELECT * FROM e_src")
    eng = DuckDBEngine(connection=con)
    _close(ref, erl("edges_t", a, {k: o[k].to_numpy() for k in o.columns}, engine=eng))
    _close(ref, erl(rel, a, o, engine=eng))
    # the caller's connection is left clean and open
    assert con.execute("SELECT count(*) FROM edges_t").fetchall()[0][0] == len(e)
    left = con.execute(
        "SELECT count(*) FROM duckdb_views() WHERE view_name LIKE '_tessera%'"
    ).fetchall()
    assert left[0][0] == 0


def test_replicate_se_agrees_with_exact(sim) -> None:
    """Replicate SD over B=400 draws estimates the exact SD with relative SE ≈ 1/sqrt(2B) = 3.5%;
    a 20% tolerance is > 5 SE (deterministic with the fixed seed)."""
    e, a, o = sim.tables()
    ex = ca_erl(e, a, o, covariates=["y_pre"], adjustment="in_sample", engine="numpy")
    rp = ca_erl(
        e,
        a,
        o,
        covariates=["y_pre"],
        adjustment="in_sample",
        engine="numpy",
        variance="replicate",
        replicates=400,
        rng=3,
    )
    assert rp.se == pytest.approx(ex.se, rel=0.2)
    assert rp.estimate == ex.estimate


def test_zero_exposure_units_are_dropped_and_reported() -> None:
    e = pd.DataFrame(
        {"analysis_id": [1, 2, 3], "randomization_id": [1, 2, 2], "weight": [1.0, 1.0, 0.0]}
    )
    a = pd.DataFrame({"randomization_id": [1, 2], "treated": [1, 0], "p": [0.5, 0.5]})
    o = pd.DataFrame({"analysis_id": [1, 2, 3, 4], "outcome": [1.0, 2.0, 3.0, 4.0]})
    for engine in ("numpy", "duckdb"):
        with pytest.warns(SparsityWarning):
            r = erl(e, a, o, engine=engine)
        assert r.n_analysis == 2
        assert r.diagnostics["n_dropped_zero_exposure_variance"] == 2
        assert sorted(r.diagnostics["dropped_examples"]) == [3, 4]


def _base():
    e = pd.DataFrame(
        {"analysis_id": [1, 2, 2], "randomization_id": [10, 10, 20], "weight": [1.0, 0.5, 0.5]}
    )
    a = pd.DataFrame({"randomization_id": [10, 20], "treated": [1, 0], "p": [0.5, 0.4]})
    o = pd.DataFrame({"analysis_id": [1, 2], "outcome": [1.0, 2.0], "x": [0.1, 0.2]})
    return e, a, o


@pytest.mark.parametrize("engine", ["numpy", "duckdb"])
@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda e, a, o: e.assign(weight=[1.0, -0.5, 0.5]), "negative weight"),
        (lambda e, a, o: pd.concat([e, e.iloc[[0]]]), "duplicate"),
        (lambda e, a, o: e.assign(analysis_id=[1, 2, 99]), "not in outcomes"),
        (lambda e, a, o: e.assign(randomization_id=[10, 10, 30]), "not in assignments"),
        (lambda e, a, o: e.assign(weight=[1.0, np.nan, 0.5]), "missing"),
        (lambda e, a, o: e.assign(weight=[1.0, np.inf, 0.5]), "infinite"),
        (lambda e, a, o: e.rename(columns={"weight": "w"}), "no column 'weight'"),
    ],
)
def test_bad_edges(engine, mutate, match) -> None:
    e, a, o = _base()
    with pytest.raises(ValidationError, match=match):
        erl(mutate(e, a, o), a, o, engine=engine)


@pytest.mark.parametrize("engine", ["numpy", "duckdb"])
@pytest.mark.parametrize(
    ("mutate", "match"),
    [
        (lambda a: a.assign(p=[0.5, 1.0]), r"outside \(0, 1\)"),
        (lambda a: a.assign(p=[0.0, 0.5]), r"outside \(0, 1\)"),
        (lambda a: a.assign(treated=[1, 2]), "not in"),
        (lambda a: pd.concat([a, a.iloc[[0]]]), "duplicate randomization"),
        (lambda a: a.assign(p=["a", "b"]), "numeric"),
    ],
)
def test_bad_assignments(engine, mutate, match) -> None:
    e, a, o = _base()
    with pytest.raises(ValidationError, match=match):
        erl(e, mutate(a), o, engine=engine)


@pytest.mark.parametrize("engine", ["numpy", "duckdb"])
def test_bad_outcomes_and_arguments(engine, tmp_path: Path) -> None:
    e, a, o = _base()
    with pytest.raises(ValidationError, match="duplicate analysis"):
        erl(e, a, pd.concat([o, o.iloc[[0]]]), engine=engine)
    with pytest.raises(ValidationError, match="missing"):
        erl(e, a, o.assign(outcome=[1.0, np.nan]), engine=engine)
    with pytest.raises(ValidationError, match="no column 'nope'"):
        ca_erl(e, a, o, covariates=["nope"], engine=engine)
    with pytest.raises(ValidationError, match="does not exist"):
        erl(tmp_path / "missing.parquet", a, o, engine=engine)
    with pytest.raises(ValidationError, match="level"):
        erl(e, a, o, engine=engine, level=1.5)
    with pytest.raises(UnsupportedError, match="variance"):
        erl(e, a, o, engine=engine, variance="bootstrap")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="coef"):
        ca_erl(e, a, o.assign(x2=1.0), covariates=["x", "x2"], engine=engine)
    with pytest.raises(ValidationError, match="covariates"):
        ca_erl(e, a, o, covariates="x", engine=engine)
    with pytest.raises(UnsupportedError, match="engine"):
        erl(e, a, o, engine="polars")


def test_table_name_needs_connection() -> None:
    _e, a, o = _base()
    with pytest.raises(ValidationError, match="connection"):
        erl("edges_table", a, o, engine="duckdb")
    con = duckdb.connect()
    with pytest.raises(ValidationError, match="no table or view"):
        erl("edges_table", a, o, engine=DuckDBEngine(connection=con))


def test_hostile_identifiers_are_harmless() -> None:
    """Column and table names are quoted; a name like `x; DROP TABLE y` is just a name."""
    bad = 'x; DROP TABLE y; --"'
    e, a, o = _base()
    e = e.rename(columns={"weight": bad})
    o = o.rename(columns={"x": 'cov"); DROP TABLE y; --'})
    con = duckdb.connect()
    con.execute("CREATE TABLE y AS SELECT 42 AS v")
    con.register("src", e)
    con.execute(f"CREATE TABLE {quote_ident(bad)} AS SELECT * FROM src")
    cols = Columns(weight=bad)
    with pytest.warns(SparsityWarning):
        r1 = ca_erl(
            bad,
            a,
            o,
            covariates=['cov"); DROP TABLE y; --'],
            columns=cols,
            engine=DuckDBEngine(connection=con),
            adjustment="pre_period",
        )
    with pytest.warns(SparsityWarning):
        r2 = ca_erl(
            e,
            a,
            o,
            covariates=['cov"); DROP TABLE y; --'],
            columns=cols,
            engine="numpy",
            adjustment="pre_period",
        )
    assert r1.estimate == pytest.approx(r2.estimate, rel=1e-12)
    assert con.execute("SELECT v FROM y").fetchall() == [(42,)]
    # two units and two fitted coefficients: the in-sample fit absorbs every exposure
    with pytest.raises(ValidationError, match="design bias factor B = 1"):
        ca_erl(
            bad,
            a,
            o,
            covariates=['cov"); DROP TABLE y; --'],
            columns=cols,
            engine=DuckDBEngine(connection=con),
            adjustment="in_sample",
        )
    assert con.execute("SELECT v FROM y").fetchall() == [(42,)]


def test_duckdb_config_from_parquet(sim, tmp_path: Path) -> None:
    """A memory-capped, single-thread DuckDB run from Parquet files gives the same answer."""
    e, a, o = sim.tables()
    for name, df in (("e", e), ("a", a), ("o", o)):
        df.to_parquet(tmp_path / f"{name}.parquet")
    eng = DuckDBEngine(threads=1, memory_limit="256MB", temp_directory=str(tmp_path / "spill"))
    r = erl(tmp_path / "e.parquet", tmp_path / "a.parquet", tmp_path / "o.parquet", engine=eng)
    _close(r, erl(e, a, o, engine="numpy"))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"master": "spark://host:7077"}, "master must be a local master"),
        ({"driver_memory": "lots"}, "driver_memory must be a JVM size"),
        ({"driver_memory": "0g"}, "driver_memory must be a JVM size"),
    ],
)
def test_local_session_rejects_bad_settings_before_starting_spark(kwargs, match) -> None:
    from tessera.interference.engines import local_session

    with pytest.raises(ValidationError, match=match):
        local_session(**kwargs)
