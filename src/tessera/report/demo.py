"""The demo job behind ``make demo``: train two small flows, sample them, write a report.

1. A flow on the 2-D eight-Gaussians set: exact W2 of 2,000 samples to fresh data,
   next to the two-sample noise floor (W2 between two fresh data samples).
2. A flow on the 8x8 digits: samples judged by an independent classifier trained on
   real digits only (mean max-probability, class histogram vs uniform), and the
   distance of each sample to its nearest training digit (memorisation check).

Everything is written to ``out_dir``: the trained models, ``results.json`` and
``report.html``. The report also renders the committed method benchmarks found in
``benchmarks_dir`` (``benchmarks/results`` of a checkout; each table names the script
that produced it), without rerunning them.
"""

from __future__ import annotations

import json
import logging
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tessera.data import toy2d
from tessera.flows import sample
from tessera.flows.recipes import train_on
from tessera.metrics import digits_judge, nearest_distance, w2_exact
from tessera.nn import atomic_write_text
from tessera.report.benchmarks import add_benchmark_sections
from tessera.report.html import Report, image_grid_figure, scatter_figure

__all__ = ["run_demo"]

log = logging.getLogger(__name__)


def _toy(out: Path, steps: int, seed: int, progress: bool, rep: Report) -> dict[str, Any]:
    t0 = time.perf_counter()
    result, _ = train_on(
        "eight_gaussians", steps=steps, seed=seed, out_dir=str(out / "toy"), progress=progress
    )
    train_s = time.perf_counter() - t0
    n = 2000
    gen = torch.Generator().manual_seed(seed + 1)
    samples = sample(result.sampling_model, n, (2,), steps=100, generator=gen).numpy()
    ss = np.random.SeedSequence(seed).spawn(3)
    ref, ref2 = toy2d("eight_gaussians", n, rng=ss[0]), toy2d("eight_gaussians", n, rng=ss[1])
    w2 = w2_exact(samples, ref)
    floor = w2_exact(ref2, ref)
    metrics = {
        "train_steps": steps,
        "train_seconds": round(train_s, 1),
        "n": n,
        "w2_model": w2,
        "w2_noise_floor": floor,
        "ratio": w2 / floor,
    }
    rep.heading("Eight Gaussians (2-D)")
    rep.text(
        "Exact W2 between 2,000 flow samples (100 midpoint steps) and 2,000 fresh data points, "
        "next to the noise floor: W2 between two independent data samples of the same size."
    )
    rep.table(metrics)
    rep.figure(scatter_figure({"data": ref, "flow samples": samples}, lim=3.0), "data vs samples")
    return metrics


def _digits(out: Path, steps: int, seed: int, progress: bool, rep: Report) -> dict[str, Any]:
    t0 = time.perf_counter()
    result, data = train_on(
        "digits", steps=steps, seed=seed, out_dir=str(out / "digits"), progress=progress
    )
    train_s = time.perf_counter() - t0
    n = 1000
    gen = torch.Generator().manual_seed(seed + 2)
    samples = sample(result.sampling_model, n, (64,), steps=100, generator=gen).numpy()
    judge = digits_judge(seed=seed)
    report = judge.evaluate(samples)
    nn_sample = nearest_distance(samples, data.x)
    # the same statistic for held-out real digits: how far a *new* real digit is from the train set
    from tessera.data import digits

    test_x = np.asarray(digits(seed=seed).test_x)
    nn_test = nearest_distance(test_x, data.x)
    metrics: dict[str, Any] = {
        "train_steps": steps,
        "train_seconds": round(train_s, 1),
        "n": n,
        "judge_test_accuracy": report.test_accuracy,
        "mean_max_prob": report.mean_max_prob,
        "tvd_uniform": report.tvd_uniform,
        "nn_distance_samples_median": float(np.median(nn_sample)),
        "nn_distance_test_digits_median": float(np.median(nn_test)),
    }
    rep.heading("Digits (8x8)")
    rep.text(
        "1,000 flow samples judged by an MLP classifier trained on real training digits only. "
        "Nearest-training-digit distances of samples are compared with those of held-out real "
        "digits: much smaller values would mean memorisation."
    )
    rep.table(metrics)
    rep.table([{"class": c, "fraction": round(f, 3)} for c, f in enumerate(report.class_histogram)])
    imgs = samples[:100].reshape(-1, 8, 8)
    rep.figure(image_grid_figure(imgs, ncols=10), "flow samples")
    rep.figure(image_grid_figure(test_x[:100].reshape(-1, 8, 8), ncols=10), "real held-out digits")
    metrics["class_histogram"] = list(report.class_histogram)
    return metrics


def run_demo(
    out_dir: str | Path,
    *,
    quick: bool = False,
    seed: int = 0,
    progress: bool = True,
    benchmarks_dir: str | Path | None = "benchmarks/results",
) -> dict[str, Any]:
    """Train, sample and evaluate the demo flows; write results.json and report.html.

    Args:
        out_dir: output directory (created).
        quick: a short smoke run (few training steps; metrics are not meaningful).
        seed: seed of data, training and sampling.
        progress: show progress bars on stderr.
        benchmarks_dir: directory of committed benchmark JSON to render in the report
            (relative paths are taken from the working directory); None: none.

    Returns:
        The results dict (also written to ``out_dir/results.json``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    toy_steps, digit_steps = (300, 300) if quick else (3000, 6000)
    rep = Report("tessera demo: flow matching core")
    rep.text(
        f"torch {torch.__version__} on {platform.platform()}, {torch.get_num_threads()} threads; "
        f"seed {seed}; {'QUICK smoke run: numbers are not meaningful' if quick else 'full run'}."
    )
    t0 = time.perf_counter()
    results: dict[str, Any] = {"seed": seed, "quick": quick, "torch": torch.__version__}
    log.info("demo 1/2: eight Gaussians")
    results["eight_gaussians"] = _toy(out, toy_steps, seed, progress, rep)
    log.info("demo 2/2: digits")
    results["digits"] = _digits(out, digit_steps, seed, progress, rep)
    results["total_seconds"] = round(time.perf_counter() - t0, 1)
    if benchmarks_dir is not None:
        results["benchmarks_rendered"] = add_benchmark_sections(rep, benchmarks_dir)
    rep.heading("Run")
    rep.json(results)
    atomic_write_text(out / "results.json", json.dumps(results, indent=2))
    rep.write(out / "report.html")
    return results
