"""Spark engine parity with NumPy and DuckDB (acceptance 2), including replicate mode."""

from __future__ import annotations

import numpy as np
import pytest

from tessera.errors import ValidationError
from tessera.interference.bipartite import ca_erl, erl
from tessera.interference.engines import SparkEngine
from tessera.interference.simulate import bipartite

pytestmark = [
    pytest.mark.spark,
    pytest.mark.slow,  # JVM start-up plus Spark's per-query overhead: ~60-90 s on 2 cores
    # pyspark's pandas-conversion notices (pandas >= 3 "not yet fully supported") are
    # Spark's own and carry no information about our results.
    pytest.mark.filterwarnings("ignore::UserWarning:pyspark.*"),
    pytest.mark.filterwarnings("ignore::FutureWarning:pyspark.*"),
    pytest.mark.filterwarnings("ignore::DeprecationWarning:pyspark.*"),
]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"variance": "exact"},
        {"variance": "replicate", "replicates": 20, "rng": 4},
        {"covariates": ["y_pre"], "adjustment": "in_sample"},
        {
            "covariates": ["y_pre"],
            "adjustment": "in_sample",
            "variance": "replicate",
            "replicates": 20,
            "rng": 4,
        },
    ],
)
def test_spark_parity(spark, kwargs) -> None:
    sim = bipartite(800, 120, graph="sparse", tau=3.0, rng=1)
    e, a, o = sim.tables()
    fn = ca_erl if "covariates" in kwargs else erl
    ref = fn(e, a, o, engine="numpy", **kwargs)
    db = fn(e, a, o, engine="duckdb", **kwargs)
    sk = fn(spark.createDataFrame(e), a, o, engine=SparkEngine(session=spark), **kwargs)
    for r in (db, sk):
        np.testing.assert_allclose(r.estimate, ref.estimate, rtol=1e-9)
        np.testing.assert_allclose(r.se, ref.se, rtol=1e-9)
        assert r.n_analysis == ref.n_analysis


def test_spark_validation(spark) -> None:
    sim = bipartite(50, 10, rng=1)
    e, a, o = sim.tables()
    with pytest.raises(ValidationError, match="negative weight"):
        erl(e.assign(weight=-1.0), a, o, engine=SparkEngine(session=spark))
    with pytest.raises(ValidationError, match="not in assignments"):
        erl(e, a.iloc[1:], o, engine=SparkEngine(session=spark))
