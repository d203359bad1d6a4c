"""``tessera inverse solve``: reconstruct held-out images from simulated measurements."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

from tessera.cli._common import emit

__all__ = ["add_parsers"]


def _cmd_solve(args: argparse.Namespace) -> int:
    import numpy as np
    import torch

    from tessera.control import GaussianPrior
    from tessera.control.tasks import make_operator, reconstruct
    from tessera.data import digits, mnist5k
    from tessera.errors import ValidationError
    from tessera.flows.recipes import load_flow
    from tessera.flows.schedules import schedule_from_dict
    from tessera.metrics import psnr, ssim
    from tessera.nn import atomic_write_bytes, atomic_write_text
    from tessera.report.html import image_grid_figure

    model, facts = load_flow(args.ckpt)
    name = facts.get("dataset")
    if name not in ("digits", "mnist5k") or facts.get("class_conditional"):
        raise ValidationError(
            f"--ckpt must hold an unconditional flow trained on digits or mnist5k, got {name!r}"
        )
    if args.n < 1:
        raise ValidationError(f"--n must be >= 1, got {args.n}")
    ds = digits() if name == "digits" else mnist5k()
    h, w = ds.image_shape
    x_true = torch.from_numpy(np.array(ds.test_x[: args.n], dtype=np.float32))
    op = make_operator(args.task, (h, w))
    gen = torch.Generator().manual_seed(args.seed)
    y = op.forward(x_true)
    y = y + args.sigma_y * torch.randn(y.shape, generator=gen)
    sample_shape = tuple(facts["sample_shape"])

    def velocity(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return model(x.reshape(x.shape[0], *sample_shape), t).reshape(x.shape[0], -1)

    schedule = schedule_from_dict(facts.get("schedule", "cond_ot"))
    # OT-ODE starts from the posterior of a Gaussian fitted to the flow's training data
    prior = (
        GaussianPrior.fit(torch.from_numpy(np.array(ds.train_x, dtype=np.float32)))
        if args.method in ("ot-ode", "gaussian")
        else None
    )
    res = reconstruct(
        velocity, op, y, args.sigma_y, args.method, schedule=schedule, prior=prior, generator=gen
    )
    x = res.x.clamp(-1, 1).numpy()
    metrics: dict[str, Any] = {
        "task": args.task,
        "method": args.method,
        "sigma_y": args.sigma_y,
        "n": args.n,
        "psnr": psnr(x, x_true.numpy()),
        "ssim": ssim(x.reshape(-1, h, w), x_true.numpy().reshape(-1, h, w)),
        "consistency_mean": float(res.consistency.mean()),
        "settings": res.settings,
    }
    from tessera.metrics import digits_judge, mnist5k_judge

    judge = (digits_judge if name == "digits" else mnist5k_judge)()
    metrics["judge_accuracy"] = float((judge.predict(x) == ds.test_y[: args.n]).mean())
    out = Path(args.out)
    buf = io.BytesIO()
    np.save(buf, x)
    grid = np.concatenate(
        [x_true.numpy()[:10], op.back_project(y[:10]).clamp(-1, 1).numpy(), x[:10]]
    )
    fig = image_grid_figure(
        grid.reshape(-1, h, w),
        ncols=min(10, args.n),
        title="truth / pseudo-inverse / reconstruction",
    )
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100, bbox_inches="tight")
    # all outputs computed: only now is anything written
    atomic_write_bytes(out / "reconstructions.npy", buf.getvalue())
    atomic_write_bytes(out / "grid.png", png.getvalue())
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    emit(
        args,
        metrics,
        f"{args.task} / {args.method}: PSNR {metrics['psnr']:.2f} dB, SSIM {metrics['ssim']:.3f}; wrote {out}",
    )
    return 0


def add_parsers(sub: Any) -> None:
    """Add the ``inverse`` sub-commands.

    Args:
        sub: the ``add_subparsers()`` object of the ``tessera`` parser.
    """
    inv = sub.add_parser(
        "inverse", help="linear inverse problems with a trained flow"
    ).add_subparsers(dest="inverse_command", required=True)
    so = inv.add_parser("solve", help="reconstruct held-out images from simulated measurements")
    so.add_argument("--ckpt", required=True, help="a flow trained by `tessera flows train`")
    so.add_argument("--task", required=True, choices=("inpaint", "superres", "deblur", "denoise"))
    so.add_argument(
        "--method",
        required=True,
        choices=("ot-ode", "dflow", "dps", "pigdm", "pinv", "gaussian"),
        help="gaussian: the Wiener filter of a Gaussian fitted to the training data",
    )
    so.add_argument(
        "--sigma-y", type=float, default=0.05, help="measurement noise sd (default 0.05)"
    )
    so.add_argument("--n", type=int, default=100, help="held-out test images to reconstruct")
    so.add_argument("--out", required=True, help="output directory")
    so.add_argument("--seed", type=int, default=0)
    so.add_argument("--json", action="store_true")
    so.set_defaults(func=_cmd_solve)
