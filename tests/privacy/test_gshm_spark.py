"""Spark engine parity for GSHM releases (local[2], loopback only)."""

from __future__ import annotations

import os
import random
import warnings

import numpy as np
import pandas as pd
import pytest

from tessera.privacy.gshm import calibrate, release

pytestmark = pytest.mark.spark


@pytest.fixture(scope="session")
def spark():
    pyspark_sql = pytest.importorskip("pyspark.sql")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", os.sys.executable)
    with warnings.catch_warnings():
        # JVM start-up emits pyspark's own DeprecationWarnings/ResourceWarnings
        # (socket handling in py4j); they are not ours to fix.
        warnings.simplefilter("ignore")
        session = (
            pyspark_sql.SparkSession.builder.master("local[2]")
            .appName("tessera-gshm-tests")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.driver.host", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "4")
            .getOrCreate()
        )
    yield session
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        session.stop()


# pyspark 4.x warns that pandas >= 3 is not fully supported when converting frames;
# the conversion of this plain int/float frame is checked by the parity assertions.
@pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas:FutureWarning")
@pytest.mark.filterwarnings("ignore::DeprecationWarning:pyspark.*")
@pytest.mark.filterwarnings("ignore::ResourceWarning")
def test_spark_matches_duckdb(spark, seed: int) -> None:
    rs = np.random.default_rng(seed)
    n = 20_000
    df = pd.DataFrame(
        {
            "user id": rs.integers(0, 2_000, n),
            "key": (rs.zipf(1.4, n) % 200).astype(np.int64),
            "v": rs.integers(-3, 8, n).astype(np.float64),
        }
    )
    p = calibrate(1.0, 1e-6, k=2, value_bound=5.0)
    ref = release(
        df, key="key", user="user id", value="v", params=p, engine="duckdb", rng=random.Random(seed)
    )
    sdf = spark.createDataFrame(df)
    out = release(
        sdf, key="key", user="user id", value="v", params=p, engine="spark", rng=random.Random(seed)
    )
    assert np.array_equal(np.asarray(out.keys, dtype=np.int64), ref.keys)
    assert np.array_equal(out.counts, ref.counts)
    assert np.array_equal(out.sums, ref.sums)
