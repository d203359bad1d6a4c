"""The statistics, written once on arrays of sufficient statistics (every engine uses them)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from tessera.errors import ShapeError, TesseraWarning, ValidationError

__all__ = [
    "DesignVariance",
    "SparsityDiagnostics",
    "SparsityWarning",
    "exact_design_variance",
    "sparsity_diagnostics",
]


class SparsityWarning(TesseraWarning):
    """The bipartite graph is too concentrated for the Wald CI's normal approximation.

    Raised when one randomization unit carries more than ``max_weight_share`` of the
    total edge weight: the estimator is then dominated by a handful of coin flips and
    the central limit theorem behind the Wald interval is doubtful.
    """


@dataclass(frozen=True, kw_only=True)
class DesignVariance:
    """Mean and exact variance of an ERL-type estimator under Bernoulli randomization.

    ``total = linear + quadratic_diagonal + quadratic_offdiagonal + cross``.

    Attributes:
        mean: ``E τ̂``: ``(1/n) Σ_i b_i`` for ERL and any fixed ``h``; for the
            in-sample (or cross-fitted) adjustment ``Σ_i ω_i b_i`` with design weights
            ``ω_i`` that sum to one (``= (1/n) Σ_i b_i`` when the slopes are equal).
        total: ``Var τ̂``.
        linear: ``Σ_j v_j C_j²``.
        quadratic_diagonal: ``Σ_j (κ4_j - v_j²) D_jj²``.
        quadratic_offdiagonal: ``2 Σ_{j≠k} v_j v_k D_jk²``.
        cross: ``2 Σ_j κ3_j C_j D_jj``.
        bias_factor: ``B``, the design bias factor of a fitted adjustment (0 for a
            fixed ``h``); the terms above already include the ``1/(1 - B)²`` scale.
    """

    mean: float
    total: float
    linear: float
    quadratic_diagonal: float
    quadratic_offdiagonal: float
    cross: float
    bias_factor: float = 0.0


@dataclass(frozen=True, kw_only=True)
class SparsityDiagnostics:
    """How concentrated the bipartite graph is (the CLT needs it sparse).

    Attributes:
        max_weight_share: largest share of the total edge weight on one randomization
            unit (with per-unit normalised weights, its share of analysis units).
        sum_sq_degree: ``Σ_j deg_j²`` over randomization units.
        sum_sq_degree_ratio: ``Σ_j deg_j² / n²``.
        max_analysis_degree: largest number of edges of one analysis unit; the
            quadratic variance term costs ``Σ_i deg_i²`` pair rows.
        effective_randomization_units: ``1 / Σ_j share_j²``.
        n_edges: edges of retained analysis units.
        clt_doubtful: whether ``max_weight_share`` exceeds the threshold.
    """

    max_weight_share: float
    sum_sq_degree: float
    sum_sq_degree_ratio: float
    max_analysis_degree: int
    effective_randomization_units: float
    n_edges: int
    clt_doubtful: bool

    def to_dict(self) -> dict[str, Any]:
        """The diagnostics as a JSON-ready dict.

        Returns:
            Field name -> value.
        """
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


def bernoulli_moments(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Central moments of ``e = Z - p`` for ``Z ~ Bernoulli(p)``.

    Args:
        p: shape (m,), probabilities in (0, 1).

    Returns:
        ``(v, κ3, κ4)``: ``v = p(1-p)``, ``κ3 = v(1-2p)``, ``κ4 = v(1-3v)``, each (m,).
    """
    v = p * (1.0 - p)
    return v, v * (1.0 - 2.0 * p), v * (1.0 - 3.0 * v)


def variance_terms(
    p: np.ndarray,
    C: np.ndarray,
    Dd: np.ndarray,
    q_full: float,
    *,
    mean: float,
    bias_factor: float = 0.0,
) -> DesignVariance:
    """Combine per-randomization-unit sums into the exact design variance.

    With ``τ̂ = Σ_i c_i u_i + Σ_i d_i u_i²`` and ``u_i = Σ_j w_ij e_j``:

    Args:
        p: shape (m,), design probabilities.
        C: shape (m,), ``C_j = Σ_i c_i w_ij``.
        Dd: shape (m,), ``D_jj = Σ_i d_i w_ij²``.
        q_full: ``Σ_{j,k} v_j v_k D_jk²`` (diagonal included).
        mean: ``E τ̂`` before the division by ``1 - bias_factor``.
        bias_factor: ``B``; the estimator is divided by ``1 - B``, so the mean by
            ``1 - B`` and every variance term by ``(1 - B)²``.

    Returns:
        The :class:`DesignVariance`.
    """
    v, k3, k4 = bernoulli_moments(p)
    s = 1.0 / (1.0 - bias_factor) ** 2
    linear = s * float(np.sum(v * C * C))
    qd = s * float(np.sum((k4 - v * v) * Dd * Dd))
    qo = s * 2.0 * (q_full - float(np.sum(v * v * Dd * Dd)))
    cross = s * 2.0 * float(np.sum(k3 * C * Dd))
    return DesignVariance(
        mean=mean / (1.0 - bias_factor),
        total=linear + qd + qo + cross,
        linear=linear,
        quadratic_diagonal=qd,
        quadratic_offdiagonal=qo,
        cross=cross,
        bias_factor=bias_factor,
    )


@dataclass(frozen=True, kw_only=True)
class InSampleFit:
    """The OLS adjustment ``h = H Ỹ`` as a rank-``L`` linear smoother ``H = Dm Ptᵀ``.

    In-sample OLS on ``[1, X]``: ``Dm = [1, X]`` and ``Pt = pinv([1, X])ᵀ`` (``L = q + 1``).
    Cross-fitting with ``K`` folds: one block of ``q + 1`` columns per fold ``k``, with
    ``Dm`` zero outside fold ``k`` and ``Pt`` the transposed pseudo-inverse of
    ``[1, X]`` restricted to the other folds (zero on fold ``k``), so ``L = K (q + 1)``.

    Attributes:
        Dm: shape (n, L), float64, design columns (masked by fold).
        Pt: shape (n, L), float64, transposed OLS projection rows.
    """

    Dm: np.ndarray
    Pt: np.ndarray

    @classmethod
    def ols(cls, X: np.ndarray, fold: np.ndarray | None = None) -> InSampleFit:
        """Build the smoother for OLS of the outcome on ``[1, X]``.

        Args:
            X: shape (n, q), float64, covariates.
            fold: shape (n,), int, fold label of each unit for cross-fitting (each
                unit's ``h`` is fitted on the units of the other folds); ``None`` for
                the in-sample fit on all units.

        Returns:
            The :class:`InSampleFit`.

        Raises:
            ValidationError: if a fold leaves no unit to fit on.
        """
        X = np.asarray(X, dtype=np.float64).reshape(len(X), -1)
        n = len(X)
        D = np.column_stack([np.ones(n), X])  # (n, q+1)
        if fold is None:
            return cls(Dm=D, Pt=np.linalg.pinv(D).T)
        fold = np.asarray(fold)
        Dms, Pts = [], []
        for k in np.unique(fold):
            held = fold == k
            if held.all():
                raise ValidationError(
                    f"fold {k!r} holds every unit, so no unit is left to fit h on; "
                    "use at least two folds"
                )
            Pt = np.zeros_like(D)
            Pt[~held] = np.linalg.pinv(D[~held]).T
            Dms.append(D * held[:, None])
            Pts.append(Pt)
        return cls(Dm=np.hstack(Dms), Pt=np.hstack(Pts))

    @classmethod
    def none(cls, n: int) -> InSampleFit:
        """The zero smoother (ERL and fixed ``h``), ``L = 0``.

        Args:
            n: number of analysis units.

        Returns:
            The :class:`InSampleFit` with empty (n, 0) arrays.
        """
        return cls(Dm=np.zeros((n, 0)), Pt=np.zeros((n, 0)))

    @property
    def rank(self) -> int:
        """``L``, the number of columns."""
        return int(self.Dm.shape[1])

    def fitted(self, y: np.ndarray) -> np.ndarray:
        """``H y``, the fitted values of ``y``.

        Args:
            y: shape (n,), float64.

        Returns:
            Shape (n,), float64.
        """
        if self.rank == 0:
            return np.zeros(len(y))
        return self.Dm @ (self.Pt.T @ y)


def fitted_quadratic(
    v: np.ndarray, A: np.ndarray, B: np.ndarray, cross_DR: float
) -> tuple[np.ndarray, float]:
    """The rank-``L`` part of the quadratic form of an in-sample-adjusted ERL.

    With ``τ̂ = ... + eᵀ (Dg - A Bᵀ) e``, ``A = Wᵀ(g ∘ Dm)`` and ``B = Wᵀ(b ∘ Pt)``
    (both (m, L)), the symmetrised matrix is ``Q = Dg - (A Bᵀ + B Aᵀ)/2``.

    Args:
        v: shape (m,), ``p (1 - p)``.
        A: shape (m, L).
        B: shape (m, L).
        cross_DR: ``Σ_jk v_j v_k Dg_jk (A Bᵀ)_jk = Σ_l Σ_i g_i b_i (W V A_l)_i (W V B_l)_i``.

    Returns:
        ``(diag, delta)``: the diagonal correction ``-Σ_l A_jl B_jl`` (m,) and the
        change of ``Σ_jk v_j v_k Q_jk²``: ``-2 cross_DR + ||(A Bᵀ + B Aᵀ)/2||²_V``.
    """
    VA, VB = v[:, None] * A, v[:, None] * B
    AVA, BVB, BVA = A.T @ VA, B.T @ VB, B.T @ VA  # (L, L)
    rr = 0.5 * (float(np.sum(AVA * BVB.T)) + float(np.sum(BVA * BVA.T)))
    return -np.sum(A * B, axis=1), -2.0 * cross_DR + rr


def _as_csr(W: Any) -> sp.csr_matrix:
    M = sp.csr_matrix(W, dtype=np.float64)
    if M.ndim != 2:
        raise ShapeError(f"W must be a 2-D (n, m) matrix, got shape {M.shape}")
    return M


def exact_design_variance(
    W: Any,
    p: Any,
    a: Any,
    b: Any,
    *,
    covariates: Any = None,
    fold: Any = None,
) -> DesignVariance:
    r"""Exact mean and variance of ERL or CA-ERL under Bernoulli randomization (linear model).

    The outcome model is ``Ỹ_i = a_i + b_i x_i`` with exposure ``x_i = Σ_j w_ij Z_j``
    and independent ``Z_j ~ Bernoulli(p_j)``. Without ``covariates`` the estimator is
    ERL, ``τ̂ = (1/n) Σ_i Ỹ_i (x_i - μ_i) / σ_i²`` (with ``Ỹ = Y - h(X)`` for a fixed
    ``h`` this is pre-period CA-ERL). With ``covariates`` it is the in-sample CA-ERL of
    :func:`ca_erl`: ERL on the OLS residuals of ``Ỹ`` on ``[1, X]`` (cross-fitted when
    ``fold`` is given), divided by ``1 - B`` (the design bias factor).

    Args:
        W: shape (n, m), non-negative weights (dense array or SciPy sparse); every row
            must have positive exposure variance.
        p: shape (m,), design probabilities in (0, 1).
        a: shape (n,), intercepts ``a_i``.
        b: shape (n,), slopes ``b_i``.
        covariates: shape (n, q), covariates of the in-sample OLS adjustment, or None.
        fold: shape (n,), int fold labels for cross-fitting (needs ``covariates``).

    Returns:
        :class:`DesignVariance` with the linear, quadratic and cross terms.

    Raises:
        ShapeError: if the shapes disagree.
        ValidationError: if a row has zero exposure variance, ``p`` is not in (0, 1),
            or the fitted adjustment leaves no design information (``B >= 1``).

    Notes:
        With ``e_j = Z_j - p_j``, ``v_j = p_j(1-p_j)``, ``κ3_j = v_j(1-2p_j)``,
        ``κ4_j = v_j(1-3v_j)``, ``c_i = (a_i + b_i μ_i)/(n σ_i²)``,
        ``d_i = b_i/(n σ_i²)``, ``C_j = Σ_i c_i w_ij`` and
        ``D_jk = Σ_i d_i w_ij w_ik``:

        :math:`\\operatorname{Var}\\hat\\tau = \\sum_j v_j C_j^2 + \\sum_j (κ_{4j} - v_j^2) D_{jj}^2
        + 2\\sum_{j\\ne k} v_j v_k D_{jk}^2 + 2\\sum_j κ_{3j} C_j D_{jj}`.

        The fitted adjustment ``H = Dm Ptᵀ`` (:class:`InSampleFit`) makes ``τ̂`` the
        quadratic form ``cᵀu + uᵀ diag(g)(I - H) diag(b) u`` in ``u = W e`` with
        ``g = 1/(n σ²)`` and ``c = g ∘ (I - H)(a + b ∘ μ)``: ``D`` becomes
        ``D - A Bᵀ`` with ``A = Wᵀ(g ∘ Dm)``, ``B = Wᵀ(b ∘ Pt)`` (rank ``L``), and the
        mean ``(1/n) Σ b_i - Σ_jl v_j A_jl B_jl``. ``B = Σ_jl v_j A_jl (Wᵀ Pt)_jl`` is
        the same with ``b = 1``; dividing by ``1 - B`` makes the estimator exactly
        unbiased when the slopes are equal.

    Example:
        >>> import numpy as np
        >>> W = np.array([[1.0, 0.0], [0.5, 0.5]])
        >>> dv = exact_design_variance(W, np.array([0.5, 0.5]), np.zeros(2), np.ones(2))
        >>> round(dv.mean, 12)
        1.0
    """
    M = _as_csr(W)
    n, m = M.shape
    p = np.asarray(p, dtype=np.float64)
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if p.shape != (m,) or a.shape != (n,) or b.shape != (n,):
        raise ShapeError(
            f"W is {M.shape}; p must have shape ({m},) and a, b shape ({n},), got "
            f"{p.shape}, {a.shape}, {b.shape}"
        )
    if not np.all((p > 0) & (p < 1)):
        raise ValidationError("p must lie in (0, 1) for every randomization unit")
    if covariates is None:
        if fold is not None:
            raise ValidationError("fold needs covariates (cross-fitting fits OLS on them)")
        fit = InSampleFit.none(n)
    else:
        X = np.asarray(covariates, dtype=np.float64).reshape(n, -1)
        fit = InSampleFit.ols(X, None if fold is None else np.asarray(fold))
    v, _, _ = bernoulli_moments(p)
    mu = M @ p
    M2 = M.multiply(M).tocsr()
    s2 = M2 @ v
    if np.any(s2 <= 0):
        raise ValidationError(
            f"{int(np.sum(s2 <= 0))} row(s) of W have zero exposure variance; drop them"
        )
    g = 1.0 / (n * s2)
    base = a + b * mu
    c = g * (base - fit.fitted(base))
    d = g * b
    C = M.T @ c
    Dd = M2.T @ d
    Dm = (M.T @ sp.diags(d) @ M).tocoo()
    q_full = float(np.sum(v[Dm.row] * v[Dm.col] * Dm.data**2))
    mean = float(np.mean(b))
    bias = 0.0
    if fit.rank:
        A = np.asarray(M.T @ (g[:, None] * fit.Dm))  # (m, L)
        B1 = np.asarray(M.T @ fit.Pt)  # (m, L)
        Bb = np.asarray(M.T @ (b[:, None] * fit.Pt))  # (m, L)
        bias = check_bias_factor(float(np.sum(v[:, None] * A * B1)))
        WVA = np.asarray(M @ (v[:, None] * A))  # (n, L)
        WVB = np.asarray(M @ (v[:, None] * Bb))  # (n, L)
        diag, delta = fitted_quadratic(v, A, Bb, float(np.sum(d[:, None] * WVA * WVB)))
        Dd = Dd + diag
        q_full += delta
        mean -= float(np.sum(v[:, None] * A * Bb))
    return variance_terms(p, C, Dd, q_full, mean=mean, bias_factor=bias)


def check_bias_factor(bias: float) -> float:
    """Validate the design bias factor ``B`` of a fitted adjustment.

    Args:
        bias: ``B = Σ_jl v_j A_jl (Wᵀ Pt)_jl``.

    Returns:
        ``bias`` when ``B < 0.5``.

    Raises:
        ValidationError: when ``B >= 0.5``: the fit absorbs most of the exposure
            variation (too few analysis units per fitted coefficient).
    """
    if not bias < 0.5:
        raise ValidationError(
            f"the fitted adjustment absorbs most of the exposure variation (design bias "
            f"factor B = {bias:.3g} >= 0.5: too few analysis units or randomization units "
            "for the number of fitted coefficients); use adjustment='pre_period' or fewer "
            "covariates"
        )
    return bias


def sparsity_diagnostics(
    weight: np.ndarray,
    degree: np.ndarray,
    *,
    n_analysis: int,
    max_analysis_degree: int,
    n_edges: int,
    max_weight_share: float = 0.05,
) -> SparsityDiagnostics:
    """Sparsity diagnostics from per-randomization-unit totals.

    Args:
        weight: shape (m,), total edge weight of each randomization unit.
        degree: shape (m,), edges of each randomization unit.
        n_analysis: retained analysis units ``n``.
        max_analysis_degree: largest analysis-unit degree.
        n_edges: number of edges.
        max_weight_share: threshold above which ``clt_doubtful`` is set.

    Returns:
        The :class:`SparsityDiagnostics`.
    """
    total = float(np.sum(weight))
    share = weight / total if total > 0 else np.zeros_like(weight)
    ssq = float(np.sum(np.asarray(degree, dtype=np.float64) ** 2))
    mx = float(share.max()) if share.size else 0.0
    return SparsityDiagnostics(
        max_weight_share=mx,
        sum_sq_degree=ssq,
        sum_sq_degree_ratio=ssq / max(n_analysis, 1) ** 2,
        max_analysis_degree=int(max_analysis_degree),
        effective_randomization_units=float(1.0 / np.sum(share**2)) if total > 0 else 0.0,
        n_edges=int(n_edges),
        clt_doubtful=bool(mx > max_weight_share),
    )


def warn_if_doubtful(diag: SparsityDiagnostics, threshold: float) -> None:
    """Emit :class:`SparsityWarning` when ``diag.clt_doubtful``.

    Args:
        diag: the diagnostics.
        threshold: the ``max_weight_share`` threshold used.
    """
    if diag.clt_doubtful:
        warnings.warn(
            f"one randomization unit carries {diag.max_weight_share:.1%} of the edge weight "
            f"(threshold {threshold:.1%}; effective number of randomization units "
            f"{diag.effective_randomization_units:.1f}); the Wald CI's normal approximation "
            "is doubtful. Report the replicate interval, or randomize the hub separately",
            SparsityWarning,
            stacklevel=3,
        )
