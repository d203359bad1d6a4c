r"""Affine probability paths :math:`x_t = \alpha_t x_1 + \beta_t x_0`.

Convention (used everywhere in tessera): noise :math:`x_0 \sim N(0, I)` at ``t = 0``,
data :math:`x_1` at ``t = 1``; :math:`\alpha` is the *data* coefficient and
:math:`\beta` the *noise* coefficient (the Adjoint Matching paper's notation;
``facebookresearch/flow_matching`` calls :math:`\beta` "sigma", which we avoid
because :math:`\sigma(t)` is the SDE diffusion in :mod:`tessera.flows.sde`).

For a velocity :math:`v(x, t) = E[\dot\alpha_t X_1 + \dot\beta_t X_0 | X_t = x]`:

.. math::

    \hat x_1 = \frac{\beta v - \dot\beta x}{D},\quad
    \hat x_0 = \frac{\dot\alpha x - \alpha v}{D},\quad
    \nabla \log p_t(x) = -\hat x_0 / \beta,\quad D = \dot\alpha\beta - \dot\beta\alpha,

and :math:`\kappa_t = \dot\alpha_t/\alpha_t`,
:math:`\eta_t = \beta_t(\kappa_t\beta_t - \dot\beta_t)`, so that the score is
:math:`(v - \kappa_t x)/\eta_t`.

Example:
    >>> import torch
    >>> s = CondOT()
    >>> x, v, t = torch.ones(2, 3), torch.zeros(2, 3), torch.full((2,), 0.5)
    >>> s.velocity_to_x1(v, x, t)[0].tolist()
    [1.0, 1.0, 1.0]
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, is_dataclass
from typing import Any, ClassVar

import torch
from torch import Tensor

from tessera._validate import check_finite, check_positive
from tessera.errors import UnsupportedError, ValidationError
from tessera.flows._tensor import as_time, expand_like

__all__ = [
    "VP",
    "CondOT",
    "Cosine",
    "Schedule",
    "change_schedule",
    "register_schedule",
    "schedule_from_dict",
]

VelocityFn = Callable[[Tensor, Tensor], Tensor]


def _t(t: Tensor | float) -> Tensor:
    return t if isinstance(t, Tensor) else torch.tensor(float(t), dtype=torch.float64)


class Schedule(ABC):
    r"""An affine path :math:`x_t = \alpha_t x_1 + \beta_t x_0` with its derived quantities.

    Subclasses define :meth:`alpha`, :meth:`beta`, :meth:`d_alpha`, :meth:`d_beta`
    and may override :meth:`snr_inverse` with a closed form. All time functions take
    a tensor (any shape) or a float and act elementwise.
    """

    name: ClassVar[str]

    @abstractmethod
    def alpha(self, t: Tensor | float) -> Tensor:
        """Data coefficient alpha_t.

        Args:
            t: times in [0, 1].

        Returns:
            Tensor of t's shape.
        """

    @abstractmethod
    def beta(self, t: Tensor | float) -> Tensor:
        """Noise coefficient beta_t.

        Args:
            t: times in [0, 1].

        Returns:
            Tensor of t's shape.
        """

    @abstractmethod
    def d_alpha(self, t: Tensor | float) -> Tensor:
        """Time derivative of alpha_t.

        Args:
            t: times in [0, 1].

        Returns:
            Tensor of t's shape.
        """

    @abstractmethod
    def d_beta(self, t: Tensor | float) -> Tensor:
        """Time derivative of beta_t.

        Args:
            t: times in [0, 1].

        Returns:
            Tensor of t's shape.
        """

    def kappa(self, t: Tensor | float) -> Tensor:
        r""":math:`\kappa_t = \dot\alpha_t / \alpha_t` (infinite where alpha_t = 0).

        Args:
            t: times in [0, 1].

        Returns:
            Tensor of t's shape.
        """
        return self.d_alpha(t) / self.alpha(t)

    def eta(self, t: Tensor | float) -> Tensor:
        r""":math:`\eta_t = \beta_t(\kappa_t\beta_t - \dot\beta_t)`; memoryless diffusion is sqrt(2 eta).

        Args:
            t: times in [0, 1].

        Returns:
            Tensor of t's shape.
        """
        b = self.beta(t)
        return b * (self.kappa(t) * b - self.d_beta(t))

    def snr(self, t: Tensor | float) -> Tensor:
        r"""Signal-to-noise ratio of amplitudes :math:`\rho_t = \alpha_t / \beta_t` (increasing in t).

        Args:
            t: times in [0, 1].

        Returns:
            Tensor of t's shape.
        """
        return self.alpha(t) / self.beta(t)

    def snr_inverse(self, r: Tensor | float) -> Tensor:
        """The time t with snr(t) = r, by bisection (subclasses override with a closed form).

        Args:
            r: positive ratios alpha/beta.

        Returns:
            Tensor of r's shape; clamped to [0, 1] where r lies outside the schedule's range.
        """
        r = _t(r)
        lo = torch.zeros_like(r)
        hi = torch.ones_like(r)
        for _ in range(200):
            mid = 0.5 * (lo + hi)
            below = self.snr(mid) < r
            lo = torch.where(below, mid, lo)
            hi = torch.where(below, hi, mid)
        return 0.5 * (lo + hi)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready description, inverse of :func:`schedule_from_dict`.

        Returns:
            ``{"name": ..., **parameters}``.
        """
        params: dict[str, Any] = asdict(self) if is_dataclass(self) else {}
        return {"name": self.name, **params}

    # ---- conversions between parametrisations ------------------------------------------
    def _coeffs(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, ...]:
        tt = as_time(t, x)
        return tuple(
            expand_like(f(tt), x) for f in (self.alpha, self.beta, self.d_alpha, self.d_beta)
        )

    def velocity_to_x1(self, v: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        """Denoiser E[X_1 | X_t = x] from the velocity.

        Args:
            v: velocity, shape (B, ...).
            x: state x_t, shape (B, ...).
            t: times, shape (B,) or scalar.

        Returns:
            Tensor of x's shape.
        """
        a, b, da, db = self._coeffs(x, t)
        return (b * v - db * x) / (da * b - db * a)

    def velocity_to_x0(self, v: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        """Noise prediction E[X_0 | X_t = x] (the epsilon of diffusion models) from the velocity.

        Args:
            v: velocity, shape (B, ...).
            x: state x_t, shape (B, ...).
            t: times, shape (B,) or scalar.

        Returns:
            Tensor of x's shape.
        """
        a, b, da, db = self._coeffs(x, t)
        return (da * x - a * v) / (da * b - db * a)

    velocity_to_epsilon = velocity_to_x0

    def velocity_to_score(self, v: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        r"""Score :math:`\nabla_x \log p_t(x) = -\hat x_0/\beta_t` from the velocity.

        Args:
            v: velocity, shape (B, ...).
            x: state x_t, shape (B, ...).
            t: times, shape (B,) or scalar; t = 1 is singular (beta = 0).

        Returns:
            Tensor of x's shape.
        """
        _, b, _, _ = self._coeffs(x, t)
        return -self.velocity_to_x0(v, x, t) / b

    def x1_to_velocity(self, x1: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        """Velocity from a data prediction x1_hat.

        Args:
            x1: data prediction, shape (B, ...).
            x: state x_t, shape (B, ...).
            t: times, shape (B,) or scalar; t = 1 is singular (beta = 0).

        Returns:
            Tensor of x's shape.
        """
        a, b, da, db = self._coeffs(x, t)
        return (db * x + (da * b - db * a) * x1) / b

    def epsilon_to_velocity(self, eps: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        """Velocity from a noise prediction epsilon_hat = x0_hat.

        Args:
            eps: noise prediction, shape (B, ...).
            x: state x_t, shape (B, ...).
            t: times, shape (B,) or scalar; singular where alpha_t = 0.

        Returns:
            Tensor of x's shape.
        """
        a, b, da, db = self._coeffs(x, t)
        return (da * x - (da * b - db * a) * eps) / a

    def score_to_velocity(self, score: Tensor, x: Tensor, t: Tensor | float) -> Tensor:
        """Velocity from the score of p_t.

        Args:
            score: score, shape (B, ...).
            x: state x_t, shape (B, ...).
            t: times, shape (B,) or scalar.

        Returns:
            Tensor of x's shape.
        """
        _, b, _, _ = self._coeffs(x, t)
        return self.epsilon_to_velocity(-b * score, x, t)

    def sample_path(self, x0: Tensor, x1: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Point and conditional velocity of the path between x0 and x1 at time t.

        Args:
            x0: noise, shape (B, ...).
            x1: data, shape (B, ...).
            t: times, shape (B,).

        Returns:
            ``(x_t, dx_t)``, each of x1's shape: the interpolant and its time derivative
            (the flow-matching regression target).
        """
        a, b, da, db = self._coeffs(x1, t)
        return a * x1 + b * x0, da * x1 + db * x0


@dataclass(frozen=True)
class CondOT(Schedule):
    """Conditional optimal transport: alpha = t, beta = 1 - t (kappa = 1/t, eta = (1-t)/t).

    Example:
        >>> float(CondOT().eta(0.25))
        3.0
    """

    name: ClassVar[str] = "cond_ot"

    def alpha(self, t: Tensor | float) -> Tensor:  # noqa: D102 (documented on Schedule)
        return _t(t) * 1.0

    def beta(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return 1.0 - _t(t)

    def d_alpha(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return torch.ones_like(_t(t))

    def d_beta(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return -torch.ones_like(_t(t))

    def snr_inverse(self, r: Tensor | float) -> Tensor:  # noqa: D102
        r = _t(r)
        return r / (1.0 + r)


@dataclass(frozen=True)
class VP(Schedule):
    r"""Variance-preserving path of the VP-SDE (Song et al.), data at t = 1.

    :math:`T(s) = \tfrac12 s^2 (\beta_{max}-\beta_{min}) + s\beta_{min}` with
    :math:`s = 1 - t`; :math:`\alpha_t = e^{-T/2}`, :math:`\beta_t = \sqrt{1-\alpha_t^2}`.
    At t = 0, alpha is exp(-5.025) ~ 0.0066 for the defaults (not exactly 0).

    Args:
        beta_min: the VP-SDE's beta_min (> 0).
        beta_max: the VP-SDE's beta_max (> beta_min).

    Example:
        >>> round(float(VP().alpha(0.0)), 4)
        0.0066
    """

    name: ClassVar[str] = "vp"
    beta_min: float = 0.1
    beta_max: float = 20.0

    def __post_init__(self) -> None:
        check_positive("beta_min", self.beta_min)
        if not self.beta_max > self.beta_min:
            raise ValidationError(
                f"beta_max must exceed beta_min = {self.beta_min}, got {self.beta_max}"
            )

    def _integral(self, t: Tensor | float) -> Tensor:
        s = 1.0 - _t(t)
        return 0.5 * s**2 * (self.beta_max - self.beta_min) + s * self.beta_min

    def _d_integral(self, t: Tensor | float) -> Tensor:
        s = 1.0 - _t(t)
        return -s * (self.beta_max - self.beta_min) - self.beta_min

    def alpha(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return torch.exp(-0.5 * self._integral(t))

    def beta(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return torch.sqrt(-torch.expm1(-self._integral(t)))

    def d_alpha(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return -0.5 * self.alpha(t) * self._d_integral(t)

    def d_beta(self, t: Tensor | float) -> Tensor:  # noqa: D102
        a = self.alpha(t)
        return -a * self.d_alpha(t) / self.beta(t)

    def snr_inverse(self, r: Tensor | float) -> Tensor:  # noqa: D102
        r = _t(r)
        T = torch.log1p(1.0 / r**2)  # alpha^2 = r^2/(1+r^2) = exp(-T)
        c = self.beta_max - self.beta_min
        s = (-self.beta_min + torch.sqrt(self.beta_min**2 + 2.0 * c * T)) / c
        return (1.0 - s).clamp(0.0, 1.0)


@dataclass(frozen=True)
class Cosine(Schedule):
    """Cosine path: alpha = sin(pi t / 2), beta = cos(pi t / 2).

    Example:
        >>> round(float(Cosine().snr(0.5)), 12)
        1.0
    """

    name: ClassVar[str] = "cosine"

    def alpha(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return torch.sin(0.5 * math.pi * _t(t))

    def beta(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return torch.cos(0.5 * math.pi * _t(t))

    def d_alpha(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return 0.5 * math.pi * torch.cos(0.5 * math.pi * _t(t))

    def d_beta(self, t: Tensor | float) -> Tensor:  # noqa: D102
        return -0.5 * math.pi * torch.sin(0.5 * math.pi * _t(t))

    def snr_inverse(self, r: Tensor | float) -> Tensor:  # noqa: D102
        return torch.atan(_t(r)) * (2.0 / math.pi)


_SCHEDULES: dict[str, type[Schedule]] = {}


def register_schedule(cls: type[Schedule]) -> type[Schedule]:
    """Register a Schedule subclass under its ``name`` for :func:`schedule_from_dict`.

    Args:
        cls: the subclass; its class attribute ``name`` is the key.

    Returns:
        ``cls`` (usable as a decorator).

    Raises:
        ValidationError: if the name is already taken by another class.
    """
    existing = _SCHEDULES.get(cls.name)
    if existing is not None and existing is not cls:
        raise ValidationError(f"schedule name {cls.name!r} is already registered")
    _SCHEDULES[cls.name] = cls
    return cls


for _cls in (CondOT, VP, Cosine):
    register_schedule(_cls)


def schedule_from_dict(spec: dict[str, Any] | str) -> Schedule:
    """Build a schedule from ``Schedule.to_dict()`` output or a bare name.

    Args:
        spec: ``{"name": "vp", "beta_min": 0.1, ...}`` or ``"cond_ot"``.

    Returns:
        The schedule.

    Raises:
        UnsupportedError: for an unknown name.

    Example:
        >>> schedule_from_dict("cosine")
        Cosine()
    """
    if isinstance(spec, str):
        spec = {"name": spec}
    params = dict(spec)
    name = params.pop("name", None)
    if name not in _SCHEDULES:
        raise UnsupportedError(
            f"schedule must be one of {sorted(_SCHEDULES)}; got {name!r} "
            "(register your own with register_schedule)"
        )
    return _SCHEDULES[name](**params)


def change_schedule(velocity_fn: VelocityFn, source: Schedule, target: Schedule) -> VelocityFn:
    r"""Turn a velocity trained on ``source``'s path into the velocity on ``target``'s path.

    SNR matching: the target's :math:`\bar x_r` equals :math:`s\,x_{t}` in law with
    :math:`\rho(t) = \bar\rho(r)` and :math:`s = \bar\beta_r/\beta_t`, so
    :math:`E[X_1|\bar X_r = \bar x] = E[X_1 | X_t = \bar x / s]`; the data prediction of
    the source model is turned into the target velocity. This is exact wherever the
    source's SNR range covers the target's (for the default VP, target SNR >= 0.0066);
    outside it the source time is clamped to [0, 1].

    Args:
        velocity_fn: ``v(x, t)`` on the source path; x (B, ...), t (B,).
        source: the schedule ``velocity_fn`` was trained with.
        target: the schedule to express it in.

    Returns:
        ``v_target(x, r)`` with the same calling convention.

    Example:
        >>> import torch
        >>> v = change_schedule(lambda x, t: torch.zeros_like(x), CondOT(), CondOT())
        >>> v(torch.ones(1, 2), torch.tensor([0.5])).tolist()
        [[0.0, 0.0]]
    """

    def velocity(x: Tensor, r: Tensor) -> Tensor:
        r = as_time(r, x)
        check_finite("x", x)
        t = source.snr_inverse(target.snr(r)).to(x.dtype).clamp(0.0, 1.0)
        # scale s with xbar = s * x_t; use the better-conditioned of the two ratios
        a_bar, b_bar, a_s, b_s = target.alpha(r), target.beta(r), source.alpha(t), source.beta(t)
        scale = torch.where(a_bar > b_bar, a_bar / a_s, b_bar / b_s)
        x_src = x / expand_like(scale, x)
        x1 = source.velocity_to_x1(velocity_fn(x_src, t), x_src, t)
        return target.x1_to_velocity(x1, x, r)

    return velocity
