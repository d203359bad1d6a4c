r"""Diffusion coefficients :math:`\sigma(t)` of the SDEs that share the ODE's marginals.

For an affine path with velocity :math:`v` the family

.. math::

    dX = \Big[v + \frac{\sigma(t)^2}{2\eta_t}\big(v - \kappa_t X\big)\Big]dt + \sigma(t)\,dB
       = \Big[v + \frac{\sigma(t)^2}{2}\nabla\log p_t(X)\Big]dt + \sigma(t)\,dB

keeps the marginals :math:`p_t` for every :math:`\sigma` (Adjoint Matching, §3). The
second form is what :func:`drift` evaluates for general :math:`\sigma`, because it stays
finite at t = 0 where :math:`\kappa` and :math:`\eta` diverge for paths with
:math:`\alpha_0 = 0`.

The *memoryless* choice :math:`\sigma(t) = \sqrt{2\eta_t}` makes :math:`X_0` and
:math:`X_1` independent; its drift is :math:`2v - \kappa_t x`. At t = 0 both
:math:`\kappa` and :math:`\eta` are infinite, so :func:`memoryless` takes an offset h
and uses :math:`\kappa^h_t = \dot\alpha_t/(\alpha_t + h\dot\alpha_t)` and
:math:`\eta^h_t = \beta_t(\kappa^h_t\beta_t - \dot\beta_t)` in both the drift and
:math:`\sigma`. For cond-OT this gives :math:`\kappa^h = 1/(t+h)` (the Adjoint
Matching paper's offset, App. G.1, as transcribed in our notes) and
:math:`\eta^h = (1-t)(1+h)/(t+h)`; the transcription's :math:`(1-t+h)/(t+h)` differs
by O(h) and is not used. With :math:`1 - h\kappa^h_0 = 0` the first Euler step on a
grid of spacing h erases :math:`X_0` except through :math:`2h\,v(X_0, 0)`.

Example:
    >>> from tessera.flows.schedules import CondOT
    >>> d = memoryless(CondOT(), offset=0.0)
    >>> round(float(d.sigma(0.5)), 6)  # sqrt(2 * (1 - t) / t)
    1.414214
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tessera._validate import check_positive
from tessera.errors import ValidationError
from tessera.flows._tensor import as_time, expand_like
from tessera.flows.schedules import Schedule

__all__ = ["Constant", "Diffusion", "Memoryless", "constant", "drift", "memoryless"]

VelocityFn = Callable[[Tensor, Tensor], Tensor]


class Diffusion(ABC):
    """A diffusion coefficient sigma(t) and the marginal-preserving drift that goes with it."""

    @abstractmethod
    def sigma(self, t: Tensor | float) -> Tensor:
        """The diffusion coefficient at times t.

        Args:
            t: times in [0, 1], any shape.

        Returns:
            Tensor of t's shape.
        """

    @abstractmethod
    def drift_from_velocity(self, v: Tensor, x: Tensor, t: Tensor, schedule: Schedule) -> Tensor:
        """The SDE drift given the velocity already evaluated at (x, t).

        Args:
            v: velocity at (x, t), shape (B, ...).
            x: state, shape (B, ...).
            t: times, shape (B,).
            schedule: the path the velocity belongs to.

        Returns:
            Tensor of x's shape.
        """


@dataclass(frozen=True)
class Constant(Diffusion):
    """Constant diffusion sigma(t) = value (0 gives the probability-flow ODE).

    Args:
        value: the constant (>= 0).
    """

    value: float

    def __post_init__(self) -> None:
        check_positive("sigma", self.value, allow_zero=True)

    def sigma(self, t: Tensor | float) -> Tensor:  # noqa: D102 (documented on Diffusion)
        t = t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=torch.float64)
        return torch.full_like(t, self.value)

    def drift_from_velocity(  # noqa: D102
        self, v: Tensor, x: Tensor, t: Tensor, schedule: Schedule
    ) -> Tensor:
        if self.value == 0.0:
            return v
        return v + 0.5 * self.value**2 * schedule.velocity_to_score(v, x, t)


@dataclass(frozen=True)
class Memoryless(Diffusion):
    """The memoryless diffusion sigma(t) = sqrt(2 eta^h_t) of ``schedule`` with offset h.

    Args:
        schedule: the path; memorylessness is a property of (schedule, sigma) together.
        offset: h >= 0 guarding the t -> 0 singularity; use the solver's step size.
    """

    schedule: Schedule
    offset: float = 0.0

    def __post_init__(self) -> None:
        check_positive("offset", self.offset, allow_zero=True)
        if self.offset >= 1.0:
            raise ValidationError(f"offset must be < 1 (a solver step), got {self.offset}")

    def kappa(self, t: Tensor | float) -> Tensor:
        """Offset kappa^h_t = alpha'_t / (alpha_t + h alpha'_t).

        Args:
            t: times in [0, 1].

        Returns:
            Tensor of t's shape.
        """
        da = self.schedule.d_alpha(t)
        return da / (self.schedule.alpha(t) + self.offset * da)

    def eta(self, t: Tensor | float) -> Tensor:
        """Offset eta^h_t = beta_t (kappa^h_t beta_t - beta'_t).

        Args:
            t: times in [0, 1].

        Returns:
            Tensor of t's shape.
        """
        b = self.schedule.beta(t)
        return b * (self.kappa(t) * b - self.schedule.d_beta(t))

    def sigma(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return torch.sqrt(2.0 * self.eta(t).clamp_min(0.0))

    def drift_from_velocity(  # noqa: D102
        self, v: Tensor, x: Tensor, t: Tensor, schedule: Schedule
    ) -> Tensor:
        if schedule != self.schedule:
            raise ValidationError(
                f"memoryless diffusion was built for {self.schedule!r} but the velocity uses "
                f"{schedule!r}; build it with memoryless(schedule)"
            )
        return 2.0 * v - expand_like(self.kappa(t), x) * x


def constant(sigma: float) -> Constant:
    """A constant diffusion coefficient.

    Args:
        sigma: the value (>= 0).

    Returns:
        A :class:`Constant`.

    Raises:
        ValidationError: if sigma is negative or not finite.

    Example:
        >>> constant(0.5).sigma(0.3).item()
        0.5
    """
    return Constant(float(sigma))


def memoryless(schedule: Schedule, offset: float = 0.0) -> Memoryless:
    """The memoryless diffusion sqrt(2 eta_t) of ``schedule`` with the t -> 0 offset h.

    Args:
        schedule: the path.
        offset: h in [0, 1); 0 is exact but infinite at t = 0 for paths with alpha_0 = 0.

    Returns:
        A :class:`Memoryless`.

    Raises:
        ValidationError: if the offset is negative or >= 1.
    """
    return Memoryless(schedule, float(offset))


def drift(
    velocity_fn: VelocityFn, x: Tensor, t: Tensor | float, schedule: Schedule, diffusion: Diffusion
) -> Tensor:
    r"""Drift :math:`v + \sigma^2/(2\eta)(v - \kappa x)` of the marginal-preserving SDE.

    Args:
        velocity_fn: ``v(x, t)``; x (B, ...), t (B,).
        x: state, shape (B, ...).
        t: times, shape (B,) or scalar, in [0, 1].
        schedule: the velocity's path.
        diffusion: a :class:`Diffusion` (``constant(s)`` or ``memoryless(schedule, h)``).

    Returns:
        Tensor of x's shape.

    Raises:
        ValidationError: for times outside [0, 1] or a memoryless diffusion of another path.
    """
    t = as_time(t, x)
    return diffusion.drift_from_velocity(velocity_fn(x, t), x, t, schedule)
