r"""Judging controlled generation on digits against an importance-sampling target.

For a reward :math:`r(x) = \log p_{\text{clf}}(c \mid x)` and :math:`\lambda = 1` the
tilted law is :math:`p^*(x) \propto p_{\text{base}}(x)\,p_{\text{clf}}(c \mid x)`. Its
class histogram is estimated by self-normalised importance sampling of base samples
with weights :math:`w_i \propto e^{\lambda r(x_i)}`, labelled by the *independent*
judge (:func:`tessera.metrics.digits_judge`), never by the reward classifier. A
fine-tuned model is then compared with that target: total variation distance of the
judge histograms, and within-class diversity (mean pairwise L2 distance among samples
the judge assigns to class c) against the IS-weighted base value.

It also measures how far samples sit from the data: the distance of each sample to
its nearest training digit, against the same statistic for plain base samples.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch
from torch import Tensor

from tessera._validate import check_positive_int
from tessera.errors import ValidationError
from tessera.flows.solvers import solve_ode, uniform_grid

__all__ = ["ode_samples", "tilt_report"]

VelocityFn = Callable[[Tensor, Tensor], Tensor]


@torch.no_grad()
def ode_samples(
    velocity_fn: VelocityFn,
    n: int,
    sample_shape: tuple[int, ...],
    *,
    steps: int = 50,
    seed: int = 0,
    batch_size: int = 5000,
) -> Tensor:
    """Samples of the probability-flow ODE (midpoint, uniform grid) in batches.

    Args:
        velocity_fn: ``v(x, t)``.
        n: number of samples.
        sample_shape: shape of one sample.
        steps: midpoint steps.
        seed: seed of the source noise.
        batch_size: samples per solve.

    Returns:
        Tensor of shape (n, *sample_shape).
    """
    check_positive_int("n", n)
    gen = torch.Generator().manual_seed(seed)
    out = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        x0 = torch.randn((b, *sample_shape), generator=gen)
        out.append(solve_ode(velocity_fn, x0, uniform_grid(steps), method="midpoint"))
    return torch.cat(out)


def tilt_report(
    base_samples: Tensor,
    log_weights: Tensor,
    samples: Mapping[str, Tensor],
    *,
    target_class: int,
    judge: Any,
    train_x: np.ndarray | None = None,
    max_pairs_n: int = 2000,
) -> dict[str, Any]:
    """Compare models' samples with the importance-sampling estimate of the tilted law.

    Args:
        base_samples: samples of the base model, shape (N, ...).
        log_weights: lam * r(x) at the base samples, shape (N,) (unnormalised log
            importance weights of the tilted law).
        samples: name -> samples of a model, shape (n, ...).
        target_class: the class c the reward favours.
        judge: the independent judge (``predict`` and ``evaluate(..., sample_weight=)``).
        train_x: training images, shape (m, P), for nearest-neighbour distances.
        max_pairs_n: at most this many samples per class enter the pairwise distances.

    Returns:
        ``{"target": {...}, "models": {name: {...}}}``: the target's judge histogram,
        effective sample size and within-class diversity; per model the histogram, TVD
        to the target, fraction of the target class, within-class diversity and its
        ratio to the target's, mean judge max-probability and (with ``train_x``) the
        median nearest-training distance and its ratio to the base samples'.

    Raises:
        ValidationError: shapes that do not match, or no sample of the target class.
    """
    from tessera.metrics import mean_pairwise_distance, nearest_distance, tvd

    check_positive_int("max_pairs_n", max_pairs_n, minimum=2)
    xb = base_samples.detach().reshape(base_samples.shape[0], -1).cpu().double().numpy()
    lw = log_weights.detach().cpu().double().numpy()
    if lw.shape != (xb.shape[0],):
        raise ValidationError(
            f"log_weights must have shape ({xb.shape[0]},), one lam * r(x) per base sample, "
            f"got {lw.shape}"
        )
    w = np.exp(lw - lw.max())
    target_rep = judge.evaluate(xb, sample_weight=w)
    hist_t = np.asarray(target_rep.class_histogram)
    pred_b = judge.predict(xb)
    sel = np.flatnonzero(pred_b == target_class)[:max_pairs_n]
    if len(sel) < 2:
        raise ValidationError(
            f"target_class={target_class}: fewer than 2 of the {xb.shape[0]} base samples are "
            "judged this class; draw more base samples or check the class label"
        )
    div_t = mean_pairwise_distance(xb[sel], weights=w[sel])
    base_nn = None
    if train_x is not None:
        base_nn = float(np.median(nearest_distance(xb[:max_pairs_n], train_x)))
    out: dict[str, Any] = {
        "target": {
            "class_histogram": hist_t.round(4).tolist(),
            "target_fraction": float(hist_t[target_class]),
            "ess": float(w.sum() ** 2 / (w**2).sum()),
            "n_base": int(xb.shape[0]),
            "diversity": div_t,
            "base_nearest_train_median": base_nn,
        },
        "models": {},
    }
    for name, x in samples.items():
        xm = x.detach().reshape(x.shape[0], -1).cpu().double().numpy()
        rep = judge.evaluate(xm)
        hist = np.asarray(rep.class_histogram)
        pred = judge.predict(xm)
        cls = np.flatnonzero(pred == target_class)[:max_pairs_n]
        div = mean_pairwise_distance(xm[cls]) if len(cls) >= 2 else float("nan")
        row: dict[str, Any] = {
            "n": int(xm.shape[0]),
            "class_histogram": hist.round(4).tolist(),
            "tvd_to_target": tvd(hist, hist_t),
            "target_fraction": float(hist[target_class]),
            "diversity": div,
            "diversity_ratio": div / div_t,
            "mean_max_prob": rep.mean_max_prob,
        }
        if train_x is not None and base_nn is not None:
            med = float(np.median(nearest_distance(xm[:max_pairs_n], train_x)))
            row["nearest_train_median"] = med
            row["nearest_train_ratio"] = med / base_nn
        out["models"][name] = row
    return out
