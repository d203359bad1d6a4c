"""GSHM benchmark: accounting speed, release throughput, and savings against baselines.

1. Time per ``delta_exact`` call (k = 10, 1 000, 51 914) and per ``calibrate`` call.
2. Release throughput (rows/s) of ``tessera.privacy.gshm.release`` per engine on 1e6
   rows (1e7 with ``--full``; Spark only with ``--spark``, it starts a local JVM).
3. At (ε, δ) = (1, 1e-5) and across k: threshold τ and noise sd of exact GSHM against
   add-the-deltas (best split and Google's even split), Laplace thresholding (Wilson
   et al. 2020 / Google ``LaplacePartitionSelection``: b = k/ε,
   τ = 1 − b ln(2 δ_adj)) and two-sided geometric thresholding (discrete Laplace with
   α = e^{−ε/k}; the smallest integer τ with leak 1 − (1 − α^{τ−1}/(1+α))^k <= δ).
   For symmetric noise the number of users a key needs for a 50 % release chance is τ.

Nothing here asserts wall-clock numbers. Usage:
    .venv/bin/python benchmarks/gshm.py               # ~1-2 min on 2 cores
    .venv/bin/python benchmarks/gshm.py --full        # adds 1e7 rows (several minutes)
    .venv/bin/python benchmarks/gshm.py --spark       # adds the Spark engine
    .venv/bin/python benchmarks/gshm.py --out /tmp/gshm.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import random
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tessera.privacy.gshm import (
    calibrate,
    calibrate_additive,
    delta_exact,
    release,
)

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "gshm.json"
EPS, DELTA = 1.0, 1e-5
KS = (1, 2, 3, 5, 10, 100, 1000, 51914)


def _atomic_write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def _timeit(fn: Any, repeat: int) -> float:
    best = math.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_accounting() -> list[dict[str, Any]]:
    rows = []
    for k in (10, 1000, 51914):
        p = calibrate(EPS, DELTA, k=k)
        t_delta = _timeit(lambda p=p, k=k: delta_exact(EPS, sigma=p.sigma, tau=p.tau, k=k), 20)
        t_cal = _timeit(lambda k=k: calibrate(EPS, DELTA, k=k), 5)
        rows.append({"k": k, "delta_exact_s": t_delta, "calibrate_s": t_cal})
    return rows


def laplace_threshold(k: int) -> tuple[float, float]:
    b = k / EPS
    d_adj = -math.expm1(math.log1p(-DELTA) / k)
    return 1 - b * math.log(2 * d_adj), math.sqrt(2) * b


def geometric_threshold(k: int) -> tuple[float, float]:
    a = math.exp(-EPS / k)
    d_adj = -math.expm1(math.log1p(-DELTA) / k)
    # P[G >= m] = a^m / (1 + a) for m >= 1; need it <= d_adj at m = τ − 1
    m = max(1, math.ceil(math.log(d_adj * (1 + a)) / math.log(a)))
    return 1 + m, math.sqrt(2 * a) / (1 - a)


def bench_savings() -> list[dict[str, Any]]:
    rows = []
    for k in KS:
        ex = calibrate(EPS, DELTA, k=k)
        best = calibrate_additive(EPS, DELTA, k=k, split="best")
        even = calibrate_additive(EPS, DELTA, k=k, split="even")
        lap_tau, lap_sd = laplace_threshold(k)
        geo_tau, geo_sd = geometric_threshold(k)
        rows.append(
            {
                "k": k,
                "gshm_sigma": ex.sigma,
                "gshm_tau": ex.tau,
                "add_best_sigma": best.sigma,
                "add_best_tau": best.tau,
                "add_even_sigma": even.sigma,
                "add_even_tau": even.tau,
                "laplace_tau": lap_tau,
                "laplace_sd": lap_sd,
                "geometric_tau": geo_tau,
                "geometric_sd": geo_sd,
                "tau_saving_vs_best": 1 - (ex.tau - 1) / (best.tau - 1),
                "tau_saving_vs_even": 1 - (ex.tau - 1) / (even.tau - 1),
                "sigma_saving_vs_best": 1 - ex.sigma / best.sigma,
            }
        )
    return rows


def _data(n: int, seed: int = 0) -> pd.DataFrame:
    rs = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user": rs.integers(0, max(n // 20, 1), n),
            "key": (rs.zipf(1.3, n) % 100_000).astype(np.int64),
        }
    )


def bench_release(sizes: tuple[int, ...], engines: tuple[str, ...]) -> list[dict[str, Any]]:
    rows = []
    p = calibrate(EPS, DELTA, k=5)
    spark = None
    if "spark" in engines:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        from pyspark.sql import SparkSession

        spark = (
            SparkSession.builder.master("local[2]")
            .config("spark.driver.bindAddress", "127.0.0.1")
            .config("spark.ui.enabled", "false")
            .config("spark.sql.shuffle.partitions", "8")
            .getOrCreate()
        )
    for n in sizes:
        df = _data(n)
        for engine in engines:
            data: Any = df
            if engine == "spark":
                assert spark is not None
                data = spark.createDataFrame(df).cache()
                data.count()
            t0 = time.perf_counter()
            r = release(data, key="key", user="user", params=p, engine=engine, rng=random.Random(0))
            dt = time.perf_counter() - t0
            rows.append(
                {
                    "engine": engine,
                    "rows": n,
                    "seconds": dt,
                    "rows_per_s": n / dt,
                    "released": int(r.keys.size),
                }
            )
            print(
                f"  release {engine:7s} n={n:>9,d}: {dt:7.2f} s ({n / dt:,.0f} rows/s)", flush=True
            )
    if spark is not None:
        spark.stop()
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--full", action="store_true", help="also 1e7 rows")
    ap.add_argument("--spark", action="store_true", help="also the Spark engine")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    args = ap.parse_args()
    load0 = os.getloadavg()
    acc = bench_accounting()
    print("accounting (best of repeats):")
    print(f"{'k':>7} {'delta_exact':>12} {'calibrate':>11}")
    for r in acc:
        print(f"{r['k']:>7} {r['delta_exact_s'] * 1e3:>10.2f}ms {r['calibrate_s'] * 1e3:>9.2f}ms")
    sav = bench_savings()
    print(f"\nthresholds at epsilon={EPS}, delta={DELTA} (tau ~ users needed for 50% release):")
    print(
        f"{'k':>6} {'GSHM tau':>10} {'add best':>10} {'add even':>10} {'Laplace':>10} {'geometric':>10} "
        f"{'save/best':>9} {'GSHM sd':>9} {'Lap sd':>9}"
    )
    for r in sav:
        print(
            f"{r['k']:>6} {r['gshm_tau']:>10.2f} {r['add_best_tau']:>10.2f} {r['add_even_tau']:>10.2f} "
            f"{r['laplace_tau']:>10.2f} {r['geometric_tau']:>10.0f} {r['tau_saving_vs_best'] * 100:>8.2f}% "
            f"{r['gshm_sigma']:>9.2f} {r['laplace_sd']:>9.2f}"
        )
    sizes = (1_000_000, 10_000_000) if args.full else (1_000_000,)
    engines = ("numpy", "duckdb", "spark") if args.spark else ("numpy", "duckdb")
    print("\nrelease throughput (k = 5):")
    rel = bench_release(sizes, engines)
    payload = {
        "created": datetime.now(UTC).isoformat(),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_start": load0,
            "load_end": os.getloadavg(),
        },
        "epsilon": EPS,
        "delta": DELTA,
        "accounting": acc,
        "savings": sav,
        "release": rel,
    }
    _atomic_write(Path(args.out), json.dumps(payload, indent=2))
    print(f"\nwrote {args.out}")


if __name__ == "__main__":
    main()
