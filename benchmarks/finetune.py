"""Reward fine-tuning: Adjoint Matching vs discrete adjoint vs DRaFT (cost), and AM-3 (quality).

Cost (``--part cost``): per-iteration wall time and peak memory of one optimiser step
at K in {20, 40, 100} chain steps, for the digits velocity network (64-512x3 TimeMLP,
random weights: the cost does not depend on them), batch 64, a classifier reward:

* ``adjoint_matching``: rollout without a graph, lean adjoint (one VJP of the frozen
  base per step), loss over all K - 1 times accumulated in blocks of ``loss_chunk``;
* ``discrete_adjoint``: back-propagation of the SOC objective through the whole
  memoryless sampler (the graph holds every step);
* ``draft``: DRaFT-1, the reward back-propagated through the last ODE step.

Each (method, K) runs in a fresh subprocess. Two memory figures: the rise of the
process's peak RSS (``ru_maxrss``) over its RSS just before fine-tuning starts (stored
trajectories, autograd graph, optimiser state, and whatever the allocator keeps), and
the graph memory: the peak bytes of tensors saved for backward alive at once, counted
by a ``saved_tensors_hooks`` meter in a separate, untimed two-step run (independent of
the allocator; a storage saved by several operations is counted each time, so it is an
upper bound). The time is the median
of the timed steps after warm-up. The ratio of memory at K = 100 to K = 20 says whether
a method's memory grows with K: Adjoint Matching stores the (K + 1) x B trajectory and
adjoint without a graph, so only that O(K B d) data grows; its graph is one block of
``loss_chunk`` times or one VJP of the base, whatever K is.

Quality (``--part quality``, AM-3 of the research notes): a digits flow (trained by the
foundation recipe, or ``--ckpt``), reward ``r(x) = log p_clf(3 | x)`` of the reward
classifier, lam = 1. The target ``p_base(x) p_clf(3 | x)`` is estimated by
self-normalised importance weighting of base ODE samples; every model is judged by the
*independent* digits judge (never the reward classifier): TVD of its class histogram to
the target's, class-3 fraction, within-class-3 diversity against the IS-weighted base,
distance to the nearest training digit against base samples', and the KL certificate
J - J* (an upper bound on KL(p_model || p_target) in nats). Models: Adjoint Matching
(memoryless), the constant-sigma ablation (sigma = 0.5), DRaFT-1 and ReFL, all with the
same steps, batch, K and learning rate. A few samples per model are stored for the demo
report's grids.

Usage:
    .venv/bin/python benchmarks/finetune.py                    # both parts, ~30 min on 2 cores
    .venv/bin/python benchmarks/finetune.py --part cost        # ~3 min
    .venv/bin/python benchmarks/finetune.py --part quality --ckpt runs/demo/digits
    .venv/bin/python benchmarks/finetune.py --quick            # smoke run, numbers not meaningful
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "finetune.json"
COST_METHODS = ("adjoint_matching", "discrete_adjoint", "draft")
KS = (20, 40, 100)


# ---- cost: one subprocess per (method, K) ----------------------------------------------------
def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _GraphMemory:
    """Peak bytes of tensors saved for backward that are alive at once (the autograd graph).

    A ``saved_tensors_hooks`` pack hook wraps each saved tensor in a holder that counts
    its bytes while the graph keeps it; the holder is freed with the graph. This measures
    the graph's memory exactly and independently of the allocator, which peak RSS does not.
    """

    def __init__(self) -> None:
        self.live = 0
        self.peak = 0

    def pack(self, t: torch.Tensor) -> Any:
        return _Saved(self, t)

    @staticmethod
    def unpack(s: Any) -> torch.Tensor:
        return s.t


class _Saved:
    __slots__ = ("meter", "n", "t")

    def __init__(self, meter: _GraphMemory, t: torch.Tensor) -> None:
        self.meter, self.t = meter, t
        self.n = t.numel() * t.element_size()
        meter.live += self.n
        meter.peak = max(meter.peak, meter.live)

    def __del__(self) -> None:
        self.meter.live -= self.n


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Time ``spec['iters']`` steps of one method after ``spec['warmup']`` (runs in a subprocess)."""
    from tessera.control import finetune
    from tessera.control.rewards import classifier_log_prob, digits_classifier
    from tessera.flows.recipes import default_model

    torch.manual_seed(0)
    base, _ = default_model("digits")
    reward = classifier_log_prob(digits_classifier(epochs=1), 3)
    fn = getattr(finetune, spec["method"])
    stamps: list[float] = []
    warmup, iters = spec["warmup"], spec["iters"]
    common = dict(
        lam=1.0, n_time_steps=spec["K"], batch_size=spec["batch"], lr=1e-4, progress=False,
        generator=0,
    )  # fmt: skip
    rss0 = _rss_bytes()
    t0 = time.perf_counter()
    fn(
        base, reward, steps=warmup + iters,
        on_step=lambda step, stats: stamps.append(time.perf_counter()), **common,
    )  # fmt: skip
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    # the graph meter costs Python time per saved tensor: a separate, untimed 2-step run
    meter = _GraphMemory()
    with torch.autograd.graph.saved_tensors_hooks(meter.pack, meter.unpack):
        fn(base, reward, steps=2, **common)
    times = np.diff([t0, *stamps])[warmup:]
    return {
        **spec,
        "seconds_per_iter": float(statistics.median(times)),
        "seconds_per_iter_min": float(np.min(times)),
        "peak_mem_mb": (peak - rss0) / 2**20,
        "graph_mem_mb": meter.peak / 2**20,
        "threads": torch.get_num_threads(),
    }


def cost_part(quick: bool) -> list[dict[str, Any]]:
    rows = []
    for K in KS:
        for method in COST_METHODS:
            spec = {
                "method": method,
                "K": K,
                "batch": 64,
                "warmup": 2,
                "iters": 3 if quick else 10,
            }
            out = subprocess.run(
                [sys.executable, __file__, "--child", json.dumps(spec)],
                check=True,
                capture_output=True,
                text=True,
            )
            row = json.loads(out.stdout.strip().splitlines()[-1])
            rows.append(row)
            print(
                f"{method:17s} K={K:3d}  {row['seconds_per_iter'] * 1e3:8.1f} ms/iter  "
                f"peak +{row['peak_mem_mb']:7.1f} MB  graph {row['graph_mem_mb']:7.1f} MB",
                flush=True,
            )
    return rows


def growth(rows: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    out = {}
    for method in COST_METHODS:
        by = {r["K"]: r for r in rows if r["method"] == method}
        out[method] = {
            "memory_ratio_K100_over_K20": by[100]["peak_mem_mb"] / by[20]["peak_mem_mb"],
            "graph_memory_ratio_K100_over_K20": by[100]["graph_mem_mb"] / by[20]["graph_mem_mb"],
            "time_ratio_K100_over_K20": by[100]["seconds_per_iter"] / by[20]["seconds_per_iter"],
        }
    am = {r["K"]: r for r in rows if r["method"] == "adjoint_matching"}
    da = {r["K"]: r for r in rows if r["method"] == "discrete_adjoint"}
    out["discrete_adjoint_over_adjoint_matching_memory"] = {
        f"K{K}": da[K]["peak_mem_mb"] / am[K]["peak_mem_mb"] for K in KS
    }
    return out


# ---- quality: AM-3 on digits ------------------------------------------------------------------
def quality_part(args: argparse.Namespace) -> dict[str, Any]:
    from tessera.control.evaluate import ode_samples, tilt_report
    from tessera.control.finetune import adjoint_matching, draft, kl_certificate, refl
    from tessera.control.rewards import classifier_log_prob, digits_classifier
    from tessera.data import digits
    from tessera.flows import constant
    from tessera.flows.recipes import load_flow, train_on
    from tessera.metrics import digits_judge

    ckpt = args.ckpt
    if ckpt is None:
        ckpt = "runs/bench/digits_flow"
        if not (Path(ckpt) / "model").exists():
            train_on("digits", steps=300 if args.quick else 6000, seed=0, out_dir=ckpt)
    base, _ = load_flow(ckpt)
    base.eval().requires_grad_(False)
    reward = classifier_log_prob(digits_classifier(seed=0), 3)
    lam, target = 1.0, 3
    steps = 20 if args.quick else args.steps
    common = dict(
        lam=lam, steps=steps, n_time_steps=40, batch_size=64, lr=1e-4, progress=False, generator=0
    )
    runs = {
        "adjoint_matching": lambda: adjoint_matching(base, reward, **common),
        "am_constant_0.5": lambda: adjoint_matching(
            base, reward, diffusion=constant(0.5), **common
        ),
        "draft_1": lambda: draft(base, reward, **common),
        "refl": lambda: refl(base, reward, **common),
    }
    n_base, n_model = (2000, 500) if args.quick else (20000, 5000)
    t0 = time.perf_counter()
    xb = ode_samples(base, n_base, (64,), steps=50, seed=1)
    with torch.no_grad():
        log_w = lam * reward(xb)
    models: dict[str, torch.Tensor] = {}
    facts: dict[str, dict[str, Any]] = {}
    print(f"base: {n_base} samples in {time.perf_counter() - t0:.0f} s", flush=True)
    for name, run in runs.items():
        t = time.perf_counter()
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the constant-sigma ablation warns by design
            res = run()
        train_s = time.perf_counter() - t
        models[name] = ode_samples(res.model, n_model, (64,), steps=50, seed=2)
        kl = kl_certificate(
            base, res.model, reward, lam, n=512 if args.quick else 4096, n_time_steps=40,
            generator=3,
        )  # fmt: skip
        facts[name] = {"train_seconds": train_s, "kl_certificate": kl.to_dict()}
        print(f"{name}: trained in {train_s:.0f} s, KL certificate {kl.value:.3f}", flush=True)
    ds = digits(seed=0)
    rep = tilt_report(
        xb, log_w, models, target_class=target, judge=digits_judge(seed=0),
        train_x=np.asarray(ds.train_x),
    )  # fmt: skip
    for name, row in rep["models"].items():
        row.update(facts[name])
        row["samples"] = models[name][:40].clamp(-1, 1).numpy().round(3).tolist()
    rep["target"]["samples"] = xb[:40].clamp(-1, 1).numpy().round(3).tolist()
    rep["settings"] = {
        "ckpt": str(ckpt),
        "lam": lam,
        "target_class": target,
        "steps": steps,
        "n_time_steps": 40,
        "batch_size": 64,
        "lr": 1e-4,
        "n_base": n_base,
        "n_model": n_model,
        "ode_steps": 50,
        "threads": torch.get_num_threads(),
    }
    return rep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=("cost", "quality", "all"), default="all")
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--ckpt", default=None, help="digits flow (default: train one)")
    ap.add_argument("--steps", type=int, default=1500, help="fine-tuning steps (quality)")
    ap.add_argument("--out", default=str(DEFAULT_OUT))
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    from tessera.nn import atomic_write_text

    out = Path(args.out)
    payload: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
    payload.update(
        {
            "benchmark": "finetune",
            "date": datetime.now(UTC).isoformat(),
            "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
            "torch": torch.__version__,
            "load_avg_start": os.getloadavg(),  # of the latest run (cost and quality may differ)
            "quick": args.quick,
        }
    )
    if args.part in ("cost", "all"):
        rows = cost_part(args.quick)
        payload["cost"] = {
            "date": datetime.now(UTC).isoformat(),
            "rows": rows,
            "growth": growth(rows),
        }
        print(json.dumps(payload["cost"]["growth"], indent=2))
    if args.part in ("quality", "all"):
        rep = quality_part(args)
        rep["date"] = datetime.now(UTC).isoformat()
        payload["quality"] = rep
        t = rep["target"]
        print(f"target (IS, ESS {t['ess']:.0f}): class-3 {t['target_fraction']:.3f}")
        print(f"{'model':18s} {'TVD':>6s} {'frac3':>6s} {'div':>6s} {'nn':>6s} {'KL':>7s}")
        for name, row in rep["models"].items():
            print(
                f"{name:18s} {row['tvd_to_target']:6.3f} {row['target_fraction']:6.3f} "
                f"{row['diversity_ratio']:6.3f} {row['nearest_train_ratio']:6.3f} "
                f"{row['kl_certificate']['value']:7.3f}"
            )
    payload["load_avg_end"] = os.getloadavg()
    atomic_write_text(out, json.dumps(payload, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
