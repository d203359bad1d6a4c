"""Report sections for the committed benchmark results (``benchmarks/results/*.json``).

The demo job trains small models in minutes; the method benchmarks take longer and are
run by their own scripts. Their JSON output is committed, and the demo report renders
what it finds, saying which command produced each table, so every figure in the report
can be rerun. A missing or unreadable file is reported as missing, never invented.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

import numpy as np

from tessera.report.html import Report, image_grid_figure

__all__ = ["add_benchmark_sections"]

log = logging.getLogger(__name__)


def _load(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, json.JSONDecodeError) as exc:
        log.warning("skipping %s: %s", path, exc)
        return None


def _provenance(rep: Report, data: dict[str, Any], command: str) -> None:
    quick = " QUICK smoke run: numbers are not meaningful." if data.get("quick") else ""
    rep.text(f"From {command} on {str(data.get('date', '?'))[:10]}.{quick}")


def _finetune(rep: Report, data: dict[str, Any]) -> None:
    rep.heading("Reward fine-tuning: Adjoint Matching vs baselines")
    _provenance(rep, data, "benchmarks/finetune.py")
    q = data.get("quality")
    if q:
        t, c = q["target"], q["settings"]["target_class"]
        share = f"class-{c} fraction"
        rep.text(
            f"Digits flow, reward log p({c} | x), lam = {q['settings']['lam']}, "
            f"{q['settings']['steps']} steps. The target p_base(x) p({c} | x) is estimated by "
            f"importance weighting {t['n_base']} base samples (ESS {t['ess']:.0f}); every model "
            "is judged by the independent digits judge, not the reward classifier. Diversity: "
            f"mean pairwise distance among class-{c} samples over the IS-weighted base's; "
            "nearest-train: median distance to the nearest training digit over base samples'; "
            "KL certificate: J - J*, an upper bound on KL(model || target) in nats."
        )
        rows = [
            {
                "model": "target (IS-weighted base)",
                share: t["target_fraction"],
                "TVD to target": 0.0,
                "diversity ratio": 1.0,
            }
        ]
        for name, r in q["models"].items():
            rows.append(
                {
                    "model": name,
                    share: r["target_fraction"],
                    "TVD to target": r["tvd_to_target"],
                    "diversity ratio": r["diversity_ratio"],
                    "nearest-train ratio": r.get("nearest_train_ratio", ""),
                    "KL certificate (nats)": r["kl_certificate"]["value"],
                }
            )
        rep.table(rows)
        side = math.isqrt(len(t["samples"][0]))
        rep.figure(
            image_grid_figure(np.asarray(t["samples"]).reshape(-1, side, side)), "base samples"
        )
        for name, r in q["models"].items():
            if "samples" in r:
                imgs = np.asarray(r["samples"]).reshape(-1, side, side)
                rep.figure(image_grid_figure(imgs), name)
    c = data.get("cost")
    if c:
        rep.text(
            "Cost of one optimiser step (batch 64, digits network) at K chain steps: median "
            "wall time, the rise of peak RSS during fine-tuning, and the autograd graph's "
            "memory (peak bytes saved for backward). Adjoint Matching's graph does not grow "
            "with K; the discrete adjoint's does."
        )
        rep.table(
            [
                {
                    "method": r["method"],
                    "K": r["K"],
                    "ms / iter": 1e3 * r["seconds_per_iter"],
                    "peak RSS rise (MB)": r["peak_mem_mb"],
                    "graph memory (MB)": r.get("graph_mem_mb", ""),
                }
                for r in c["rows"]
            ]
        )
        rep.table(
            [
                {"method": m, **v}
                for m, v in c["growth"].items()
                if isinstance(v, dict) and "memory_ratio_K100_over_K20" in v
            ]
        )


def _inverse(rep: Report, data: dict[str, Any]) -> None:
    s = data.get("settings", {})
    name = s.get("data", "digits")
    rep.heading(f"Linear inverse problems on {name} (training-free control)")
    _provenance(
        rep, data, "benchmarks/inverse.py" + ("" if name == "digits" else f" --data {name}")
    )
    rep.text(
        f"{s.get('n', '?')} held-out images, sigma_y = {s.get('sigma_y', '?')}; NFE: "
        "velocity-network calls per image (none for the pseudo-inverse and the Gaussian "
        "posterior mean); judge accuracy "
        "is the independent digits judge's accuracy on the reconstructions (its test accuracy "
        f"on real digits: {s.get('judge_test_accuracy', '?')})."
    )
    keep = ("task", "method", "psnr", "ssim", "judge_accuracy", "nfe", "seconds")
    rep.table([{k: r[k] for k in keep if k in r} for r in data.get("rows", [])])
    summary = data.get("summary")
    if summary:
        rep.text(
            "OT-ODE against the best training-free baseline (flow-DPS, PiGDM, pseudo-inverse, "
            "Gaussian posterior mean), "
            "against D-Flow and the pseudo-inverse, in dB; and its PSNR range across "
            "start_time in {0.1, 0.2, 0.3}."
        )
        rep.table([{"task": task, **v} for task, v in summary.items()])
    ranges = data.get("ot_ode_init_ranges")
    if ranges:
        rep.text(
            "OT-ODE's PSNR (dB) at each start_time for each time-aware initialisation "
            "(backprojection is Pokle et al.'s; the fixed setting's init is "
            f"{s.get('ot_ode_init', '?')})."
        )
        rep.table(ranges)


def _bipartite(rep: Report, data: dict[str, Any]) -> None:
    rep.heading("Bipartite experiments: engines")
    _provenance(rep, data, "benchmarks/bipartite.py")
    if data.get("spark_startup_seconds") is not None:
        rep.text(f"Spark local start-up: {data['spark_startup_seconds']:.1f} s (not in the rates).")
    keep = ("engine", "edges", "variance", "replicates", "seconds", "edges_per_s")
    rep.table([{k: r.get(k) for k in keep} for r in data.get("rows", [])])


# file stem -> (the command that writes it, its section)
_SECTIONS = {
    "finetune": ("benchmarks/finetune.py", _finetune),
    "inverse": ("benchmarks/inverse.py", _inverse),
    "inverse_mnist5k": ("benchmarks/inverse.py --data mnist5k", _inverse),
    "bipartite": ("benchmarks/bipartite.py", _bipartite),
}


def add_benchmark_sections(rep: Report, folder: str | Path) -> list[str]:
    """Render the committed benchmark results found in ``folder``.

    Args:
        rep: the report to extend.
        folder: directory of benchmark JSON files (``benchmarks/results`` of a checkout).

    Returns:
        Names of the benchmarks rendered (those whose JSON was found and readable).
    """
    folder = Path(folder)
    done = []
    for name, (_, section) in _SECTIONS.items():
        data = _load(folder, name)
        if data is None:
            continue
        part = Report(name)  # built aside, so a file of another layout adds nothing half-done
        try:
            section(part, data)
        except (KeyError, TypeError, ValueError) as exc:
            log.warning("skipping benchmark %s: unexpected layout (%s)", name, exc)
            continue
        rep.extend(part)
        done.append(name)
    missing = sorted(set(_SECTIONS) - set(done))
    if missing:
        rep.text(
            f"Benchmark results not found in {folder}: {', '.join(missing)}. Run "
            + ", ".join(_SECTIONS[m][0] for m in missing)
            + " to produce them."
        )
    return done
