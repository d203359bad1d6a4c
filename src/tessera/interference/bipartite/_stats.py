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
        mean: ``E τ̂ = (1/n) Σ_i b_i``.
        total: ``Var τ̂``.
        linear: ``Σ_j v_j C_j²``.
        quadratic_diagonal: ``Σ_j (κ4_j - v_j²) D_jj²``.
        quadratic_offdiagonal: ``2 Σ_{j≠k} v_j v_k D_jk²``.
        cross: ``2 Σ_j κ3_j C_j D_jj``.
    """

    mean: float
    total: float
    linear: float
    quadratic_diagonal: float
    quadratic_offdiagonal: float
    cross: float


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
    p: np.ndarray, C: np.ndarray, Dd: np.ndarray, q_full: float, *, mean: float
) -> DesignVariance:
    """Combine per-randomization-unit sums into the exact design variance.

    With ``τ̂ = Σ_i c_i u_i + Σ_i d_i u_i²`` and ``u_i = Σ_j w_ij e_j``:

    Args:
        p: shape (m,), design probabilities.
        C: shape (m,), ``C_j = Σ_i c_i w_ij``.
        Dd: shape (m,), ``D_jj = Σ_i d_i w_ij²``.
        q_full: ``Σ_{j,k} v_j v_k D_jk²`` (diagonal included).
        mean: ``E τ̂``, passed through.

    Returns:
        The :class:`DesignVariance`.
    """
    v, k3, k4 = bernoulli_moments(p)
    linear = float(np.sum(v * C * C))
    qd = float(np.sum((k4 - v * v) * Dd * Dd))
    qo = 2.0 * (q_full - float(np.sum(v * v * Dd * Dd)))
    cross = 2.0 * float(np.sum(k3 * C * Dd))
    return DesignVariance(
        mean=mean,
        total=linear + qd + qo + cross,
        linear=linear,
        quadratic_diagonal=qd,
        quadratic_offdiagonal=qo,
        cross=cross,
    )


def _as_csr(W: Any) -> sp.csr_matrix:
    M = sp.csr_matrix(W, dtype=np.float64)
    if M.ndim != 2:
        raise ShapeError(f"W must be a 2-D (n, m) matrix, got shape {M.shape}")
    return M


def exact_design_variance(W: Any, p: Any, a: Any, b: Any) -> DesignVariance:
    r"""Exact mean and variance of ERL under Bernoulli randomization (linear model).

    The outcome model is ``Ỹ_i = a_i + b_i x_i`` with exposure ``x_i = Σ_j w_ij Z_j``
    and independent ``Z_j ~ Bernoulli(p_j)``. ERL is
    ``τ̂ = (1/n) Σ_i Ỹ_i (x_i - μ_i) / σ_i²``.

    Args:
        W: shape (n, m), non-negative weights (dense array or SciPy sparse); every row
            must have positive exposure variance.
        p: shape (m,), design probabilities in (0, 1).
        a: shape (n,), intercepts ``a_i``.
        b: shape (n,), slopes ``b_i``.

    Returns:
        :class:`DesignVariance` with the linear, quadratic and cross terms.

    Raises:
        ShapeError: if the shapes disagree.
        ValidationError: if a row has zero exposure variance or ``p`` is not in (0, 1).

    Notes:
        With ``e_j = Z_j - p_j``, ``v_j = p_j(1-p_j)``, ``κ3_j = v_j(1-2p_j)``,
        ``κ4_j = v_j(1-3v_j)``, ``c_i = (a_i + b_i μ_i)/(n σ_i²)``,
        ``d_i = b_i/(n σ_i²)``, ``C_j = Σ_i c_i w_ij`` and
        ``D_jk = Σ_i d_i w_ij w_ik``:

        :math:`\\operatorname{Var}\\hat\\tau = \\sum_j v_j C_j^2 + \\sum_j (κ_{4j} - v_j^2) D_{jj}^2
        + 2\\sum_{j\\ne k} v_j v_k D_{jk}^2 + 2\\sum_j κ_{3j} C_j D_{jj}`.

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
    v, _, _ = bernoulli_moments(p)
    mu = M @ p
    s2 = M.multiply(M) @ v
    if np.any(s2 <= 0):
        raise ValidationError(
            f"{int(np.sum(s2 <= 0))} row(s) of W have zero exposure variance; drop them"
        )
    c = (a + b * mu) / (n * s2)
    d = b / (n * s2)
    C = M.T @ c
    Dd = M.multiply(M).T @ d
    Dm = (M.T @ sp.diags(d) @ M).tocoo()
    q_full = float(np.sum(v[Dm.row] * v[Dm.col] * Dm.data**2))
    return variance_terms(p, C, Dd, q_full, mean=float(np.mean(b)))


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
