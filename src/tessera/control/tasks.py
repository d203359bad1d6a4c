"""Image inverse-problem tasks and one entry point over all methods (used by the CLI).

Tasks on images in [-1, 1]: bottom-half ``inpaint``, 2x average-pool ``superres``,
3x3 Gaussian ``deblur`` (sigma 1 pixel, circular) and ``denoise``. Methods, each with
one fixed setting for every task: ``ot-ode`` (gamma = 3, t' = 0.2, 100 Euler steps,
the ``"posterior-mean"`` time-aware initialisation),
``dflow`` (blend init alpha = 0.1, 5 midpoint steps, L-BFGS 20 x 20, lambda_R = 0.01),
``dps`` (flow-DPS, zeta = 1, 100 steps), ``pigdm`` (PiGDM on the model's VP version,
t' = 0.2, 100 steps), ``pinv`` (regularised pseudo-inverse) and ``gaussian`` (the
posterior mean under a Gaussian fitted to the training data, i.e. the Wiener filter; it
needs ``prior`` and no flow).

OT-ODE's guidance weight: gamma = 1 (the paper's constant schedule) is exact for a
Gaussian prior (``tests/control/test_inverse.py``), but with a learned multimodal prior
the Gaussian likelihood approximation under-weights the measurement. gamma = 3 was chosen
from {1, 2, 3, 5} on held-out digits 100-199 at sigma_y = 0.05 (the benchmark reports
digits 0-99): against gamma = 1 it gains 2.1 / 2.0 / 2.1 / 5.5 dB on inpaint / superres /
deblur / denoise there, and is within 0.6 dB of the best of the four values on every task
(gamma = 5 was higher on inpaint, super-resolution and, by 0.06 dB, denoise, but lower on
deblur).

OT-ODE's initialisation: Pokle et al. start from the noised back-projection, which is
zero on the null space of A and knows nothing of the prior's correlations. On 28x28
MNIST-5k (background -1) that made bottom-half inpainting depend on the start time:
PSNR 14.43 / 14.01 / 13.03 dB at t' = 0.1 / 0.2 / 0.3 (32 held-out digits). The fixed
setting starts from the posterior mean of a Gaussian fitted to the flow's training data
(``init="posterior-mean"`` with ``prior=GaussianPrior.fit(train)``;
:mod:`tessera.control.inverse`), chosen on that failure: its inpainting range is 0.09 dB
and no task's PSNR at t' = 0.2 is lower (``benchmarks/inverse.py`` sweeps the start
time for every init, on digits and MNIST-5k). Without a fitted prior the stand-in is
N(flow mean, I), which fixes the mean only (inpainting range 0.77 dB).

Baselines: OT-ODE's comparison (Pokle et al.; research note OT-2) is with the other
training-free methods at their own single setting: the pseudo-inverse, flow-DPS and PiGDM
on the model's VP version, and the Gaussian posterior mean from the same fitted prior
OT-ODE starts from (an MMSE estimate under a Gaussian prior, strong in PSNR where the
posterior is wide: it is blurry where OT-ODE draws a sample). D-Flow is not one of them:
it optimises the source point through the solver with about 90 times the NFE, and
``benchmarks/inverse.py`` reports it beside OT-ODE separately.

``InverseResult.settings["nfe"]`` is the number of velocity-network calls per image (a
batched call counts once), counted by wrapping the velocity, so it includes D-Flow's line
search trials and the forward passes that checkpointing recomputes during its backward
passes. The guided methods (OT-ODE, PiGDM, DPS, D-Flow) also back-propagate through
their calls; ``pinv`` and ``gaussian`` make none.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from tessera._validate import check_choice
from tessera.control.dflow import blend_init, dflow, linear_cost
from tessera.control.gaussian_prior import GaussianPrior
from tessera.control.inverse import flow_dps, ot_ode, pigdm_vp
from tessera.control.operators import (
    Denoise,
    GaussianBlur,
    Inpaint,
    LinearOperator,
    SuperResolution,
)
from tessera.errors import ValidationError
from tessera.flows.schedules import VP, CondOT, Schedule, change_schedule

__all__ = ["METHODS", "OT_ODE_SETTINGS", "TASKS", "InverseResult", "make_operator", "reconstruct"]

TASKS: tuple[str, ...] = ("inpaint", "superres", "deblur", "denoise")
METHODS: tuple[str, ...] = ("ot-ode", "dflow", "dps", "pigdm", "pinv", "gaussian")
Task = Literal["inpaint", "superres", "deblur", "denoise"]
Method = Literal["ot-ode", "dflow", "dps", "pigdm", "pinv", "gaussian"]
#: the fixed OT-ODE setting of :func:`reconstruct` (see the module notes for gamma)
OT_ODE_SETTINGS: dict[str, Any] = {
    "gamma": 3.0,
    "start_time": 0.2,
    "steps": 100,
    "init": "posterior-mean",
}


def _describe(prior: GaussianPrior) -> str:
    return f"GaussianPrior(rank={prior.eigenvalues.shape[0]}, floor={prior.floor:.3g})"


def make_operator(task: Task, image_shape: Sequence[int]) -> LinearOperator:
    """The measurement operator of a task for images of ``image_shape``.

    Args:
        task: one of :data:`TASKS`.
        image_shape: (H, W).

    Returns:
        The operator.

    Raises:
        UnsupportedError: for an unknown task.
    """
    check_choice("task", task, TASKS)
    h, w = (int(s) for s in image_shape)
    if task == "inpaint":
        mask = torch.ones(h, w, dtype=torch.bool)
        mask[h // 2 :] = False  # bottom half missing
        return Inpaint(mask)
    if task == "superres":
        return SuperResolution(2, (h, w))
    if task == "deblur":
        return GaussianBlur(3, 1.0, (h, w))
    return Denoise(h * w)


@dataclass(frozen=True)
class InverseResult:
    """Reconstructions and their measurement consistency.

    Attributes:
        x: reconstructions, shape (B, D).
        consistency: ||A x - y|| / sqrt(m) per sample, shape (B,).
        method: the method used.
        settings: the method's settings.
    """

    x: Tensor
    consistency: Tensor
    method: str
    settings: dict[str, Any]


def reconstruct(
    velocity_fn: Callable[[Tensor, Tensor], Tensor],
    operator: LinearOperator,
    y: Tensor,
    sigma_y: float,
    method: Method,
    *,
    schedule: Schedule | None = None,
    prior: GaussianPrior | None = None,
    generator: torch.Generator | int | None = None,
) -> InverseResult:
    """Reconstruct signals from y = A x + N(0, sigma_y^2) with a flow prior.

    Args:
        velocity_fn: ``v(x, t)`` of the prior flow; x (B, D), t (B,).
        operator: the measurement operator.
        y: measurements, shape (B, m).
        sigma_y: measurement noise standard deviation.
        method: one of :data:`METHODS` (fixed settings, listed in the module docstring).
        schedule: the flow's path (default cond-OT).
        prior: a Gaussian fitted to the flow's training data (``GaussianPrior.fit``):
            OT-ODE's stand-in for the prior (default N(flow mean, I)) and the model of
            ``gaussian``, which needs it; other methods ignore it.
        generator: torch Generator or seed.

    Returns:
        An :class:`InverseResult`.

    Raises:
        UnsupportedError: for an unknown method.
        ValidationError: ``gaussian`` without a prior.
    """
    check_choice("method", method, METHODS)
    sched = schedule if schedule is not None else CondOT()
    settings: dict[str, Any]
    calls = [0]

    def counted(x: Tensor, t: Tensor) -> Tensor:
        calls[0] += 1
        return velocity_fn(x, t)

    if method == "ot-ode":
        settings = dict(OT_ODE_SETTINGS)
        x = ot_ode(
            counted, sched, operator, y, sigma_y, prior=prior, generator=generator, **settings
        )
        settings["prior"] = "N(flow mean, I)" if prior is None else _describe(prior)
    elif method == "dps":
        settings = {"step_size": 1.0, "steps": 100}
        x = flow_dps(counted, sched, operator, y, generator=generator, **settings)
    elif method == "pigdm":
        settings = {"start_time": 0.2, "steps": 100}
        v_vp = change_schedule(counted, sched, VP())

        def eps(xs: Tensor, s: Tensor) -> Tensor:
            return VP().velocity_to_x0(v_vp(xs, s), xs, s)

        x = pigdm_vp(eps, operator, y, sigma_y, generator=generator, **settings)
    elif method == "dflow":
        settings = {
            "alpha": 0.1,
            "ode_steps": 5,
            "max_iter": 20,
            "inner_iter": 20,
            "reg_weight": 0.01,
        }
        x0 = blend_init(counted, operator.back_project(y, max(sigma_y**2, 1e-6)), 0.1, generator)
        res = dflow(
            counted,
            linear_cost(operator, y),
            x0,
            ode_steps=5,
            max_iter=20,
            inner_iter=20,
            reg_weight=0.01,
        )
        x = res.x1
    elif method == "gaussian":
        if not isinstance(prior, GaussianPrior):
            raise ValidationError(
                "method 'gaussian' needs prior=GaussianPrior.fit(training data), "
                f"got prior={type(prior).__name__}"
            )
        settings = {"prior": _describe(prior)}
        x = prior.posterior_mean(operator, y, sigma_y**2)
    else:
        settings = {"regulariser": max(sigma_y**2, 1e-6)}
        x = operator.back_project(y, settings["regulariser"])
    settings["nfe"] = calls[0]
    cons = (operator.forward(x) - y).norm(dim=1) / y.shape[1] ** 0.5
    return InverseResult(x=x.detach(), consistency=cons.detach(), method=method, settings=settings)
