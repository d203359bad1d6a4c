"""Throughput of tessera.flows sampling and training against same-run peers.

Sampling: ``tessera.flows.solve_ode`` vs ``torchdiffeq.odeint`` with the same model,
fixed-step method and grid, both under ``torch.no_grad()``; samples/s and the ratio
tessera / torchdiffeq per row, plus the max abs difference of the final states.

Training: ``tessera.flows.train_flow`` vs a bare-PyTorch loop doing the same work
(batch, t, noise, x_t = t x1 + (1 - t) x0, MSE to x1 - x0, grad clip, AdamW, EMA);
steps/s and the ratio trainer / baseline (below 1 = trainer overhead).

Ratios come from measurements interleaved in the same run (the order alternates per
repeat); nothing here asserts wall-clock numbers.

Usage:
    .venv/bin/python benchmarks/flows.py            # default, a few minutes on 2 cores
    .venv/bin/python benchmarks/flows.py --quick    # ~30 s smoke run
    .venv/bin/python benchmarks/flows.py --out /tmp/flows.json
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import scipy
import torch
import torchdiffeq
from scipy.optimize import linear_sum_assignment
from torch import Tensor, nn

import tessera
from tessera.flows import FlowMatchingConfig, solve_ode, train_flow, uniform_grid
from tessera.flows.recipes import load_training_data
from tessera.nn import TimeMLP, TimeMLPConfig, atomic_write_text

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "results" / "flows.json"
METHODS = ("euler", "midpoint", "rk4")


@dataclass(frozen=True, kw_only=True)
class Settings:
    quick: bool
    sample_steps: int
    warmup_sample_steps: int
    sample_repeats: int
    min_repeat_s: float
    train_steps_digits: int
    train_steps_toy: int
    train_steps_ot: int
    warmup_train_steps: int
    train_repeats: int
    closed_form_batch: int
    closed_form_dim: int
    agree_atol: float
    seed: int


def make_settings(quick: bool) -> Settings:
    if quick:
        return Settings(
            quick=True,
            sample_steps=10,
            warmup_sample_steps=2,
            sample_repeats=3,
            min_repeat_s=0.05,
            train_steps_digits=10,
            train_steps_toy=20,
            train_steps_ot=5,
            warmup_train_steps=2,
            train_repeats=3,
            closed_form_batch=100_000,
            closed_form_dim=2,
            agree_atol=1e-5,
            seed=0,
        )
    return Settings(
        quick=False,
        sample_steps=100,
        warmup_sample_steps=10,
        sample_repeats=3,
        min_repeat_s=0.5,
        train_steps_digits=100,
        train_steps_toy=200,
        train_steps_ot=50,
        warmup_train_steps=10,
        train_repeats=5,
        closed_form_batch=100_000,
        closed_form_dim=2,
        agree_atol=1e-5,
        seed=0,
    )


# ---- helpers --------------------------------------------------------------------------------
def loadavg() -> list[float]:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return []


def uptime_line() -> str:
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, timeout=5, check=False)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
            cwd=HERE,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


def summary(values: list[float]) -> dict[str, Any]:
    return {
        "median": statistics.median(values),
        "min": min(values),
        "max": max(values),
        "values": values,
    }


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def torchdiffeq_rk4_variant() -> str:
    """Which RK4 tableau torchdiffeq's "rk4" uses (it has used the 3/8 rule since 0.2)."""
    try:
        from torchdiffeq._impl.fixed_grid import RK4

        src = inspect.getsource(RK4._step_func)
    except (ImportError, AttributeError, OSError, TypeError):
        return "unknown"
    if "rk4_alt_step_func" in src:
        return "3/8 rule (rk4_alt_step_func)"
    if "rk4_step_func" in src:
        return "classical"
    return "unknown"


def run_pair(
    fns: dict[str, Callable[[], Any]],
    *,
    repeats: int,
    number: int,
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time each fn ``repeats`` times (``number`` calls each), alternating the order."""
    names = list(fns)
    times: dict[str, list[float]] = {n: [] for n in names}
    last: dict[str, Any] = {}
    for r in range(repeats):
        order = names if r % 2 == 0 else names[::-1]
        for n in order:
            fn = fns[n]
            t0 = time.perf_counter()
            for _ in range(number):
                last[n] = fn()
            times[n].append(time.perf_counter() - t0)
    return times, last


# ---- sampling -------------------------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class SampleCase:
    name: str
    field: Callable[[Tensor, Tensor], Tensor]
    batch: int
    dim: int
    description: str
    exact: Callable[[Tensor], Tensor] | None = None


def sampling_cases(s: Settings) -> list[SampleCase]:
    digits = TimeMLP(TimeMLPConfig(dim=64, hidden=512, depth=3, time_dim=128)).eval()
    toy = TimeMLP(TimeMLPConfig(dim=2, hidden=256, depth=3)).eval()

    def neg(x: Tensor, t: Tensor) -> Tensor:
        return -x

    return [
        SampleCase(
            name="digits",
            field=digits,
            batch=1024,
            dim=64,
            description="TimeMLP(dim=64, hidden=512, depth=3, time_dim=128), random init",
        ),
        SampleCase(
            name="toy",
            field=toy,
            batch=2000,
            dim=2,
            description="TimeMLP(dim=2, hidden=256, depth=3), random init",
        ),
        SampleCase(
            name="neg_x",
            field=neg,
            batch=s.closed_form_batch,
            dim=s.closed_form_dim,
            description="closed form v(x, t) = -x (solver overhead dominates)",
            exact=lambda x0: x0 * math.exp(-1.0),
        ),
    ]


def _td_func(field: Callable[[Tensor, Tensor], Tensor], B: int, t: Tensor, x: Tensor) -> Tensor:
    return field(x, t.expand(B))  # torchdiffeq passes a 0-dim t; tessera's t is (B,)


def _run_tessera(field: Callable, x0: Tensor, grid: Tensor, method: str) -> Tensor:
    with torch.no_grad():
        return solve_ode(field, x0, grid, method=method)


def _run_torchdiffeq(func: Callable, x0: Tensor, grid: Tensor, method: str) -> Tensor:
    with torch.no_grad():
        return torchdiffeq.odeint(func, x0, grid, method=method)[-1]


def bench_sampling(s: Settings, rk4_variant: str) -> list[dict[str, Any]]:
    rows = []
    gen = torch.Generator().manual_seed(s.seed)
    for case in sampling_cases(s):
        B = case.batch
        x0 = torch.randn(B, case.dim, generator=gen)
        field = case.field

        td_func = partial(_td_func, field, B)
        for method in METHODS:
            # warm-up on a short grid, also used to size `number` (calls per repeat)
            wgrid = uniform_grid(s.warmup_sample_steps)
            warm = {}
            for name, run in (("tessera", _run_tessera), ("torchdiffeq", _run_torchdiffeq)):
                t0 = time.perf_counter()
                run(field if name == "tessera" else td_func, x0, wgrid, method)
                warm[name] = time.perf_counter() - t0
            est = max(warm.values()) * s.sample_steps / s.warmup_sample_steps
            number = max(1, math.ceil(s.min_repeat_s / max(est, 1e-9)))

            grid = uniform_grid(s.sample_steps)
            times, last = run_pair(
                {
                    "tessera": partial(_run_tessera, field, x0, grid, method),
                    "torchdiffeq": partial(_run_torchdiffeq, td_func, x0, grid, method),
                },
                repeats=s.sample_repeats,
                number=number,
            )
            thr = {k: [B * number / v for v in vs] for k, vs in times.items()}
            med = {k: statistics.median(v) for k, v in thr.items()}
            paired = [a / b for a, b in zip(thr["tessera"], thr["torchdiffeq"], strict=True)]
            diff = float((last["tessera"] - last["torchdiffeq"]).abs().max())
            scale = float(last["tessera"].abs().max())
            row: dict[str, Any] = {
                "model": case.name,
                "model_description": case.description,
                "method": method,
                "steps": s.sample_steps,
                "batch": B,
                "dim": case.dim,
                "calls_per_repeat": number,
                "warmup_s": {"steps": s.warmup_sample_steps, **warm},
                "tessera": {
                    "samples_per_s": summary(thr["tessera"]),
                    "seconds_per_repeat": summary(times["tessera"]),
                },
                "torchdiffeq": {
                    "samples_per_s": summary(thr["torchdiffeq"]),
                    "seconds_per_repeat": summary(times["torchdiffeq"]),
                },
                "ratio_tessera_over_torchdiffeq": med["tessera"] / med["torchdiffeq"],
                "paired_ratio": summary(paired),
                "ratio_best": max(thr["tessera"]) / max(thr["torchdiffeq"]),
                "loadavg_after": loadavg(),
                "max_abs_diff_final_state": diff,
                "max_abs_final_state": scale,
                "same_method": method != "rk4" or rk4_variant == "classical",
            }
            if case.exact is not None:
                ref = case.exact(x0)
                row["max_abs_err_vs_exact"] = {
                    "tessera": float((last["tessera"] - ref).abs().max()),
                    "torchdiffeq": float((last["torchdiffeq"] - ref).abs().max()),
                }
            if not row["same_method"]:
                row["note"] = (
                    f"torchdiffeq 'rk4' is the {rk4_variant}; tessera 'rk4' is classical RK4, "
                    "so max_abs_diff is a method difference, not a bug"
                )
            rows.append(row)
            log(
                f"  sampling {case.name:7s} {method:8s} tessera {med['tessera']:12.0f}/s  "
                f"torchdiffeq {med['torchdiffeq']:12.0f}/s  ratio "
                f"{row['ratio_tessera_over_torchdiffeq']:.3f}  max|d| {diff:.2e}"
            )
    return rows


# ---- training -------------------------------------------------------------------------------
def _lr_at(config: FlowMatchingConfig, step: int) -> float:
    # the documented cosine schedule of FlowMatchingConfig (decay to 10 % of lr)
    if config.lr_schedule == "constant":
        return config.lr
    frac = step / max(1, config.steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac)))


def baseline_train(
    model: nn.Module, data: np.ndarray, config: FlowMatchingConfig
) -> tuple[nn.Module, nn.Module]:
    """Bare-PyTorch flow matching with the same work per step as train_flow's defaults."""
    x_all = torch.from_numpy(np.array(data))  # copy, as train_flow does (inputs may be read-only)
    N, B = x_all.shape[0], config.batch_size
    gen = torch.Generator(device="cpu").manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = copy.deepcopy(model).eval().requires_grad_(False)
    params, ema_params = list(model.parameters()), list(ema.parameters())
    d = config.ema_decay
    model.train()
    for step in range(config.steps):
        idx = torch.randint(N, (B,), generator=gen)
        x1 = x_all[idx]
        x0 = torch.randn(x1.shape, generator=gen, dtype=x1.dtype)
        t = torch.rand(B, generator=gen, dtype=x1.dtype)
        if config.coupling == "minibatch_ot":
            cost = torch.cdist(x1.flatten(1), x0.flatten(1)) ** 2
            _, cols = linear_sum_assignment(cost.numpy())
            x0 = x0[torch.as_tensor(cols)]
        for group in opt.param_groups:
            group["lr"] = _lr_at(config, step)
        tt = t.view(B, *([1] * (x1.ndim - 1)))  # (B, 1, ...)
        xt = tt * x1 + (1 - tt) * x0
        loss = ((model(xt, t) - (x1 - x0)) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(params, config.grad_clip)
        opt.step()
        with torch.no_grad():
            for e, p in zip(ema_params, params, strict=True):
                e.mul_(d).add_(p, alpha=1.0 - d)
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"baseline loss diverged at step {step + 1}")
    model.eval()
    return model, ema


@torch.no_grad()
def max_param_diff(a: nn.Module, b: nn.Module) -> float:
    return max(
        float((p - q).abs().max()) for p, q in zip(a.parameters(), b.parameters(), strict=True)
    )


def _train_config(steps: int, batch: int, coupling: str) -> FlowMatchingConfig:
    return FlowMatchingConfig(
        steps=steps, batch_size=batch, progress=False, ema_decay=0.999, coupling=coupling
    )


def _run_trainer(
    init: nn.Module, data: np.ndarray, config: FlowMatchingConfig
) -> tuple[nn.Module, nn.Module]:
    res = train_flow(copy.deepcopy(init), data, config)
    assert res.ema is not None
    return res.model, res.ema


def _run_baseline(
    init: nn.Module, data: np.ndarray, config: FlowMatchingConfig
) -> tuple[nn.Module, nn.Module]:
    return baseline_train(copy.deepcopy(init), data, config)


def bench_training(s: Settings) -> list[dict[str, Any]]:
    cases = [
        ("digits", TimeMLPConfig(dim=64, hidden=512, depth=3, time_dim=128), 256, "independent"),
        ("eight_gaussians", TimeMLPConfig(dim=2, hidden=256, depth=3), 512, "independent"),
        ("eight_gaussians", TimeMLPConfig(dim=2, hidden=256, depth=3), 512, "minibatch_ot"),
    ]
    rows = []
    for data_name, mcfg, batch, coupling in cases:
        data = load_training_data(data_name).x
        if coupling == "minibatch_ot":
            steps = s.train_steps_ot  # the exact assignment per step dominates; fewer steps
        else:
            steps = s.train_steps_digits if data_name == "digits" else s.train_steps_toy
        init = TimeMLP(mcfg)

        config = _train_config(steps, batch, coupling)
        warm_config = _train_config(s.warmup_train_steps, batch, coupling)
        # warm-up (excluded); the deepcopy of the initial weights is inside each timed call
        # and costs both contenders the same
        warm = {}
        for name, run in (("train_flow", _run_trainer), ("baseline", _run_baseline)):
            t0 = time.perf_counter()
            run(init, data, warm_config)
            warm[name] = time.perf_counter() - t0
        times, last = run_pair(
            {
                "train_flow": partial(_run_trainer, init, data, config),
                "baseline": partial(_run_baseline, init, data, config),
            },
            repeats=s.train_repeats,
            number=1,
        )
        thr = {k: [steps / v for v in vs] for k, vs in times.items()}
        med = {k: statistics.median(v) for k, v in thr.items()}
        paired = [a / b for a, b in zip(thr["train_flow"], thr["baseline"], strict=True)]
        row = {
            "data": data_name,
            "model": "TimeMLP(" + ", ".join(f"{k}={v}" for k, v in mcfg.to_dict().items()) + ")",
            "coupling": coupling,
            "batch": batch,
            "steps": steps,
            "config": config.to_dict(),
            "train_flow": {
                "steps_per_s": summary(thr["train_flow"]),
                "seconds_per_repeat": summary(times["train_flow"]),
            },
            "baseline": {
                "steps_per_s": summary(thr["baseline"]),
                "seconds_per_repeat": summary(times["baseline"]),
            },
            "ratio_train_flow_over_baseline": med["train_flow"] / med["baseline"],
            "paired_ratio": summary(paired),
            "ratio_best": max(thr["train_flow"]) / max(thr["baseline"]),
            "loadavg_after": loadavg(),
            "warmup_s": {"steps": s.warmup_train_steps, **warm},
            "max_abs_diff_final_weights": max_param_diff(
                last["train_flow"][0], last["baseline"][0]
            ),
            "max_abs_diff_final_ema": max_param_diff(last["train_flow"][1], last["baseline"][1]),
        }
        rows.append(row)
        log(
            f"  training {data_name:15s} {coupling:12s} train_flow {med['train_flow']:8.2f} "
            f"steps/s  baseline {med['baseline']:8.2f} steps/s  ratio "
            f"{row['ratio_train_flow_over_baseline']:.3f}"
        )
    return rows


# ---- report ---------------------------------------------------------------------------------
def fmt_rate(sm: dict[str, Any], digits: int = 0) -> str:
    return f"{sm['median']:,.{digits}f} [{sm['min']:,.{digits}f}-{sm['max']:,.{digits}f}]"


def fmt_range(sm: dict[str, Any]) -> str:
    return f"{sm['min']:.2f}-{sm['max']:.2f}"


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        )

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def render(result: dict[str, Any]) -> str:
    env, st = result["environment"], result["settings"]
    out = [
        f"tessera.flows benchmark ({'quick' if st['quick'] else 'default'})  "
        f"torch {env['torch']}  torchdiffeq {env['torchdiffeq']}  threads "
        f"{env['torch_num_threads']}  cpus {env['cpu_count']}",
        f"load average start {result['load_average']['start']}  "
        f"end {result['load_average']['end']}",
        "",
        "Sampling (samples/s, median [min-max] over repeats; ratio = tessera / torchdiffeq of",
        "the medians; best = of the maxima; paired = range of the per-repeat ratios; max|d| = max",
        "abs difference of the final states)",
    ]
    rows = []
    for r in result["sampling"]:
        rows.append(
            [
                r["model"],
                r["method"] + ("*" if not r["same_method"] else ""),
                str(r["steps"]),
                str(r["batch"]),
                fmt_rate(r["tessera"]["samples_per_s"]),
                fmt_rate(r["torchdiffeq"]["samples_per_s"]),
                f"{r['ratio_tessera_over_torchdiffeq']:.3f}",
                f"{r['ratio_best']:.3f}",
                fmt_range(r["paired_ratio"]),
                f"{r['max_abs_diff_final_state']:.1e}",
            ]
        )
    out.append(
        table(
            [
                "model",
                "method",
                "steps",
                "batch",
                "tessera",
                "torchdiffeq",
                "ratio",
                "best",
                "paired",
                "max|d|",
            ],
            rows,
            right={2, 3, 4, 5, 6, 7, 8, 9},
        )
    )
    if any(not r["same_method"] for r in result["sampling"]):
        out.append(
            f"* torchdiffeq 'rk4' is the {result['torchdiffeq_rk4_variant']}; tessera's is "
            "classical RK4, so max|d| there is a method difference."
        )
    for r in result["sampling"]:
        if "max_abs_err_vs_exact" in r:
            e = r["max_abs_err_vs_exact"]
            out.append(
                f"  {r['model']} {r['method']}: max|err| vs exact x0 e^-1: tessera "
                f"{e['tessera']:.1e}, torchdiffeq {e['torchdiffeq']:.1e}"
            )
    out += [
        "",
        "Training (steps/s, median [min-max]; ratio = train_flow / bare-PyTorch baseline of the",
        "medians; best, paired as above; max|dw| = max abs difference of the final weights)",
    ]
    rows = []
    for r in result["training"]:
        rows.append(
            [
                r["data"],
                r["coupling"],
                str(r["batch"]),
                str(r["steps"]),
                fmt_rate(r["train_flow"]["steps_per_s"], 2),
                fmt_rate(r["baseline"]["steps_per_s"], 2),
                f"{r['ratio_train_flow_over_baseline']:.3f}",
                f"{r['ratio_best']:.3f}",
                fmt_range(r["paired_ratio"]),
                f"{r['max_abs_diff_final_weights']:.1e}",
            ]
        )
    out.append(
        table(
            [
                "data",
                "coupling",
                "batch",
                "steps",
                "train_flow",
                "baseline",
                "ratio",
                "best",
                "paired",
                "max|dw|",
            ],
            rows,
            right={2, 3, 4, 5, 6, 7, 8, 9},
        )
    )
    if result["anomalies"]:
        out += ["", "Anomalies:", *(f"  - {a}" for a in result["anomalies"])]
    out.append(f"\nwall time {result['wall_time_s']:.1f} s")
    return "\n".join(out)


def anomalies(result: dict[str, Any], s: Settings) -> list[str]:
    found = []
    for r in result["sampling"]:
        tol = s.agree_atol * max(1.0, r["max_abs_final_state"])
        if r["same_method"] and r["max_abs_diff_final_state"] > tol:
            found.append(
                f"sampling {r['model']}/{r['method']}: final states differ by "
                f"{r['max_abs_diff_final_state']:.2e} > {tol:.1e}"
            )
    for r in result["training"]:
        if r["max_abs_diff_final_weights"] > 1e-4:
            found.append(
                f"training {r['data']}/{r['coupling']}: train_flow and baseline weights differ "
                f"by {r['max_abs_diff_final_weights']:.2e} (not the same computation?)"
            )
    for w in result["warnings"]:
        found.append(f"warning raised during the run: {w}")
    cpus = result["environment"]["cpu_count"] or 1
    la = result["load_average"]["start"]
    if la and la[0] > 0.5 * cpus:
        found.append(
            f"1-min load average {la[0]} at the start (> half of {cpus} CPUs): the machine "
            "was busy in the minute before the start"
        )
    # this run alone keeps about torch_num_threads runnable; more means other processes
    busy = result["environment"]["torch_num_threads"] + 1
    for section in ("sampling", "training"):
        for r in result[section]:
            name = (
                f"sampling {r['model']}/{r['method']}"
                if section == "sampling"
                else f"training {r['data']}/{r['coupling']}"
            )
            if r["loadavg_after"] and r["loadavg_after"][0] > busy:
                found.append(
                    f"{name}: 1-min load average {r['loadavg_after'][0]} > {busy} after the "
                    "row, other processes competed for the CPUs"
                )
            pr = r["paired_ratio"]
            if pr["max"] > 1.5 * pr["min"]:
                found.append(
                    f"{name}: per-repeat ratios span {pr['min']:.2f}-{pr['max']:.2f}, too noisy "
                    "to read; rerun on an idle machine"
                )
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="JSON output path")
    parser.add_argument("--quick", action="store_true", help="~30 s smoke run")
    args = parser.parse_args(argv)
    s = make_settings(args.quick)

    start_wall = time.perf_counter()
    load_start, uptime_start = loadavg(), uptime_line()
    torch.manual_seed(s.seed)  # initial weights of the benchmark models
    rk4_variant = torchdiffeq_rk4_variant()
    log(f"tessera.flows benchmark; {uptime_start}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")
        sampling = bench_sampling(s, rk4_variant)
        training = bench_training(s)
    load_end, uptime_end = loadavg(), uptime_line()

    result: dict[str, Any] = {
        "benchmark": "flows",
        "schema_version": 1,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "argv": sys.argv,
        "environment": {
            "tessera": tessera.__version__,
            "git_commit": git_commit(),
            "torch": torch.__version__,
            "torchdiffeq": torchdiffeq.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "python": platform.python_version(),
            "platform": platform.platform(),
            "machine": platform.machine(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "cpu_affinity": len(os.sched_getaffinity(0))
            if hasattr(os, "sched_getaffinity")
            else None,
            "torch_num_threads": torch.get_num_threads(),
            "torch_num_interop_threads": torch.get_num_interop_threads(),
            "num_threads_note": "torch default, not changed by this script",
        },
        "settings": {
            **asdict(s),
            "methods": list(METHODS),
            "dtype": "float32",
            "device": "cpu",
            "timer": "time.perf_counter",
            "warmup": (
                "one warm-up call per row (sampling: a warmup_sample_steps grid for each "
                "library; training: warmup_train_steps steps for each), excluded from stats"
            ),
            "interleaving": "repeats alternate the order of the two contenders",
            "sampling_peer": "torchdiffeq.odeint(func, x0, t_grid, method)[-1], func(t, x) = "
            "model(x, t.expand(B)); both under torch.no_grad()",
            "training_peer": (
                "bare-PyTorch loop with train_flow's default work per step: randint batch, "
                "randn noise, rand t from one seeded Generator; x_t = t x1 + (1-t) x0; MSE to "
                "x1 - x0; AdamW with the cosine lr; clip_grad_norm_(grad_clip); EMA "
                "mul_/add_; loss.item() finiteness check (plus OT pairing for minibatch_ot)"
            ),
        },
        "torchdiffeq_rk4_variant": rk4_variant,
        "load_average": {"start": load_start, "end": load_end},
        "uptime": {"start": uptime_start, "end": uptime_end},
        "sampling": sampling,
        "training": training,
        "warnings": sorted(
            {
                f"{w.category.__name__} at {Path(w.filename).name}:{w.lineno}: "
                f"{str(w.message).splitlines()[0][:160]}"
                for w in caught
            }
        ),
    }
    result["wall_time_s"] = time.perf_counter() - start_wall
    result["anomalies"] = anomalies(result, s)
    atomic_write_text(args.out, json.dumps(result, indent=2) + "\n")
    print(render(result))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
