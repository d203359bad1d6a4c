r"""A Gaussian prior :math:`N(m, U \Lambda U^T + c I)` and its exact posterior under y = A x + e.

OT-ODE's time-aware initialisation (:func:`tessera.control.inverse.ot_ode`) starts from
a draw of :math:`p(x_1 | y)` under a Gaussian stand-in for the prior. The covariance is
kept as a rank-k eigen-decomposition plus an isotropic floor c, so that the posterior
needs only the operator's own structured solve (:meth:`LinearOperator.solve_normal`)
and a k x k system (Woodbury):

.. math::

    S = A \Sigma A^T + \sigma_y^2 I = \underbrace{c A A^T + \sigma_y^2 I}_{M} + W \Lambda W^T,
    \qquad W = A U,

    S^{-1} r = M^{-1} r - M^{-1} W (\Lambda^{-1} + W^T M^{-1} W)^{-1} W^T M^{-1} r,

with posterior mean :math:`m + \Sigma A^T S^{-1} (y - A m)` and posterior samples by
Matheron's rule, :math:`\tilde x + \Sigma A^T S^{-1}(y - A \tilde x - e)` with
:math:`\tilde x \sim N(m, \Sigma)`, :math:`e \sim N(0, \sigma_y^2 I)`. Both are checked
against the dense closed form in ``tests/control/test_gaussian_prior.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from tessera._validate import check_finite, check_positive, check_positive_int
from tessera.control.operators import LinearOperator
from tessera.errors import ShapeError, ValidationError

__all__ = ["GaussianPrior"]


@dataclass(frozen=True)
class GaussianPrior:
    r"""The Gaussian :math:`N(m, U \operatorname{diag}(\lambda) U^T + c I)` on flat signals.

    Args:
        mean: m, shape (D,) (or (1, D)).
        components: U, shape (D, k) with orthonormal columns (k may be 0).
        eigenvalues: lambda, shape (k,), > 0, the variances along the components.
        floor: c >= 0, the variance in every other direction.

    Example:
        >>> import torch
        >>> p = GaussianPrior.isotropic(torch.zeros(3))
        >>> p.covariance().diag().tolist()
        [1.0, 1.0, 1.0]
    """

    mean: Tensor
    components: Tensor
    eigenvalues: Tensor
    floor: float

    def __post_init__(self) -> None:
        m = self.mean.reshape(-1)
        D = m.shape[0]
        if self.components.ndim != 2 or self.components.shape[0] != D:
            raise ShapeError(
                f"components must have shape (D, k) = ({D}, k) to match the mean, "
                f"got {tuple(self.components.shape)}"
            )
        k = self.components.shape[1]
        if self.eigenvalues.shape != (k,):
            raise ShapeError(
                f"eigenvalues must have shape ({k},), one per component, "
                f"got {tuple(self.eigenvalues.shape)}"
            )
        check_finite("mean", m)
        check_finite("eigenvalues", self.eigenvalues)
        if k and float(self.eigenvalues.min()) <= 0:
            raise ValidationError(
                f"eigenvalues must be > 0, got minimum {float(self.eigenvalues.min())}; "
                "drop the components with zero variance"
            )
        check_positive("floor", float(self.floor), allow_zero=True)
        object.__setattr__(self, "mean", m)

    @property
    def dim(self) -> int:
        """D, the signal dimension."""
        return int(self.mean.shape[0])

    @classmethod
    def isotropic(cls, mean: Tensor, variance: float = 1.0) -> GaussianPrior:
        """N(mean, variance I): OT-ODE's own assumption behind r_t^2 when variance = 1.

        Args:
            mean: shape (D,).
            variance: the per-coordinate variance (>= 0).

        Returns:
            The prior.
        """
        m = mean.reshape(-1)
        return cls(m, m.new_zeros(m.shape[0], 0), m.new_zeros(0), float(variance))

    @classmethod
    def fit(cls, x: Tensor, rank: int | None = None) -> GaussianPrior:
        """Moments of data x, shape (N, ...): the mean and the top-``rank`` covariance.

        The variance outside the top components goes to the isotropic floor (their mean).

        Args:
            x: samples, shape (N, ...) with N >= 2; flattened to (N, D).
            rank: components to keep (default: all, min(N - 1, D)); a randomised SVD is
                used when it is below min(N, D) / 2.

        Returns:
            The fitted prior (float64 moments cast back to x's dtype).

        Raises:
            ShapeError: fewer than 2 samples.
            NonFiniteError: NaN or inf in x.
            ValidationError: rank < 1.
        """
        if x.ndim < 2 or x.shape[0] < 2:
            raise ShapeError(f"x must have shape (N, ...) with N >= 2, got {tuple(x.shape)}")
        check_finite("x", x)
        X = x.reshape(x.shape[0], -1).to(torch.float64)
        N, D = X.shape
        full = min(N - 1, D)
        k = full if rank is None else rank
        check_positive_int("rank", k)
        k = min(k, full)
        m = X.mean(0)
        Xc = X - m
        if k < min(N, D) // 2:
            _, s, V = torch.svd_lowrank(Xc, q=k + 10, niter=4)
            lam, U = s[:k] ** 2 / (N - 1), V[:, :k]
        else:
            lam_all, U_all = torch.linalg.eigh(Xc.T @ Xc / (N - 1))
            lam, U = lam_all.flip(0)[:k], U_all.flip(1)[:, :k]
        keep = lam > 1e-12 * max(float(lam.max()), 1e-300)
        lam, U = lam[keep], U[:, keep]
        total = float((Xc**2).sum() / (N - 1))
        rest = D - lam.shape[0]
        floor = max(total - float(lam.sum()), 0.0) / rest if rest else 0.0
        dt = x.dtype if x.dtype.is_floating_point else torch.float32
        return cls(m.to(dt), U.to(dt), lam.to(dt), floor)

    def covariance(self) -> Tensor:
        """The dense D x D covariance (for checks and small D)."""
        U, lam = self.components, self.eigenvalues
        return (U * lam) @ U.T + self.floor * torch.eye(self.dim, dtype=U.dtype)

    def _cov_apply(self, v: Tensor) -> Tensor:
        # Sigma v for rows v of shape (B, D)
        U = self.components.to(v)
        return self.floor * v + ((v @ U) * self.eigenvalues.to(v)) @ U.T

    def _solver(self, operator: LinearOperator, sigma_y2: float) -> Callable[[Tensor], Tensor]:
        s = max(float(sigma_y2), 1e-6) if self.floor == 0.0 else float(sigma_y2)
        U, lam = self.components, self.eigenvalues
        if U.shape[1] == 0:
            return lambda r: operator.solve_normal(r, self.floor, s)
        Wt = operator.forward(U.T.contiguous())  # (k, m): rows (A u_j)^T
        MinvW = operator.solve_normal(Wt, self.floor, s)  # (k, m)
        cap = torch.diag(1.0 / lam.to(Wt)) + Wt @ MinvW.T  # (k, k)
        chol = torch.linalg.cholesky(0.5 * (cap + cap.T))

        def solve(r: Tensor) -> Tensor:  # S^{-1} r for rows r of shape (B, m)
            Mr = operator.solve_normal(r, self.floor, s)
            coef = torch.cholesky_solve((Mr @ Wt.T).T, chol).T  # (B, k)
            return Mr - coef @ MinvW

        return solve

    def _check(self, operator: LinearOperator, y: Tensor) -> None:
        if operator.in_dim > 0 and operator.in_dim != self.dim:
            raise ShapeError(
                f"the prior is on {self.dim} coordinates but {type(operator).__name__} acts "
                f"on {operator.in_dim}; fit the prior to signals of the operator's size"
            )
        if y.ndim != 2:
            raise ShapeError(f"y must have shape (B, m), got {tuple(y.shape)}")

    def posterior_mean(self, operator: LinearOperator, y: Tensor, sigma_y2: float) -> Tensor:
        """E[x | y] for y = A x + N(0, sigma_y2 I), shape (B, D).

        Args:
            operator: A.
            y: measurements, shape (B, m).
            sigma_y2: the noise variance (>= 0; floored at 1e-6 when the covariance is
                singular).

        Returns:
            The posterior means.
        """
        self._check(operator, y)
        m = self.mean.to(y).unsqueeze(0)
        u = self._solver(operator, sigma_y2)(y - operator.forward(m))
        return m + self._cov_apply(operator.adjoint(u))

    def posterior_sample(
        self,
        operator: LinearOperator,
        y: Tensor,
        sigma_y2: float,
        generator: torch.Generator | None = None,
    ) -> Tensor:
        """One draw of p(x | y) per row of y (Matheron's rule), shape (B, D).

        Args:
            operator: A.
            y: measurements, shape (B, m).
            sigma_y2: the noise variance (>= 0).
            generator: torch Generator.

        Returns:
            The posterior samples.
        """
        self._check(operator, y)
        B, k = y.shape[0], self.components.shape[1]
        m = self.mean.to(y).unsqueeze(0)
        z = torch.randn((B, self.dim), generator=generator, dtype=y.dtype).to(y.device)
        zk = torch.randn((B, k), generator=generator, dtype=y.dtype).to(y.device)
        lam, U = self.eigenvalues.to(y), self.components.to(y)
        prior = m + (zk * lam.sqrt()) @ U.T + self.floor**0.5 * z
        e = float(sigma_y2) ** 0.5 * torch.randn(y.shape, generator=generator, dtype=y.dtype)
        u = self._solver(operator, sigma_y2)(y - operator.forward(prior) - e.to(y.device))
        return prior + self._cov_apply(operator.adjoint(u))
