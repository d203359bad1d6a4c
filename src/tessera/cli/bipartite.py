"""``tessera bipartite {analyze,simulate}``: ERL / CA-ERL on edge tables; synthetic data."""

from __future__ import annotations

import argparse
import json
from typing import Any

from tessera.cli._common import emit

__all__ = ["add_parsers"]


def _cmd_analyze(args: argparse.Namespace) -> int:
    from tessera.interference.bipartite import Columns, ca_erl, erl
    from tessera.interference.engines._io import atomic_write_bytes

    cols = Columns(
        analysis_id=args.analysis_id,
        randomization_id=args.randomization_id,
        weight=args.weight,
        treated=args.treated,
        p=args.p,
        outcome=args.outcome,
    )
    common: dict[str, Any] = {
        "columns": cols,
        "engine": args.engine,
        "variance": args.variance,
        "replicates": args.replicates,
        "level": args.level,
        "rng": args.seed,
    }
    if args.covariates:
        covs = [c for c in args.covariates.split(",") if c]
        res = ca_erl(
            args.edges,
            args.assignments,
            args.outcomes,
            covariates=covs,
            adjustment=args.adjustment,
            **common,
        )
    else:
        res = erl(args.edges, args.assignments, args.outcomes, **common)
    payload = res.to_dict()
    if args.out:
        atomic_write_bytes(args.out, json.dumps(payload, indent=2, default=str).encode())
    human = (
        f"{res.method}: {res.estimate:.6g} (SE {res.se:.3g}), {res.level:.0%} CI "
        f"[{res.ci_low:.6g}, {res.ci_high:.6g}]; n_analysis={res.n_analysis}, "
        f"n_randomization={res.n_randomization}, engine={args.engine}"
    )
    emit(args, payload, human)
    return 0


def _cmd_simulate(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tessera.interference.engines._io import atomic_write_dir
    from tessera.interference.simulate import bipartite

    sim = bipartite(
        args.n_analysis,
        args.n_randomization,
        graph=args.graph,
        tau=args.tau,
        p=args.p,
        r2=args.r2,
        rng=args.seed,
    )
    edges, assignments, outcomes = sim.tables()
    truth = {
        "true_effect": sim.true_effect,
        "graph": sim.graph,
        "n_analysis": sim.n_analysis,
        "n_randomization": sim.n_randomization,
        "n_edges": len(edges),
        "seed": args.seed,
        "covariates": ["y_pre"],
    }

    def write(tmp: Path) -> None:
        for name, df in (("edges", edges), ("assignments", assignments), ("outcomes", outcomes)):
            if args.format == "csv":
                df.to_csv(tmp / f"{name}.csv", index=False)
            else:
                df.to_parquet(tmp / f"{name}.parquet", index=False)
        (tmp / "truth.json").write_text(json.dumps(truth, indent=2))

    atomic_write_dir(args.out, write)
    emit(
        args,
        {"out": str(args.out), **truth},
        f"wrote {len(edges)} edges and truth.json to {args.out}",
    )
    return 0


def add_parsers(sub: Any) -> None:
    """Add the ``bipartite`` sub-commands (``analyze`` and ``simulate``).

    Args:
        sub: the ``add_subparsers()`` object of the ``tessera`` parser.
    """
    bp = sub.add_parser(
        "bipartite", help="bipartite experiments: ERL / CA-ERL with randomization CIs"
    ).add_subparsers(dest="bipartite_command", required=True)

    an = bp.add_parser("analyze", help="estimate the total treatment effect from three tables")
    an.add_argument("--edges", required=True, help="edge table (.parquet/.csv)")
    an.add_argument("--assignments", required=True, help="assignment table (.parquet/.csv)")
    an.add_argument("--outcomes", required=True, help="outcome table (.parquet/.csv)")
    an.add_argument("--covariates", help="comma-separated covariate columns (CA-ERL)")
    an.add_argument(
        "--adjustment", choices=("pre_period", "in_sample", "cross_fit"), default="in_sample"
    )
    an.add_argument("--engine", choices=("duckdb", "numpy", "spark"), default="duckdb")
    an.add_argument("--variance", choices=("exact", "replicate", "linear"), default="exact")
    an.add_argument("--replicates", type=int, default=200)
    an.add_argument("--level", type=float, default=0.95)
    an.add_argument("--seed", type=int, default=0, help="seed of replicates / cross-fit folds")
    an.add_argument("--analysis-id", default="analysis_id")
    an.add_argument("--randomization-id", default="randomization_id")
    an.add_argument("--weight", default="weight")
    an.add_argument("--treated", default="treated")
    an.add_argument("--p", default="p", help="design-probability column")
    an.add_argument("--outcome", default="outcome")
    an.add_argument("--out", help="write the result JSON here (only after success)")
    an.add_argument("--json", action="store_true", help="print results as JSON")
    an.set_defaults(func=_cmd_analyze)

    si = bp.add_parser("simulate", help="write a synthetic experiment with a known effect")
    si.add_argument("--out", required=True, help="new output directory")
    si.add_argument("--n-analysis", type=int, default=2000)
    si.add_argument("--n-randomization", type=int, default=400)
    si.add_argument("--graph", choices=("sparse", "dense", "hub"), default="sparse")
    si.add_argument("--tau", type=float, default=1.0)
    si.add_argument("--p", type=float, default=0.5)
    si.add_argument("--r2", type=float, default=0.8)
    si.add_argument("--format", choices=("parquet", "csv"), default="parquet")
    si.add_argument("--seed", type=int, default=0)
    si.add_argument("--json", action="store_true")
    si.set_defaults(func=_cmd_simulate)
