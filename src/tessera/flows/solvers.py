"""Fixed-step ODE solvers, adaptive solves through torchdiffeq, and Euler-Maruyama SDEs.

Every solver takes a velocity ``velocity_fn(x, t)`` with x of shape (B, ...) and t of
shape (B,), and a strictly monotone time grid (increasing to generate, decreasing to
invert). Sampling runs under ``torch.no_grad()`` unless ``differentiable=True``, in
which case the unrolled solver is differentiated by autograd (optionally with gradient
checkpointing per step, trading one extra forward pass for O(1) activation memory).

Example:
    >>> import torch
    >>> x1 = solve_ode(lambda x, t: x, torch.ones(2, 1), uniform_grid(100), method="rk4")
    >>> round(float(x1[0, 0]), 6)  # e^1
    2.718282
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, overload

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint as _checkpoint

from tessera._optional import require
from tessera._rng import as_generator
from tessera._validate import check_choice, check_finite, check_positive, check_positive_int
from tessera.errors import ShapeError, ValidationError
from tessera.flows.schedules import Schedule
from tessera.flows.sde import Diffusion

__all__ = ["ODE_METHODS", "Trajectory", "solve_ode", "solve_sde", "uniform_grid"]

VelocityFn = Callable[[Tensor, Tensor], Tensor]
ODEMethod = Literal["euler", "midpoint", "heun", "rk4", "dopri5"]
ODE_METHODS: tuple[str, ...] = ("euler", "midpoint", "heun", "rk4", "dopri5")


@dataclass(frozen=True)
class Trajectory:
    """States of a solve at every grid time.

    Attributes:
        times: shape (K + 1,), the grid.
        states: shape (K + 1, B, ...), ``states[k]`` is the state at ``times[k]``.
    """

    times: Tensor
    states: Tensor

    @property
    def final(self) -> Tensor:
        """The state at the last grid time, shape (B, ...)."""
        return self.states[-1]


def uniform_grid(
    steps: int, *, start: float = 0.0, end: float = 1.0, dtype: torch.dtype = torch.float32
) -> Tensor:
    """A uniform time grid with ``steps`` intervals.

    Args:
        steps: number of solver steps (>= 1).
        start: first time (0 = noise).
        end: last time (1 = data); ``end < start`` gives a reverse (inversion) grid.
        dtype: floating dtype of the grid.

    Returns:
        Tensor of shape (steps + 1,).

    Raises:
        ValidationError: if steps < 1 or start == end.

    Example:
        >>> uniform_grid(4).tolist()
        [0.0, 0.25, 0.5, 0.75, 1.0]
    """
    check_positive_int("steps", steps)
    if start == end:
        raise ValidationError(f"start and end must differ, got start = end = {start}")
    return torch.linspace(start, end, steps + 1, dtype=dtype)


def _check_grid(t_grid: Tensor, x0: Tensor) -> list[float]:
    if not isinstance(t_grid, Tensor):
        t_grid = torch.as_tensor(t_grid, dtype=torch.float64)
    if t_grid.ndim != 1 or t_grid.shape[0] < 2:
        raise ShapeError(
            f"t_grid must be 1-D with at least 2 times, got shape {tuple(t_grid.shape)}; "
            "build one with uniform_grid(steps)"
        )
    check_finite("t_grid", t_grid)
    times = [float(s) for s in t_grid.tolist()]
    if min(times) < 0.0 or max(times) > 1.0:
        raise ValidationError(
            f"t_grid must lie in [0, 1] (noise at 0, data at 1), got [{min(times)}, {max(times)}]"
        )
    d = [b - a for a, b in itertools.pairwise(times)]
    if not (all(s > 0 for s in d) or all(s < 0 for s in d)):
        raise ValidationError("t_grid must be strictly increasing or strictly decreasing")
    if x0.ndim < 1 or x0.shape[0] == 0:
        raise ShapeError(f"x0 must have shape (B, ...) with B >= 1, got {tuple(x0.shape)}")
    if not x0.is_floating_point():
        raise ValidationError(f"x0 must be a floating tensor, got dtype {x0.dtype}")
    check_finite("x0", x0)
    return times


def _step(
    velocity_fn: VelocityFn, method: str, x: Tensor, t0: float, t1: float
) -> tuple[Tensor, int]:
    B = x.shape[0]
    h = t1 - t0

    def v(y: Tensor, s: float) -> Tensor:
        return velocity_fn(y, torch.full((B,), s, dtype=y.dtype, device=y.device))

    if method == "euler":
        return x + h * v(x, t0), 1
    if method == "midpoint":
        return x + h * v(x + 0.5 * h * v(x, t0), t0 + 0.5 * h), 2
    if method == "heun":
        k1 = v(x, t0)
        k2 = v(x + h * k1, t1)
        return x + 0.5 * h * (k1 + k2), 2
    # rk4
    k1 = v(x, t0)
    k2 = v(x + 0.5 * h * k1, t0 + 0.5 * h)
    k3 = v(x + 0.5 * h * k2, t0 + 0.5 * h)
    k4 = v(x + h * k3, t1)
    return x + (h / 6.0) * (k1 + 2 * k2 + 2 * k3 + k4), 4


@overload
def solve_ode(
    velocity_fn: VelocityFn,
    x0: Tensor,
    t_grid: Tensor,
    method: ODEMethod = ...,
    record: Literal[False] = ...,
    differentiable: bool = ...,
    *,
    checkpointing: bool = ...,
    atol: float = ...,
    rtol: float = ...,
) -> Tensor: ...


@overload
def solve_ode(
    velocity_fn: VelocityFn,
    x0: Tensor,
    t_grid: Tensor,
    method: ODEMethod = ...,
    *,
    record: Literal[True],
    differentiable: bool = ...,
    checkpointing: bool = ...,
    atol: float = ...,
    rtol: float = ...,
) -> Trajectory: ...


def solve_ode(
    velocity_fn: VelocityFn,
    x0: Tensor,
    t_grid: Tensor,
    method: ODEMethod = "midpoint",
    record: bool = False,
    differentiable: bool = False,
    *,
    checkpointing: bool = False,
    atol: float = 1e-5,
    rtol: float = 1e-5,
) -> Tensor | Trajectory:
    """Integrate dx/dt = v(x, t) along ``t_grid``.

    Args:
        velocity_fn: ``v(x, t)``; x shape (B, ...), t shape (B,).
        x0: initial state at ``t_grid[0]``, shape (B, ...), floating.
        t_grid: shape (K + 1,), strictly monotone, within [0, 1].
        method: ``"euler"``, ``"midpoint"``, ``"heun"``, ``"rk4"`` (fixed steps on the
            grid) or ``"dopri5"`` (adaptive, through torchdiffeq, reporting at the grid).
        record: return a :class:`Trajectory` of all grid states instead of the final one.
        differentiable: keep the autograd graph (for D-Flow and reward backprop).
        checkpointing: with ``differentiable``, recompute each step in the backward
            pass instead of storing its activations (fixed-step methods only).
        atol: absolute tolerance of ``dopri5``.
        rtol: relative tolerance of ``dopri5``.

    Returns:
        The state at ``t_grid[-1]`` (shape of x0), or a :class:`Trajectory`.

    Raises:
        ShapeError: bad x0 or t_grid shape.
        NonFiniteError: NaN or inf in x0 or t_grid.
        ValidationError: times outside [0, 1] or a non-monotone grid.
        UnsupportedError: unknown method.
    """
    check_choice("method", method, ODE_METHODS)
    times = _check_grid(t_grid, x0)
    with torch.set_grad_enabled(differentiable):
        if method == "dopri5":
            check_positive("atol", atol)
            check_positive("rtol", rtol)
            odeint = require("torchdiffeq").odeint
            B = x0.shape[0]

            def func(s: Tensor, y: Tensor) -> Tensor:
                return velocity_fn(y, s.to(y.dtype).expand(B))

            grid = torch.as_tensor(times, dtype=x0.dtype, device=x0.device)
            # step_t makes the adaptive stepper land on every grid time instead of stepping
            # past the last one and interpolating: the velocity is only defined on [0, 1]
            states = odeint(
                func, x0, grid, method="dopri5", atol=atol, rtol=rtol, options={"step_t": grid}
            )
            if not differentiable:
                states = states.detach()
            return Trajectory(grid, states) if record else states[-1]

        x = x0
        out = [x0] if record else None
        for t0, t1 in itertools.pairwise(times):
            if differentiable and checkpointing:
                x = _checkpoint(
                    lambda y, a=t0, b=t1: _step(velocity_fn, method, y, a, b)[0],
                    x,
                    use_reentrant=False,
                )
            else:
                x, _ = _step(velocity_fn, method, x, t0, t1)
            if out is not None:
                out.append(x)
    if out is not None:
        grid = torch.as_tensor(times, dtype=x0.dtype, device=x0.device)
        return Trajectory(grid, torch.stack(out))
    return x


@torch.no_grad()
def solve_sde(
    velocity_fn: VelocityFn,
    x0: Tensor,
    t_grid: Tensor,
    schedule: Schedule,
    diffusion: Diffusion,
    generator: torch.Generator | int | None = None,
    record: bool = False,
) -> Tensor | Trajectory:
    r"""Euler-Maruyama for :math:`dX = b\,dt + \sigma(t)\,dB` with the marginal-preserving drift.

    The drift and sigma are evaluated at the left end of each step:
    :math:`X_{k+1} = X_k + h\,b(X_k, t_k) + \sqrt{h}\,\sigma(t_k)\,\varepsilon_k`.

    Args:
        velocity_fn: ``v(x, t)`` on ``schedule``'s path; x (B, ...), t (B,).
        x0: initial state at ``t_grid[0]``, shape (B, ...).
        t_grid: shape (K + 1,), strictly increasing, within [0, 1].
        schedule: the path of ``velocity_fn``.
        diffusion: ``constant(s)`` or ``memoryless(schedule, offset)``.
        generator: torch Generator or int seed for the Brownian increments.
        record: return a :class:`Trajectory`.

    Returns:
        The final state (shape of x0), or a :class:`Trajectory`.

    Raises:
        ShapeError: bad x0 or t_grid shape.
        NonFiniteError: NaN or inf in x0 or t_grid.
        ValidationError: times outside [0, 1] or a grid that is not increasing.
    """
    times = _check_grid(t_grid, x0)
    if times[1] < times[0]:
        raise ValidationError("solve_sde needs an increasing t_grid (the SDE runs forward in time)")
    gen = as_generator(generator, device=x0.device)
    B = x0.shape[0]
    x = x0
    out = [x0] if record else None
    for t0, t1 in itertools.pairwise(times):
        h = t1 - t0
        t = torch.full((B,), t0, dtype=x.dtype, device=x.device)
        b = diffusion.drift_from_velocity(velocity_fn(x, t), x, t, schedule)
        sig = float(diffusion.sigma(torch.tensor(t0, dtype=torch.float64)))
        noise = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
        x = x + h * b + (h**0.5) * sig * noise
        if out is not None:
            out.append(x)
    if out is not None:
        grid = torch.as_tensor(times, dtype=x0.dtype, device=x0.device)
        return Trajectory(grid, torch.stack(out))
    return x
