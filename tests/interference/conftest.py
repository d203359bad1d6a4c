"""One local, loopback-only SparkSession for the Spark tests of this area."""

from __future__ import annotations

import os
import warnings

import pytest


@pytest.fixture(scope="session")
def spark():
    pytest.importorskip("pyspark")
    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    from tessera.interference.engines import local_session

    with warnings.catch_warnings():
        # pyspark 4.3 warns at start-up that pandas >= 3 is "not yet fully supported";
        # that is Spark's notice about its own pandas integration, not a tessera issue.
        warnings.filterwarnings("ignore", message=".*pandas.*", module="pyspark.*")
        session = local_session("local[2]")
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
