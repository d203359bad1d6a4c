"""``tessera demo`` and ``tessera flows {train,sample}``."""

from __future__ import annotations

import argparse
import io
from pathlib import Path
from typing import Any

from tessera.cli._common import emit
from tessera.errors import ValidationError

__all__ = ["add_parsers"]


def _cmd_demo(args: argparse.Namespace) -> int:
    from tessera.report.demo import run_demo

    results = run_demo(
        args.out,
        quick=args.quick,
        seed=args.seed,
        progress=not args.no_progress,
        benchmarks_dir=None if args.benchmarks == "" else args.benchmarks,
    )
    toy, dig = results["eight_gaussians"], results["digits"]
    human = (
        f"eight_gaussians: W2 {toy['w2_model']:.4f} vs noise floor {toy['w2_noise_floor']:.4f} "
        f"(ratio {toy['ratio']:.2f})\n"
        f"digits: judge mean max-prob {dig['mean_max_prob']:.3f}, TVD to uniform "
        f"{dig['tvd_uniform']:.3f}\n"
        f"report: {Path(args.out).resolve() / 'report.html'}"
    )
    emit(args, results, human)
    return 0


def _cmd_flows_train(args: argparse.Namespace) -> int:
    from tessera.flows.recipes import train_on

    overrides: dict[str, Any] = {"out_dir": args.out, "progress": not args.no_progress}
    for key in ("steps", "batch_size", "lr", "checkpoint_every", "schedule", "coupling"):
        value = getattr(args, key)
        if value is not None:
            overrides[key] = value
    if args.resume:
        overrides["resume"] = True
    result, _ = train_on(
        args.data,
        arch=args.arch,
        class_conditional=args.class_cond,
        seed=args.seed,
        **overrides,
    )
    hist = result.history
    payload = {
        "model_dir": str(result.out_dir),
        "final_loss": hist["loss"][-1] if hist["loss"] else None,
        "steps": result.config.steps if result.config else None,
    }
    emit(args, payload, f"trained {args.data}; model written to {result.out_dir}")
    return 0


def _cmd_flows_sample(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from tessera.flows import sample
    from tessera.flows.recipes import load_flow
    from tessera.nn import atomic_write_bytes

    model, facts = load_flow(args.ckpt)
    y = None
    if args.label is not None:
        y = torch.full((args.n,), args.label, dtype=torch.long)
    x = sample(
        model,
        args.n,
        tuple(facts["sample_shape"]),
        steps=args.steps,
        method=args.method,
        y=y,
        guidance=args.guidance,
        generator=args.seed,
    )
    arr = x.cpu().numpy()
    out = Path(args.out)
    if out.suffix != ".npy":
        raise ValidationError(f"--out must end in .npy, got {str(out)!r}")
    buf = io.BytesIO()
    np.save(buf, arr)
    atomic_write_bytes(out, buf.getvalue())
    written = [str(out)]
    if facts.get("image_shape"):
        from tessera.report.html import image_grid_figure

        h, w = facts["image_shape"]
        fig = image_grid_figure(arr[:100].reshape(-1, h, w), ncols=10)
        png = io.BytesIO()
        fig.savefig(png, format="png", dpi=100, bbox_inches="tight")
        atomic_write_bytes(out.with_suffix(".png"), png.getvalue())
        written.append(str(out.with_suffix(".png")))
    payload = {"files": written, "shape": list(arr.shape), "dataset": facts.get("dataset")}
    emit(
        args,
        payload,
        f"wrote {arr.shape[0]} samples of shape {arr.shape[1:]} to {', '.join(written)}",
    )
    return 0


def add_parsers(sub: Any) -> None:
    """Add the ``demo`` and ``flows`` sub-commands.

    Args:
        sub: the ``add_subparsers()`` object of the ``tessera`` parser.
    """
    # parser construction must not import torch: other areas' commands run without it
    from tessera.data import IMAGE_DATASET_NAMES, TOY2D_NAMES

    demo = sub.add_parser("demo", help="train and evaluate the demo flows; write an HTML report")
    demo.add_argument("--out", default="runs/demo", help="output directory (default runs/demo)")
    demo.add_argument("--quick", action="store_true", help="short smoke run")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-progress", action="store_true", help="hide progress bars")
    demo.add_argument(
        "--benchmarks",
        default="benchmarks/results",
        help="committed benchmark JSON to render in the report (default benchmarks/results; "
        "'' for none)",
    )
    demo.add_argument("--json", action="store_true", help="print results as JSON")
    demo.set_defaults(func=_cmd_demo)

    flows = sub.add_parser("flows", help="flow matching: train and sample").add_subparsers(
        dest="flows_command", required=True
    )
    tr = flows.add_parser("train", help="train a flow on a bundled data set")
    tr.add_argument("--data", required=True, choices=(*TOY2D_NAMES, *IMAGE_DATASET_NAMES))
    tr.add_argument("--out", required=True, help="output directory (checkpoints, model/)")
    tr.add_argument("--steps", type=int, help="optimiser steps (default: per data set)")
    tr.add_argument("--batch-size", type=int)
    tr.add_argument("--lr", type=float)
    tr.add_argument("--arch", choices=("auto", "mlp", "unet"), default="auto")
    tr.add_argument("--schedule", choices=("cond_ot", "vp", "cosine"))
    tr.add_argument("--coupling", choices=("independent", "minibatch_ot"))
    tr.add_argument("--class-cond", action="store_true", help="condition on labels (CFG dropout)")
    tr.add_argument("--checkpoint-every", type=int, help="steps between checkpoints")
    tr.add_argument("--resume", action="store_true", help="continue from the latest checkpoint")
    tr.add_argument("--seed", type=int, default=0)
    tr.add_argument("--no-progress", action="store_true")
    tr.add_argument("--json", action="store_true")
    tr.set_defaults(func=_cmd_flows_train)

    sa = flows.add_parser("sample", help="sample a trained flow to a .npy file (and a PNG grid)")
    sa.add_argument("--ckpt", required=True, help="training output directory or its model/")
    sa.add_argument("--n", type=int, required=True)
    sa.add_argument("--out", required=True, help="output .npy file")
    sa.add_argument("--steps", type=int, default=100)
    sa.add_argument(
        "--method",
        default="midpoint",
        help="euler, midpoint, heun, rk4 or dopri5 (default midpoint)",
    )
    sa.add_argument("--label", type=int, help="class label (class-conditional flows)")
    sa.add_argument("--guidance", type=float, default=0.0, help="classifier-free guidance weight")
    sa.add_argument("--seed", type=int, default=0)
    sa.add_argument("--json", action="store_true")
    sa.set_defaults(func=_cmd_flows_sample)
