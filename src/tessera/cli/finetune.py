"""``tessera finetune``: reward fine-tuning of a trained flow (Adjoint Matching and baselines)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from tessera.cli._common import emit

__all__ = ["add_parsers"]

_METHODS = {
    "am": "adjoint_matching",
    "discrete-adjoint": "discrete_adjoint",
    "draft": "draft",
    "refl": "refl",
}


def _cmd_finetune(args: argparse.Namespace) -> int:
    import numpy as np

    from tessera.control import finetune as ft
    from tessera.control.rewards import parse_reward
    from tessera.flows.recipes import load_flow
    from tessera.flows.schedules import schedule_from_dict
    from tessera.nn import atomic_write_text

    base, facts = load_flow(args.ckpt)
    dim = int(np.prod(facts["sample_shape"]))
    reward = parse_reward(args.reward, dim=dim, dataset=facts.get("dataset"))
    schedule = schedule_from_dict(facts.get("schedule", "cond_ot"))
    keep = ("sample_shape", "image_shape", "dataset", "class_conditional")
    metadata = {k: facts[k] for k in keep if k in facts}
    metadata["base_ckpt"] = str(args.ckpt)
    metadata["reward"] = args.reward
    common: dict[str, Any] = {
        "lam": args.lam,
        "schedule": schedule,
        "sample_shape": tuple(facts["sample_shape"]),
        "steps": args.steps,
        "n_time_steps": args.n_time_steps,
        "batch_size": args.batch_size,
        "lr": args.lr,
        "generator": args.seed,
        "progress": not args.no_progress,
        "metadata": metadata,
        "out_dir": args.out,
        "checkpoint_every": args.checkpoint_every,
        "resume": args.resume,
        "seed": args.seed,
    }
    method = _METHODS[args.method]
    if method == "adjoint_matching":
        result = ft.adjoint_matching(base, reward, diffusion=args.diffusion, **common)
    else:
        result = getattr(ft, method)(base, reward, **common)
    out = Path(args.out)
    atomic_write_text(out / "history.json", json.dumps(result.history))
    last = {k: v[-1] for k, v in result.history.items() if v}
    payload = {"out": str(out), "model": str(result.out_dir), "method": method, "last": last}
    emit(
        args,
        payload,
        f"{method}: {args.steps} steps, last mean reward {last.get('reward', float('nan')):.4f}; "
        f"model in {result.out_dir} (sample it with: tessera flows sample --ckpt {out} ...)",
    )
    return 0


def add_parsers(sub: Any) -> None:
    """Add the ``finetune`` sub-command.

    Args:
        sub: the ``add_subparsers()`` object of the ``tessera`` parser.
    """
    p = sub.add_parser(
        "finetune",
        help="reward fine-tuning of a trained flow (Adjoint Matching, DRaFT, ReFL, discrete adjoint)",
    )
    p.add_argument("--ckpt", required=True, help="the base flow (tessera flows train output)")
    p.add_argument(
        "--reward",
        required=True,
        help="linear:b1,b2,... | quadratic:c1,c2,... | classifier:DIGIT (digit flows)",
    )
    p.add_argument("--lam", type=float, required=True, help="reward multiplier lambda (> 0)")
    p.add_argument("--steps", type=int, default=1000, help="optimiser steps (default 1000)")
    p.add_argument("--out", required=True, help="output directory (model/, checkpoints/)")
    p.add_argument("--method", choices=tuple(_METHODS), default="am")
    p.add_argument("--n-time-steps", type=int, default=40, help="chain steps K (default 40)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-4)
    p.add_argument(
        "--diffusion",
        default="memoryless",
        help="memoryless (default; the only one that reaches the tilted law) or constant:S",
    )
    p.add_argument("--checkpoint-every", type=int, default=0)
    p.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_cmd_finetune)
