r"""Closed-form velocity fields of Gaussian-mixture data laws: the exact references.

For data :math:`X_1 \sim \sum_k w_k N(m_k, S_k)`, noise :math:`X_0 \sim N(0, I)` and an
affine path :math:`X_t = \alpha_t X_1 + \beta_t X_0`, component k has
:math:`X_t | k \sim N(\alpha_t m_k, C_k)`, :math:`C_k = \alpha_t^2 S_k + \beta_t^2 I`, and

.. math::

    E[X_1 | X_t = x, k] = m_k + \alpha_t S_k C_k^{-1}(x - \alpha_t m_k),\qquad
    E[X_0 | X_t = x, k] = \beta_t C_k^{-1}(x - \alpha_t m_k),

    v(x, t) = \sum_k \pi_k(x)\big(\dot\alpha_t E[X_1|x,k] + \dot\beta_t E[X_0|x,k]\big),
    \quad \pi_k(x) \propto w_k N(x; \alpha_t m_k, C_k).

Each :math:`S_k = U_k \mathrm{diag}(\lambda_k) U_k^T` is diagonalised once, so
:math:`C_k = U_k \mathrm{diag}(\alpha_t^2\lambda_k + \beta_t^2) U_k^T` costs nothing per
time. Tilting by a linear reward :math:`\lambda b^T x` stays in the family (see
:meth:`GaussianMixtureFlow.tilt_linear`).

Example:
    >>> import torch
    >>> gmf = GaussianMixtureFlow([1.0], [[0.0]], [[[4.0]]])
    >>> x = torch.tensor([[1.0]], dtype=torch.float64)
    >>> round(gmf.velocity(x, torch.tensor([0.5], dtype=torch.float64)).item(), 12)  # (4t-(1-t))/(4t^2+(1-t)^2) x
    1.2
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from tessera._rng import as_generator
from tessera._validate import check_finite, check_positive, check_positive_int
from tessera.errors import ShapeError, ValidationError
from tessera.flows._tensor import as_time
from tessera.flows.schedules import CondOT, Schedule

__all__ = ["GaussianMixtureFlow"]

ArrayLike = Sequence | np.ndarray | Tensor


def _as64(name: str, value: ArrayLike) -> Tensor:
    if isinstance(value, Tensor):
        out = value.detach().to("cpu", torch.float64)
    else:
        out = torch.as_tensor(np.asarray(value, dtype=np.float64))
    check_finite(name, out)
    return out


class GaussianMixtureFlow:
    """The exact flow of a Gaussian-mixture data law under an affine path.

    Args:
        weights: shape (K,), non-negative, normalised internally.
        means: shape (K, D).
        covs: shape (K, D, D), symmetric positive definite.
        schedule: the path (default :class:`CondOT`).

    Raises:
        ShapeError: inconsistent shapes.
        ValidationError: negative weights, non-symmetric or non-positive-definite covs.
    """

    def __init__(
        self,
        weights: ArrayLike,
        means: ArrayLike,
        covs: ArrayLike,
        schedule: Schedule | None = None,
    ) -> None:
        w = _as64("weights", weights)
        m = _as64("means", means)
        S = _as64("covs", covs)
        if w.ndim != 1 or m.ndim != 2 or S.ndim != 3:
            raise ShapeError(
                "weights, means, covs must have shapes (K,), (K, D), (K, D, D); got "
                f"{tuple(w.shape)}, {tuple(m.shape)}, {tuple(S.shape)}"
            )
        K, D = m.shape
        if w.shape[0] != K or S.shape != (K, D, D):
            raise ShapeError(
                f"weights must have shape ({K},) and covs ({K}, {D}, {D}) to match means "
                f"{(K, D)}; got {tuple(w.shape)} and {tuple(S.shape)}"
            )
        if bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValidationError("weights must be non-negative with a positive sum")
        if not torch.allclose(S, S.transpose(1, 2), atol=1e-10 * (1 + S.abs().max().item())):
            raise ValidationError("covs must be symmetric")
        lam, U = torch.linalg.eigh(S)
        if bool((lam <= 0).any()):
            raise ValidationError(
                f"covs must be positive definite; smallest eigenvalue {lam.min().item():.3g}"
            )
        self.weights = w / w.sum()
        self.means = m
        self.covs = S
        self.schedule = schedule if schedule is not None else CondOT()
        self._lam = lam  # (K, D)
        self._U = U  # (K, D, D)

    @property
    def dim(self) -> int:
        """Data dimension D."""
        return int(self.means.shape[1])

    # ---- laws ---------------------------------------------------------------------------
    def mean(self) -> Tensor:
        """Mean of the data law, shape (D,), float64.

        Returns:
            sum_k w_k m_k.
        """
        return self.weights @ self.means

    def cov(self) -> Tensor:
        """Covariance of the data law, shape (D, D), float64.

        Returns:
            sum_k w_k (S_k + m_k m_k^T) - mean mean^T.
        """
        mu = self.mean()
        second = torch.einsum(
            "k,kij->ij", self.weights, self.covs + self.means[:, :, None] * self.means[:, None, :]
        )
        return second - torch.outer(mu, mu)

    def sample_data(self, n: int, generator: torch.Generator | int | None = None) -> Tensor:
        """Draw n samples of the data law X_1.

        Args:
            n: number of samples (>= 1).
            generator: torch Generator or int seed.

        Returns:
            Tensor of shape (n, D), float64.

        Raises:
            ValidationError: if n < 1.
        """
        check_positive_int("n", n)
        g = as_generator(generator)
        k = torch.multinomial(self.weights, n, replacement=True, generator=g)
        z = torch.randn(n, self.dim, generator=g, dtype=torch.float64)
        L = self._U * self._lam.sqrt()[:, None, :]  # (K, D, D): S_k = L L^T
        return self.means[k] + torch.einsum("nij,nj->ni", L[k], z)

    def log_prob(self, x: Tensor, t: Tensor | float = 1.0) -> Tensor:
        """Log density of X_t at x.

        Args:
            x: shape (B, D).
            t: times, shape (B,) or scalar (default 1: the data law).

        Returns:
            Tensor of shape (B,), in x's dtype.
        """
        logp = self._parts(x, t)[0]
        return torch.logsumexp(logp, dim=0).to(x.dtype)

    # ---- conditional expectations --------------------------------------------------------
    def _parts(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ShapeError(f"x must have shape (B, {self.dim}), got {tuple(x.shape)}")
        check_finite("x", x)
        tt = as_time(t, x).to(torch.float64)
        x64 = x.to(torch.float64)
        a = self.schedule.alpha(tt)[None, :, None]  # (1, B, 1)
        b = self.schedule.beta(tt)[None, :, None]
        var = a**2 * self._lam[:, None, :] + b**2  # (K, B, D)
        diff = x64[None] - a * self.means[:, None, :]  # (K, B, D)
        z = torch.bmm(diff, self._U)  # rows of U_k^T (x - a m_k): (K, B, D)
        logp = (
            torch.log(self.weights)[:, None]
            - 0.5 * (z**2 / var).sum(-1)
            - 0.5 * torch.log(var).sum(-1)
            - 0.5 * self.dim * math.log(2 * math.pi)
        )  # (K, B)
        return logp, z / var, tt, a, b

    def _expectations(self, x: Tensor, t: Tensor | float) -> tuple[Tensor, Tensor, Tensor]:
        logp, zv, tt, a, b = self._parts(x, t)
        pi = torch.softmax(logp, dim=0)[:, :, None]  # (K, B, 1)
        Ut = self._U.transpose(1, 2)
        inv = torch.bmm(zv, Ut)  # C_k^{-1}(x - a m_k): (K, B, D)
        s_inv = torch.bmm(self._lam[:, None, :] * zv, Ut)  # S_k C_k^{-1}(x - a m_k)
        e1 = (pi * (self.means[:, None, :] + a * s_inv)).sum(0)  # (B, D)
        e0 = (pi * (b * inv)).sum(0)
        return e1, e0, tt

    def denoiser(self, x: Tensor, t: Tensor | float) -> Tensor:
        """E[X_1 | X_t = x].

        Args:
            x: shape (B, D).
            t: times, shape (B,) or scalar, in [0, 1].

        Returns:
            Tensor of shape (B, D), in x's dtype.
        """
        return self._expectations(x, t)[0].to(x.dtype)

    def velocity(self, x: Tensor, t: Tensor | float) -> Tensor:
        """The exact marginal velocity v(x, t) = E[alpha' X_1 + beta' X_0 | X_t = x].

        Args:
            x: shape (B, D).
            t: times, shape (B,) or scalar, in [0, 1].

        Returns:
            Tensor of shape (B, D), in x's dtype (computed in float64).

        Raises:
            ShapeError: if x is not (B, D).
            ValidationError: if t lies outside [0, 1].
        """
        e1, e0, tt = self._expectations(x, t)
        tt = tt[:, None]
        v = self.schedule.d_alpha(tt) * e1 + self.schedule.d_beta(tt) * e0
        return v.to(x.dtype)

    __call__ = velocity

    def score(self, x: Tensor, t: Tensor | float) -> Tensor:
        """Score of p_t at x, -E[X_0 | X_t = x] / beta_t.

        Args:
            x: shape (B, D).
            t: times in [0, 1), shape (B,) or scalar.

        Returns:
            Tensor of shape (B, D).
        """
        _, e0, tt = self._expectations(x, t)
        tt = tt[:, None]
        return (-e0 / self.schedule.beta(tt)).to(x.dtype)

    # ---- transformations -----------------------------------------------------------------
    def with_schedule(self, schedule: Schedule) -> GaussianMixtureFlow:
        """The same data law under another path.

        Args:
            schedule: the new path.

        Returns:
            A new GaussianMixtureFlow.
        """
        return GaussianMixtureFlow(self.weights, self.means, self.covs, schedule)

    def tilt_linear(self, b: ArrayLike, lam: float) -> GaussianMixtureFlow:
        r"""The reward-tilted law :math:`p(x) e^{\lambda b^T x} / Z`, again a Gaussian mixture.

        :math:`w_k \propto w_k \exp(\lambda b^T m_k + \tfrac12 \lambda^2 b^T S_k b)`,
        :math:`m_k \to m_k + \lambda S_k b`, :math:`S_k` unchanged.

        Args:
            b: reward direction, shape (D,).
            lam: reward multiplier (finite).

        Returns:
            A new GaussianMixtureFlow on the same path.

        Raises:
            ShapeError: if b is not of shape (D,).
        """
        bb = _as64("b", b)
        if bb.shape != (self.dim,):
            raise ShapeError(f"b must have shape ({self.dim},), got {tuple(bb.shape)}")
        check_positive("abs(lam)", abs(float(lam)), allow_zero=True)
        Sb = self.covs @ bb  # (K, D)
        logw = torch.log(self.weights) + lam * (self.means @ bb) + 0.5 * lam**2 * (Sb @ bb)
        w = torch.softmax(logw, dim=0)
        return GaussianMixtureFlow(w, self.means + lam * Sb, self.covs, self.schedule)
