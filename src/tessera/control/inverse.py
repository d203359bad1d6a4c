r"""Training-free linear inverse problems with flows (Pokle et al., arXiv 2310.04432).

Observation :math:`y = A x_1 + e`, :math:`e \sim N(0, \sigma_y^2 I)`. The conditional
velocity adds the PiGDM likelihood gradient, weighted by :math:`\eta_t`:

.. math::

    v(x_t | y) = v(x_t) + \gamma_t\,\eta_t\,
        \Big(\frac{\partial \hat x_1}{\partial x_t}\Big)^T A^T
        (r_t^2 A A^T + \sigma_y^2 I)^{-1} (y - A \hat x_1),
    \qquad r_t^2 = \frac{\beta_t^2}{\alpha_t^2 + \beta_t^2},

one vector-Jacobian product of the network per step. For N(0, I) data the Gaussian
approximation of :math:`p(y | x_t)` is exact, so the method then samples the exact
posterior (checked in the tests). The time-aware initialisation starts at
:math:`t'` from :math:`x_{t'} = \alpha_{t'} \bar y + \beta_{t'} \varepsilon` with the
regularised back-projection :math:`\bar y = A^T (A A^T + \sigma_y^2 I)^{-1} y`, then
takes Euler steps to t = 1. The same code on a VP path with a converted epsilon model
is the probability-flow version of PiGDM (:func:`pigdm_vp`).

Initialisation (``init``). The back-projection is zero on the null space of A (the
missing half of an inpainted image), which no data point resembles when data are not
centred (MNIST's background is -1); and it carries none of the prior's correlation
between what is observed and what is not. Started at a later t', the flow has less time
to repair either, and the result depends on t'. Two alternatives start from the
posterior :math:`p(x_1 | y)` of a Gaussian stand-in for the prior
(:class:`~tessera.control.gaussian_prior.GaussianPrior`): with ``prior=None`` that is
:math:`N(m, I)` with the flow's own mean :math:`m = E[X_1] = \hat x_1(x_0, t=0)` (one
batched velocity call; the identity covariance is OT-ODE's own assumption behind
:math:`r_t^2`); pass ``GaussianPrior.fit(training_data)`` to use the data's covariance.

* ``"posterior-mean"``: :math:`x_{t'} = \alpha_{t'} E[x_1 | y] + \beta_{t'} \varepsilon`;
* ``"posterior-sample"``: the same with a posterior draw (Matheron's rule) in place of
  the mean. For a Gaussian prior equal to the stand-in this makes :math:`x_{t'}` exactly
  distributed as :math:`p_{t'}(x | y)`, so the warm start is then unbiased at any t'
  (tested against the exact posterior).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import Tensor

from tessera._rng import as_generator
from tessera._validate import check_choice, check_finite, check_positive, check_positive_int
from tessera.control.gaussian_prior import GaussianPrior
from tessera.control.operators import LinearOperator
from tessera.errors import ShapeError, ValidationError
from tessera.flows.schedules import VP, CondOT, Schedule, change_schedule
from tessera.flows.solvers import uniform_grid

__all__ = ["INITS", "diffusion_to_flow", "flow_dps", "ot_ode", "pigdm_vp"]

VelocityFn = Callable[[Tensor, Tensor], Tensor]
Gamma = Literal["constant", "adaptive"] | float
Init = Literal["backprojection", "posterior-mean", "posterior-sample"]
#: the time-aware initialisations of :func:`ot_ode` (module notes)
INITS: tuple[str, ...] = ("backprojection", "posterior-mean", "posterior-sample")


def _check_problem(operator: LinearOperator, y: Tensor, sigma_y: float) -> None:
    if not isinstance(operator, LinearOperator):
        raise ValidationError(
            f"operator must be a tessera.control.operators.LinearOperator, got {type(operator).__name__}"
        )
    if y.ndim != 2:
        raise ShapeError(f"y must have shape (B, m), got {tuple(y.shape)}")
    if operator.out_dim != -1 and y.shape[1] != operator.out_dim:
        raise ShapeError(
            f"y has {y.shape[1]} measurements per sample but {type(operator).__name__} "
            f"produces {operator.out_dim}; build the operator for this image size"
        )
    check_finite("y", y)
    check_positive("sigma_y", float(sigma_y), allow_zero=True)


def _gamma(gamma: Gamma, t: float) -> float:
    if gamma == "constant":
        return 1.0
    if gamma == "adaptive":  # PnP-Flow's alternative for the cond-OT path
        return math.sqrt(t / (t**2 + (1 - t) ** 2))
    if isinstance(gamma, int | float) and not isinstance(gamma, bool) and gamma >= 0:
        return float(gamma)
    raise ValidationError(f"gamma must be 'constant', 'adaptive' or a number >= 0, got {gamma!r}")


def ot_ode(
    velocity_fn: VelocityFn,
    schedule: Schedule,
    operator: LinearOperator,
    y: Tensor,
    sigma_y: float,
    *,
    start_time: float = 0.2,
    steps: int = 100,
    gamma: Gamma = "constant",
    init: Init = "backprojection",
    prior: GaussianPrior | None = None,
    generator: torch.Generator | int | None = None,
) -> Tensor:
    """Posterior sampling for y = A x + N(0, sigma_y^2 I) with a trained flow, no retraining.

    Args:
        velocity_fn: ``v(x, t)`` of the prior flow on ``schedule``; x (B, D), t (B,).
        schedule: the path the velocity belongs to.
        operator: the measurement operator A.
        y: measurements, shape (B, m).
        sigma_y: measurement noise standard deviation (>= 0).
        start_time: t' in (0, 1): where the time-aware initialisation starts.
        steps: Euler steps from t' to 1.
        gamma: ``"constant"`` (1), ``"adaptive"`` (sqrt(t / (t^2 + (1-t)^2))) or a number.
        init: the time-aware initialisation: ``"backprojection"`` (Pokle et al.),
            ``"posterior-mean"`` or ``"posterior-sample"`` (module notes).
        prior: the Gaussian stand-in of those two inits (default N(flow mean, I), which
            costs one extra velocity call).
        generator: torch Generator or seed of the initial noise.

    Returns:
        Reconstructions, shape (B, D).

    Raises:
        ShapeError: y not (B, m) or not matching the operator.
        NonFiniteError: NaN in y.
        ValidationError: sigma_y < 0, start_time outside (0, 1), bad gamma or steps, a
            prior that is not a GaussianPrior.
        UnsupportedError: an unknown init.
    """
    _check_problem(operator, y, sigma_y)
    if not 0.0 < start_time < 1.0:
        raise ValidationError(
            f"start_time must lie in (0, 1), got {start_time}; t = 0 is singular (eta = inf)"
        )
    check_positive_int("steps", steps)
    _gamma(gamma, 0.5)
    check_choice("init", init, INITS)
    if prior is not None and not isinstance(prior, GaussianPrior):
        raise ValidationError(
            f"prior must be a tessera.control.GaussianPrior (e.g. GaussianPrior.fit(data)), "
            f"got {type(prior).__name__}"
        )
    return _guided_euler(
        velocity_fn,
        schedule,
        operator,
        y,
        float(sigma_y),
        start_time,
        steps,
        gamma,
        init,
        prior,
        generator,
    )


def _initial_state(
    velocity_fn: VelocityFn,
    schedule: Schedule,
    operator: LinearOperator,
    y: Tensor,
    sigma_y2: float,
    start_time: float,
    init: Init,
    prior: GaussianPrior | None,
    gen: torch.Generator,
) -> Tensor:
    """x_{t'} = alpha_{t'} x1_init + beta_{t'} eps for the chosen init (module notes)."""
    ybar = operator.back_project(y, max(sigma_y2, 1e-6))  # (B, D)
    eps = torch.randn(ybar.shape, generator=gen, dtype=ybar.dtype).to(ybar.device)
    x1 = ybar
    if init != "backprojection":
        if prior is None:
            z = torch.randn(ybar.shape, generator=gen, dtype=ybar.dtype).to(ybar.device)
            t0 = torch.zeros(ybar.shape[0], dtype=ybar.dtype, device=ybar.device)
            with torch.no_grad():  # the prior mean: E[X_1 | X_0 = z] does not depend on z
                m = schedule.velocity_to_x1(velocity_fn(z, t0), z, t0).mean(0)
            prior = GaussianPrior.isotropic(m.detach())
        if init == "posterior-mean":
            x1 = prior.posterior_mean(operator, y, sigma_y2)
        else:
            x1 = prior.posterior_sample(operator, y, sigma_y2, generator=gen)
    t0 = torch.tensor(start_time, dtype=torch.float64)
    return float(schedule.alpha(t0)) * x1 + float(schedule.beta(t0)) * eps


def _guided_euler(
    velocity_fn: VelocityFn,
    schedule: Schedule,
    operator: LinearOperator,
    y: Tensor,
    sigma_y: float,
    start_time: float,
    steps: int,
    gamma: Gamma,
    init: Init,
    prior: GaussianPrior | None,
    generator: torch.Generator | int | None,
) -> Tensor:
    gen = as_generator(generator)
    B, s2 = y.shape[0], sigma_y**2
    x = _initial_state(velocity_fn, schedule, operator, y, s2, start_time, init, prior, gen)
    grid = uniform_grid(steps, start=start_time, end=1.0, dtype=torch.float64).tolist()
    for ta, tb in itertools.pairwise(grid):
        t = torch.full((B,), ta, dtype=x.dtype, device=x.device)
        tt = torch.tensor(ta, dtype=torch.float64)
        a, b = float(schedule.alpha(tt)), float(schedule.beta(tt))
        r2 = b**2 / (a**2 + b**2)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            v = velocity_fn(xg, t)
            x1 = schedule.velocity_to_x1(v, xg, t)
            u = operator.solve_normal(y - operator.forward(x1), r2, s2)  # (B, m)
            (g,) = torch.autograd.grad(x1, xg, grad_outputs=operator.adjoint(u).reshape(x1.shape))
        v_cond = v.detach() + _gamma(gamma, ta) * float(schedule.eta(tt)) * g
        x = x + (tb - ta) * v_cond
    return x.detach()


def flow_dps(
    velocity_fn: VelocityFn,
    schedule: Schedule,
    operator: LinearOperator,
    y: Tensor,
    *,
    step_size: float = 1.0,
    steps: int = 100,
    generator: torch.Generator | int | None = None,
) -> Tensor:
    r"""The flow-DPS baseline: :math:`v - \zeta \nabla_{x_t} \|y - A \hat x_1(x_t)\|^2`, fixed zeta.

    Args:
        velocity_fn: ``v(x, t)`` of the prior flow; x (B, D), t (B,).
        schedule: the path of the velocity.
        operator: the measurement operator A.
        y: measurements, shape (B, m).
        step_size: the guidance weight zeta (> 0), fixed for all tasks.
        steps: Euler steps from t = 0 to 1.
        generator: torch Generator or seed of the initial noise.

    Returns:
        Reconstructions, shape (B, D).

    Raises:
        ShapeError: y not matching the operator.
        ValidationError: bad step_size or steps.
    """
    _check_problem(operator, y, 0.0)
    check_positive("step_size", step_size)
    check_positive_int("steps", steps)
    gen = as_generator(generator)
    B = y.shape[0]
    D = operator.in_dim if operator.in_dim > 0 else y.shape[1]
    x = torch.randn((B, D), generator=gen, dtype=y.dtype).to(y.device)
    grid = uniform_grid(steps, dtype=torch.float64).tolist()
    for ta, tb in itertools.pairwise(grid):
        t = torch.full((B,), ta, dtype=x.dtype, device=x.device)
        with torch.enable_grad():
            xg = x.detach().requires_grad_(True)
            v = velocity_fn(xg, t)
            x1 = schedule.velocity_to_x1(v, xg, t)
            loss = ((y - operator.forward(x1)) ** 2).sum()
            (g,) = torch.autograd.grad(loss, xg)
        x = x + (tb - ta) * (v.detach() - step_size * g)
    return x.detach()


def diffusion_to_flow(
    eps_model: Callable[[Tensor, Tensor], Tensor], vp_schedule: Schedule | None = None
) -> VelocityFn:
    """The cond-OT velocity of a diffusion model given by its noise prediction (SNR matching).

    Args:
        eps_model: ``eps(x, s)`` predicting the noise of ``x_s = alpha_s x1 + beta_s x0``
            on ``vp_schedule`` (data at s = 1, tessera's time direction).
        vp_schedule: the diffusion's path (default :class:`tessera.flows.VP`).

    Returns:
        ``v(x, t)`` on the cond-OT path.
    """
    vp = vp_schedule if vp_schedule is not None else VP()

    def v_vp(x: Tensor, s: Tensor) -> Tensor:
        return vp.epsilon_to_velocity(eps_model(x, s), x, s)

    return change_schedule(v_vp, vp, CondOT())


def pigdm_vp(
    eps_model: Callable[[Tensor, Tensor], Tensor],
    operator: LinearOperator,
    y: Tensor,
    sigma_y: float,
    *,
    vp_schedule: Schedule | None = None,
    start_time: float = 0.2,
    steps: int = 100,
    init: Init = "backprojection",
    prior: GaussianPrior | None = None,
    generator: torch.Generator | int | None = None,
) -> Tensor:
    """PiGDM on a VP diffusion model, integrated as its probability-flow ODE.

    The same guided Euler integration as :func:`ot_ode`, on the VP path with the
    velocity of the epsilon model (Song et al.'s PiGDM uses DDIM steps; this is the
    ODE form with the same likelihood approximation, gamma = 1).

    Args:
        eps_model: ``eps(x, s)`` on the VP path (data at s = 1).
        operator: the measurement operator A.
        y: measurements, shape (B, m).
        sigma_y: measurement noise standard deviation.
        vp_schedule: the diffusion's path (default :class:`tessera.flows.VP`).
        start_time: start time on the VP path.
        steps: Euler steps.
        init: the time-aware initialisation, as in :func:`ot_ode`.
        prior: its Gaussian stand-in, as in :func:`ot_ode`.
        generator: torch Generator or seed.

    Returns:
        Reconstructions, shape (B, D).
    """
    vp = vp_schedule if vp_schedule is not None else VP()

    def v_vp(x: Tensor, s: Tensor) -> Tensor:
        return vp.epsilon_to_velocity(eps_model(x, s), x, s)

    return ot_ode(
        v_vp,
        vp,
        operator,
        y,
        sigma_y,
        start_time=start_time,
        steps=steps,
        init=init,
        prior=prior,
        generator=generator,
    )
