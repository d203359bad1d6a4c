"""``tessera gshm {calibrate,delta,release}``: the Gaussian sparse histogram mechanism."""

from __future__ import annotations

import argparse
import csv
import io
import os
import tempfile
from pathlib import Path
from typing import Any

from tessera.cli._common import emit
from tessera.errors import ValidationError

__all__ = ["add_parsers"]


def _atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory + os.replace."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _cmd_calibrate(args: argparse.Namespace) -> int:
    from tessera.privacy.gshm import calibrate, threshold_savings

    p = calibrate(args.epsilon, args.delta, k=args.k, linf=args.linf, objective=args.objective)
    s = threshold_savings(args.epsilon, args.delta, k=args.k, linf=args.linf)
    payload: dict[str, Any] = {
        **p.to_dict(),
        "delta_exact": p.delta_exact(),
        "additive_best": {"sigma": s.additive_best.sigma, "tau": s.additive_best.tau},
        "additive_even": {"sigma": s.additive_even.sigma, "tau": s.additive_even.tau},
        "threshold_ratio_best": s.threshold_ratio_best,
        "threshold_ratio_even": s.threshold_ratio_even,
    }
    human = (
        f"sigma = {p.sigma:.6f}, tau = {p.tau:.6f} (exact delta {p.delta_exact():.6g} "
        f"<= {p.delta:g} at epsilon {p.epsilon:g}, k = {p.k})\n"
        f"add-the-deltas: best split tau = {s.additive_best.tau:.6f} "
        f"({(s.threshold_ratio_best - 1) * 100:.2f}% higher), even split tau = "
        f"{s.additive_even.tau:.6f} ({(s.threshold_ratio_even - 1) * 100:.2f}% higher)"
    )
    emit(args, payload, human)
    return 0


def _cmd_delta(args: argparse.Namespace) -> int:
    from tessera.privacy.gshm import delta_additive, gshm_terms

    t = gshm_terms(args.epsilon, sigma=args.sigma, tau=args.tau, k=args.k, linf=args.linf)
    add = float(
        delta_additive(args.epsilon, sigma=args.sigma, tau=args.tau, k=args.k, linf=args.linf)
    )
    payload = {
        "delta_exact": t.delta,
        "delta_additive": add,
        "argmax": t.argmax,
        "j": t.j,
        "t1": t.t1,
    }
    human = (
        f"delta_exact = {t.delta:.10g} (max at {t.argmax}, j = {t.j}); delta_additive = {add:.10g}"
    )
    emit(args, payload, human)
    return 0


def _cmd_release(args: argparse.Namespace) -> int:
    from tessera.privacy.gshm import calibrate, release

    src = Path(args.input)
    if not src.is_file():
        raise ValidationError(f"--input {str(src)!r} is not a file; pass a CSV or Parquet file")
    out = Path(args.out)
    if out.suffix not in (".csv", ".json"):
        raise ValidationError(f"--out must end in .csv or .json, got {str(out)!r}")
    if args.value and args.value_bound is None:
        raise ValidationError("--value needs --value-bound B (the public clamp bound |value| <= B)")
    params = calibrate(
        args.epsilon,
        args.delta,
        k=args.k,
        linf=args.linf,
        value_bound=args.value_bound if args.value else None,
    )
    res = release(
        str(src), key=args.key, user=args.user, value=args.value, params=params, engine="duckdb"
    )
    if out.suffix == ".json":
        import json

        _atomic_write_text(out, json.dumps(res.to_dict(), indent=2, default=str))
    else:
        buf = io.StringIO()
        w = csv.writer(buf)
        w.writerow([args.key, "noisy_count", *([f"noisy_sum_{args.value}"] if args.value else [])])
        for i, key in enumerate(res.keys):
            row = [key.item() if hasattr(key, "item") else key, repr(float(res.counts[i]))]
            if res.sums is not None:
                row.append(repr(float(res.sums[i])))
            w.writerow(row)
        _atomic_write_text(out, buf.getvalue())
    payload = {"out": str(out), "n_released": int(res.keys.size), **params.to_dict()}
    emit(args, payload, f"released {res.keys.size} keys (tau = {params.tau:.4f}) to {out}")
    return 0


def add_parsers(sub: Any) -> None:
    """Add the ``gshm`` sub-commands (no heavy imports at parser-building time).

    Args:
        sub: the ``add_subparsers()`` object of the ``tessera`` parser.
    """
    g = sub.add_parser(
        "gshm", help="Gaussian sparse histogram mechanism: private group-by releases"
    ).add_subparsers(dest="gshm_command", required=True)

    ca = g.add_parser("calibrate", help="sigma and tau for (epsilon, delta, k), exact accounting")
    ca.add_argument("--epsilon", type=float, required=True)
    ca.add_argument("--delta", type=float, required=True)
    ca.add_argument("--k", type=int, required=True, help="max keys per user (l0 bound)")
    ca.add_argument("--linf", type=float, default=1.0, help="max count per (user, key)")
    ca.add_argument(
        "--objective", choices=("min_threshold", "min_sigma", "balanced"), default="min_threshold"
    )
    ca.add_argument("--json", action="store_true")
    ca.set_defaults(func=_cmd_calibrate)

    de = g.add_parser("delta", help="exact and add-the-deltas delta(epsilon) for (sigma, tau, k)")
    de.add_argument("--epsilon", type=float, required=True)
    de.add_argument("--sigma", type=float, required=True)
    de.add_argument("--tau", type=float, required=True)
    de.add_argument("--k", type=int, required=True)
    de.add_argument("--linf", type=float, default=1.0)
    de.add_argument("--json", action="store_true")
    de.set_defaults(func=_cmd_delta)

    re_ = g.add_parser("release", help="release noisy per-key counts above the threshold")
    re_.add_argument("--input", required=True, help="CSV or Parquet file of rows")
    re_.add_argument("--user", required=True, help="privacy-unit column")
    re_.add_argument("--key", required=True, help="group-by key column")
    re_.add_argument("--value", help="optional numeric column to sum")
    re_.add_argument("--value-bound", type=float, help="public clamp bound B for --value")
    re_.add_argument("--epsilon", type=float, required=True)
    re_.add_argument("--delta", type=float, required=True)
    re_.add_argument("--k", type=int, required=True)
    re_.add_argument("--linf", type=float, default=1.0)
    re_.add_argument("--out", required=True, help="output .csv or .json (written atomically)")
    re_.add_argument("--json", action="store_true")
    re_.set_defaults(func=_cmd_release)
