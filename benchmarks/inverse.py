"""Inverse problems on held-out digits: OT-ODE vs D-Flow, flow-DPS, PiGDM and linear baselines.

One fixed setting per method for all four tasks (see tessera.control.tasks), sigma_y = 0.05.
Prints a PSNR/SSIM/judge-accuracy/NFE table and writes JSON; also OT-ODE's PSNR across
start_time in {0.1, 0.2, 0.3}, for its fixed setting and for each initialisation in
INIT_VARIANTS (the paper's back-projection among them). OT-ODE's Gaussian stand-in for
the prior is GaussianPrior.fit of the flow's training data ("fitted"), or, without one,
N(flow mean, I) ("flow-isotropic"). NFE is velocity-network calls per image (tasks module).
The summary compares OT-ODE with the best training-free baseline (flow-DPS, PiGDM, the
pseudo-inverse, the Gaussian posterior mean) and, separately, with D-Flow.

    .venv/bin/python benchmarks/inverse.py [--data digits|mnist5k] [--ckpt DIR] [--n 100]
        [--methods ...] [--out PATH] [--merge] [--resummarize]

Without --ckpt it trains the data set's default flow (digits: 6000-step MLP, a few
minutes on 2 cores; mnist5k: 4000-step U-Net, much longer on a CPU) into
runs/bench/<data>_flow. The judge is the independent MLP judge of the same data set.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np
import torch

from tessera.control import GaussianPrior
from tessera.control.inverse import ot_ode
from tessera.control.tasks import METHODS, OT_ODE_SETTINGS, TASKS, make_operator, reconstruct
from tessera.data import digits, mnist5k
from tessera.flows import CondOT
from tessera.flows.recipes import load_flow, train_on
from tessera.metrics import digits_judge, mnist5k_judge, psnr, ssim

#: the training-free baselines OT-ODE is compared with (flow-DPS is the issue's "the
#: baseline"); D-Flow is an optimisation method ~90x the NFE and is compared separately
BASELINES: tuple[str, ...] = ("dps", "pigdm", "pinv", "gaussian")
#: OT-ODE's start-time sweep: (init, Gaussian stand-in of the prior); the fixed setting's
#: pair is ("posterior-mean", "fitted")
INIT_VARIANTS: tuple[tuple[str, str | None], ...] = (
    ("backprojection", None),
    ("posterior-mean", "flow-isotropic"),
    ("posterior-mean", "fitted"),
    ("posterior-sample", "fitted"),
)


def summarize(rows: list[dict], robustness: list[dict]) -> dict[str, dict[str, float]]:
    """Per task: OT-ODE against the best baseline, the pseudo-inverse and D-Flow, and
    OT-ODE's PSNR range across start times."""
    nan = float("nan")
    summary = {}
    for task in TASKS:
        by = {r["method"]: r["psnr"] for r in rows if r["task"] == task}
        base = {m: by[m] for m in BASELINES if m in by}
        best = max(base, key=base.__getitem__) if base else None
        rob = [r["psnr"] for r in robustness if r["task"] == task]
        summary[task] = {
            "best_baseline": best,
            "ot_ode_minus_best_baseline_db": by.get("ot-ode", nan) - (base[best] if best else nan),
            "ot_ode_minus_dflow_db": by.get("ot-ode", nan) - by.get("dflow", nan),
            "ot_ode_minus_pinv_db": by.get("ot-ode", nan) - by.get("pinv", nan),
            "dflow_minus_pinv_db": by.get("dflow", nan) - by.get("pinv", nan),
            "ot_ode_start_time_range_db": max(rob) - min(rob) if rob else nan,
        }
    return summary


def init_ranges(ablation: list[dict]) -> list[dict]:
    """Per task and (init, prior): OT-ODE's PSNR at each start time and its range (dB)."""
    out = []
    for task in TASKS:
        for init, prior in INIT_VARIANTS:
            by = {
                r["start_time"]: r["psnr"]
                for r in ablation
                if (r["task"], r["init"], r.get("prior")) == (task, init, prior)
            }
            if by:
                out.append(
                    {
                        "task": task,
                        "init": init,
                        "prior": prior,
                        **{f"psnr_t{st:g}": p for st, p in sorted(by.items())},
                        "range_db": max(by.values()) - min(by.values()),
                    }
                )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", default="digits", choices=("digits", "mnist5k"))
    p.add_argument("--ckpt", default=None)
    p.add_argument("--n", type=int, default=100)
    p.add_argument("--sigma-y", type=float, default=0.05)
    p.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    p.add_argument("--out", default=None, help="default benchmarks/results/inverse[_mnist5k].json")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--resummarize",
        action="store_true",
        help="recompute the summary of the rows already in --out (no model calls)",
    )
    p.add_argument(
        "--merge",
        action="store_true",
        help="keep the rows of the methods not in --methods from the run already in --out "
        "(same data, n, sigma_y and seed), e.g. to rerun OT-ODE without rerunning D-Flow",
    )
    args = p.parse_args()

    if args.out is None:
        suffix = "" if args.data == "digits" else f"_{args.data}"
        args.out = f"benchmarks/results/inverse{suffix}.json"
    if args.resummarize:
        done = json.loads(Path(args.out).read_text())
        done["summary"] = summarize(done["rows"], done["ot_ode_start_time"])
        done["ot_ode_init_ranges"] = init_ranges(done.get("ot_ode_init_start_time", []))
        print(json.dumps(done["summary"], indent=2))
        _write(Path(args.out), done)
        return
    earlier = None
    if args.merge:
        if not Path(args.out).is_file():
            raise SystemExit(f"--merge: no earlier run at {args.out}; run without --merge first")
        earlier = json.loads(Path(args.out).read_text())
        want = {"data": args.data, "n": args.n, "sigma_y": args.sigma_y, "seed": args.seed}
        have = {k: earlier["settings"].get(k) for k in want}
        if have != want:
            raise SystemExit(f"--merge: {args.out} was run with {have}, not {want}; rerun it whole")
    t0 = time.perf_counter()
    if args.ckpt is None:
        args.ckpt = f"runs/bench/{args.data}_flow"
        if not (Path(args.ckpt) / "model").exists():
            train_on(args.data, seed=args.seed, out_dir=args.ckpt)
    model, facts = load_flow(args.ckpt)
    ds = digits(seed=args.seed) if args.data == "digits" else mnist5k(seed=args.seed)
    h, w = (int(s) for s in ds.image_shape)
    x_true = torch.from_numpy(np.array(ds.test_x[: args.n], dtype=np.float32))
    labels = np.asarray(ds.test_y[: args.n])
    judge = (digits_judge if args.data == "digits" else mnist5k_judge)(seed=args.seed)
    # OT-ODE's Gaussian stand-in for the prior: the moments of the flow's training data
    prior = GaussianPrior.fit(torch.from_numpy(np.array(ds.train_x, dtype=np.float32)))
    sample_shape = tuple(facts["sample_shape"])  # (D,) for an MLP, (1, H, W) for a U-Net

    def v(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x.reshape(x.shape[0], *sample_shape), t).reshape(x.shape[0], -1)

    def score(x: np.ndarray) -> dict[str, float]:
        return {
            "psnr": psnr(x, x_true.numpy()),
            "ssim": ssim(x.reshape(-1, h, w), x_true.numpy().reshape(-1, h, w)),
            "judge_accuracy": float((judge.predict(x) == labels).mean()),
        }

    rows = []
    for task in TASKS:
        op = make_operator(task, (h, w))
        gen = torch.Generator().manual_seed(args.seed + 1)
        y = op.forward(x_true) + args.sigma_y * torch.randn(
            args.n, op.out_dim if op.out_dim > 0 else h * w, generator=gen
        )
        for method in args.methods:
            t = time.perf_counter()
            res = reconstruct(v, op, y, args.sigma_y, method, prior=prior, generator=args.seed + 2)
            row = {
                "task": task,
                "method": method,
                **score(res.x.clamp(-1, 1).numpy()),
                "nfe": res.settings["nfe"],
                "seconds": time.perf_counter() - t,
            }
            rows.append(row)
            print(
                f"{task:9s} {method:8s} PSNR {row['psnr']:6.2f}  SSIM {row['ssim']:.3f}  judge {row['judge_accuracy']:.2f}  NFE {row['nfe']:6d}  {row['seconds']:.1f}s",
                flush=True,
            )
    robustness, ablation = [], []
    for task in TASKS if "ot-ode" in args.methods else ():
        op = make_operator(task, (h, w))
        gen = torch.Generator().manual_seed(args.seed + 1)
        y = op.forward(x_true) + args.sigma_y * torch.randn(
            args.n, op.out_dim if op.out_dim > 0 else h * w, generator=gen
        )
        for init, stand_in in INIT_VARIANTS:
            for st in (0.1, 0.2, 0.3):
                kw = {**OT_ODE_SETTINGS, "start_time": st, "init": init}
                kw["prior"] = prior if stand_in == "fitted" else None
                x = ot_ode(v, CondOT(), op, y, args.sigma_y, generator=args.seed + 2, **kw)
                row = {"task": task, "init": init, "prior": stand_in, "start_time": st}
                row["psnr"] = psnr(x.clamp(-1, 1).numpy(), x_true.numpy())
                ablation.append(row)
                if (init, stand_in) == (OT_ODE_SETTINGS["init"], "fitted"):
                    robustness.append({k: row[k] for k in ("task", "start_time", "psnr")})
        for r in init_ranges([r for r in ablation if r["task"] == task]):
            print(
                f"{task:9s} OT-ODE {r['init']:16s} {r['prior']!s:14s} "
                f"start-time range {r['range_db']:.2f} dB",
                flush=True,
            )
    if earlier is not None:
        kept = [r for r in earlier["rows"] if r["method"] not in args.methods]
        order = {(t, m): i for i, (t, m) in enumerate((t, m) for t in TASKS for m in METHODS)}
        rows = sorted(kept + rows, key=lambda r: order[(r["task"], r["method"])])
        if "ot-ode" not in args.methods:
            robustness = earlier["ot_ode_start_time"]
            ablation = earlier.get("ot_ode_init_start_time", [])
    summary = summarize(rows, robustness)
    print(json.dumps(summary, indent=2))
    result = {
        "benchmark": "inverse",
        "date": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "environment": {
            "torch": torch.__version__,
            "platform": platform.platform(),
            "threads": torch.get_num_threads(),
            "load_average": os.getloadavg(),
        },
        "settings": {
            "data": args.data,
            "n": args.n,
            "sigma_y": args.sigma_y,
            "ckpt": args.ckpt,
            "seed": args.seed,
            "judge_test_accuracy": judge.test_accuracy_,
            "ot_ode_init": OT_ODE_SETTINGS["init"]
            if earlier is None or "ot-ode" in args.methods
            else earlier["settings"].get("ot_ode_init", "backprojection"),
            "merged_from": None
            if earlier is None
            else _provenance(
                earlier, sorted({r["method"] for r in earlier["rows"]} - set(args.methods))
            ),
        },
        "rows": rows,
        "ot_ode_start_time": robustness,
        "ot_ode_init_start_time": ablation,
        "ot_ode_init_ranges": init_ranges(ablation),
        "summary": summary,
        "wall_time_s": time.perf_counter() - t0,
    }
    _write(Path(args.out), result)


def _provenance(earlier: dict, kept: list[str]) -> dict:
    """Where the kept rows of a --merge run were measured: the run that produced them,
    followed back through earlier merges while they kept those methods too."""
    source = earlier["settings"].get("merged_from")
    if source and set(kept) <= set(source["methods"]) and "wall_time_s" in source:
        return {**source, "methods": kept}
    return {"date": earlier["date"], "methods": kept, "wall_time_s": earlier["wall_time_s"]}


def _write(out: Path, result: dict) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2))
    os.replace(tmp, out)


if __name__ == "__main__":
    main()
