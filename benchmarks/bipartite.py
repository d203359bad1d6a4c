"""Throughput of tessera.interference.bipartite ERL per engine (edges per second).

For each size (edges) a sparse synthetic bipartite experiment (analysis-unit degree
1 + Poisson(2), Zipf(0.3) group popularity, m = n / 5) is written to Parquet in
chunks, then ``erl`` runs end to end from the Parquet files (validation, exposures,
estimate, exact design variance or B replicates, diagnostics):

* ``numpy``: reads the files into memory;
* ``duckdb``: scans the Parquet files (out of core: never loads them into Python);
* ``spark``: ``local[2]``; its JVM start-up time is reported separately.

Exact-variance mode is compared with the replicate mode (``B`` re-randomizations);
estimates of all engines are checked against each other (max relative difference).

Usage:
    .venv/bin/python benchmarks/bipartite.py            # 1e6 and 1e7 edges, all engines, ~10 min on 2 cores
    .venv/bin/python benchmarks/bipartite.py --quick    # 1e5 and 1e6 edges, < 1 min + Spark start
    .venv/bin/python benchmarks/bipartite.py --large    # adds 1e8 edges on DuckDB (~30+ min, ~3 GB disk)
    .venv/bin/python benchmarks/bipartite.py --no-spark --out /tmp/bipartite.json
    .venv/bin/python benchmarks/bipartite.py --sizes 1e8 --no-spark --no-numpy --no-grid \
        --out benchmarks/results/bipartite_1e8.json     # the 1e8 DuckDB row alone
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tessera.interference import simulate
from tessera.interference.bipartite import SparsityWarning, erl, exact_design_variance
from tessera.interference.engines import DuckDBEngine, SparkEngine, local_session
from tessera.interference.engines._io import atomic_write_bytes

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "bipartite.json"
CHUNK_UNITS = 1_000_000


def write_experiment(folder: Path, n_edges: int, seed: int) -> dict[str, Any]:
    """Write edges/assignments/outcomes Parquet files with ~n_edges edges, in chunks."""
    rng = np.random.default_rng(seed)
    n = max(int(n_edges / 3), 10)
    m = max(n // 5, 2)
    pop = np.arange(1, m + 1, dtype=np.float64) ** -0.3
    cdf = np.cumsum(pop / pop.sum())
    p = np.full(m, 0.5)
    z = (rng.random(m) < p).astype(np.float64)
    pq.write_table(
        pa.table({"randomization_id": np.arange(m), "treated": z, "p": p}),
        folder / "assignments.parquet",
    )
    ew = pq.ParquetWriter(
        folder / "edges.parquet",
        pa.schema(
            [
                ("analysis_id", pa.int64()),
                ("randomization_id", pa.int64()),
                ("weight", pa.float64()),
            ]
        ),
    )
    ow = pq.ParquetWriter(
        folder / "outcomes.parquet",
        pa.schema(
            [("analysis_id", pa.int64()), ("outcome", pa.float64()), ("y_pre", pa.float64())]
        ),
    )
    total = 0
    for lo in range(0, n, CHUNK_UNITS):
        k = min(CHUNK_UNITS, n - lo)
        deg = 1 + rng.poisson(2.0, size=k)
        ei = np.repeat(np.arange(k), deg)
        ej = np.minimum(np.searchsorted(cdf, rng.random(len(ei))), m - 1)
        key = np.unique(ei.astype(np.int64) * m + ej)
        ei, ej = key // m, key % m
        w = rng.uniform(0.5, 1.5, size=len(ei))
        w /= np.bincount(ei, weights=w, minlength=k)[ei]
        x = np.bincount(ei, weights=w * z[ej], minlength=k)
        s = rng.standard_normal(k)
        alpha = 10 + 3 * (0.9 * s + np.sqrt(1 - 0.81) * rng.standard_normal(k))
        y = alpha + 2.0 * (1 + 0.5 * rng.standard_normal(k)) * x
        ew.write_table(pa.table({"analysis_id": ei + lo, "randomization_id": ej, "weight": w}))
        ow.write_table(
            pa.table({"analysis_id": np.arange(lo, lo + k), "outcome": y, "y_pre": 10 + 2.7 * s})
        )
        total += len(ei)
    ew.close()
    ow.close()
    return {"n_analysis": n, "n_randomization": m, "n_edges": total}


def variance_reduction_grid() -> list[dict[str, Any]]:
    """Var(CA-ERL) / Var(ERL) across level x graph x tau x r2 (n = 2000, m = 400, seed 0).

    Exact design variances (no Monte Carlo error) under the simulated potential outcomes:
    pre-period CA-ERL (h = y_pre, fixed) and in-sample CA-ERL (OLS on [1, y_pre] refitted
    at every assignment, divided by 1 - B; ``exact_design_variance(..., covariates=...)``,
    checked against full enumeration in tests/interference/test_bipartite_exact.py).
    """
    out = []
    cells = [
        (level, graph, tau, r2)
        for level in (10.0, 0.0)
        for graph in ("sparse", "dense")
        for tau in (0.5, 5.0, 20.0)
        for r2 in (0.0, 0.6, 0.8, 0.95)
    ]
    for level, graph, tau, r2 in cells:
        sim = simulate.bipartite(2000, 400, graph=graph, tau=tau, r2=r2, level=level, rng=0)
        W = sim.weights_matrix()
        v_erl = exact_design_variance(W, sim.p, sim.alpha, sim.beta).total
        v_pre = exact_design_variance(W, sim.p, sim.alpha - sim.y_pre, sim.beta).total
        dv_in = exact_design_variance(W, sim.p, sim.alpha, sim.beta, covariates=sim.y_pre)
        row = {
            "level": level,
            "graph": graph,
            "tau": tau,
            "r2": r2,
            "var_ratio_pre_period": v_pre / v_erl,
            "var_ratio_in_sample": dv_in.total / v_erl,
            "ci_width_ratio_pre_period": float(np.sqrt(v_pre / v_erl)),
            "ci_width_ratio_in_sample": float(np.sqrt(dv_in.total / v_erl)),
            "in_sample_bias_factor": dv_in.bias_factor,
            "in_sample_bias_over_sd": (dv_in.mean - sim.true_effect) / np.sqrt(dv_in.total),
        }
        out.append(row)
        print(
            f"level={level:4.1f} {graph:6s} tau={tau:5.1f} r2={r2:4.2f}  variance reduction: "
            f"pre-period {1 - row['var_ratio_pre_period']:7.1%}, "
            f"in-sample {1 - row['var_ratio_in_sample']:7.1%}",
            flush=True,
        )
    return out


def run_once(engine: Any, folder: Path, variance: str, replicates: int) -> tuple[float, Any]:
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SparsityWarning)
        res = erl(
            str(folder / "edges.parquet"),
            str(folder / "assignments.parquet"),
            str(folder / "outcomes.parquet"),
            engine=engine,
            variance=variance,
            replicates=replicates,
            rng=0,
        )
    return time.perf_counter() - t0, res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--large", action="store_true", help="add 1e8 edges on DuckDB")
    ap.add_argument("--no-spark", action="store_true")
    ap.add_argument("--replicates", type=int, default=20)
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--no-grid", action="store_true", help="skip the variance-reduction grid")
    ap.add_argument(
        "--sizes", help="comma-separated edge counts, e.g. 1e8 (overrides the defaults)"
    )
    ap.add_argument("--no-numpy", action="store_true")
    args = ap.parse_args()
    sizes = [100_000, 1_000_000] if args.quick else [1_000_000, 10_000_000]
    if args.large:
        sizes.append(100_000_000)
    if args.sizes:
        sizes = [int(float(x)) for x in args.sizes.split(",")]
    load0 = os.getloadavg()
    rows: list[dict[str, Any]] = []
    spark_engine = None
    spark_startup = None
    if not args.no_spark:
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        t0 = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            session = local_session("local[2]")
            session.sparkContext.setLogLevel("ERROR")
            session.range(1).count()
        spark_startup = time.perf_counter() - t0
        spark_engine = SparkEngine(session=session)
    with tempfile.TemporaryDirectory(prefix="tessera-bipartite-") as tmp:
        for size in sizes:
            folder = Path(tmp) / f"e{size}"
            folder.mkdir()
            t0 = time.perf_counter()
            meta = write_experiment(folder, size, seed=0)
            gen_s = time.perf_counter() - t0
            duck = (
                DuckDBEngine()
                if size <= 10_000_000
                else DuckDBEngine(memory_limit="6GB", temp_directory=str(Path(tmp) / "spill"))
            )
            engines: list[tuple[str, Any]] = [("duckdb", duck)]
            if size <= 10_000_000 and not args.no_numpy:
                engines.insert(0, ("numpy", "numpy"))
            if spark_engine is not None and size <= 10_000_000:
                engines.append(("spark", spark_engine))
            ests: dict[str, float] = {}
            for name, eng in engines:
                for variance in ("exact", "replicate"):
                    if variance == "replicate" and size > 10_000_000:
                        continue
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", UserWarning)
                        warnings.simplefilter("ignore", FutureWarning)
                        secs, res = run_once(eng, folder, variance, args.replicates)
                    ests[f"{name}/{variance}"] = res.estimate
                    row = {
                        "engine": name,
                        "edges": meta["n_edges"],
                        "variance": variance,
                        "replicates": args.replicates if variance == "replicate" else None,
                        "seconds": secs,
                        "edges_per_s": meta["n_edges"] / secs,
                        "estimate": res.estimate,
                        "se": res.se,
                        "generate_seconds": gen_s,
                    }
                    rows.append(row)
                    print(
                        f"{name:7s} {meta['n_edges']:>11,d} {variance:9s} {secs:8.2f} s "
                        f"{row['edges_per_s'] / 1e6:8.2f} M edges/s  se={res.se:.4g}",
                        flush=True,
                    )
            vals = np.array(list(ests.values()))
            spread = float(np.max(np.abs(vals - vals[0])) / abs(vals[0]))
            print(f"  max relative difference of estimates across engines/modes: {spread:.2e}")
            rows.append({"edges": meta["n_edges"], "estimate_spread_rel": spread})
    print("variance reduction of CA-ERL vs ERL (exact design variances)")
    grid = [] if args.no_grid else variance_reduction_grid()
    payload = {
        "benchmark": "bipartite",
        "date": datetime.now(UTC).isoformat(),
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
        "load_avg_start": load0,
        "load_avg_end": os.getloadavg(),
        "spark_startup_seconds": spark_startup,
        "replicates": args.replicates,
        "sizes": sizes,
        "rows": rows,
        "variance_reduction": grid,
        "notes": "edges/s = edges / wall time of one erl() call from Parquet (validation, "
        "exposures, estimate, variance, diagnostics). 1e8 edges only with --large (DuckDB).",
    }
    if spark_startup is not None:
        print(f"Spark local[2] start-up: {spark_startup:.1f} s")
    atomic_write_bytes(args.out, json.dumps(payload, indent=2).encode())
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
