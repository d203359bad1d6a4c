"""Distances between samples and between histograms.

Every function takes NumPy arrays or torch tensors (converted with
``.detach().cpu().numpy()`` by duck typing, so this module never imports torch),
computes in float64 and returns a plain Python ``float``.

Sample arguments have shape ``(n, d)``: ``n`` points in ``d`` dimensions. A 1-D
sample of ``n`` numbers is passed as ``x[:, None]``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment
from scipy.spatial.distance import cdist, pdist, squareform

from tessera._rng import as_rng
from tessera._validate import check_finite, check_ndim, check_positive, check_positive_int
from tessera.errors import ShapeError, ValidationError

__all__ = [
    "energy_distance",
    "mean_pairwise_distance",
    "mmd_rbf",
    "nearest_distance",
    "sliced_w2",
    "tvd",
    "w2_exact",
]

# Rows per block when summing a kernel over all pairs: bounds memory at
# _BLOCK * m float64 values instead of n * m.
_BLOCK = 1024
# The median heuristic looks at all pairs of at most this many pooled points.
_MEDIAN_MAX_POINTS = 4000


def _to_numpy(name: str, x: Any) -> np.ndarray:
    """Return ``x`` as a float64 NumPy array; torch tensors are detached and moved to CPU."""
    if hasattr(x, "detach") and hasattr(x, "cpu"):  # a torch tensor, by duck typing
        t = x.detach().cpu()
        if t.is_floating_point():
            t = t.double()  # also covers bfloat16, which has no NumPy dtype
        x = t.numpy()
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise ValidationError(
            f"{name} must be a numeric array or tensor, got {type(x).__name__} that NumPy "
            f"cannot convert to float64 ({e})"
        ) from e
    return arr


def _samples(name: str, x: Any, *, min_n: int = 1) -> np.ndarray:
    """Convert and check one sample of shape (n, d) with finite entries and n >= min_n."""
    arr = _to_numpy(name, x)
    check_ndim(name, arr, 2, what="(n, d); pass a 1-D sample as x[:, None]")
    if arr.shape[0] < min_n or arr.shape[1] < 1:
        raise ShapeError(
            f"{name} must have shape (n, d) with n >= {min_n} points and d >= 1, "
            f"got shape {arr.shape}"
        )
    check_finite(name, arr)
    return arr


def _flat_samples(name: str, x: Any, *, min_n: int = 1) -> np.ndarray:
    """Like :func:`_samples` for samples of any shape (n, ...), flattened to (n, d)."""
    arr = _to_numpy(name, x)
    if arr.ndim < 2:
        raise ShapeError(
            f"{name} must have shape (n, ...) with one row per sample, got {arr.shape}"
        )
    return _samples(name, arr.reshape(arr.shape[0], -1), min_n=min_n)


def _pair(x: Any, y: Any, *, min_n: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Convert and check two samples that must share the feature dimension d."""
    xa = _samples("x", x, min_n=min_n)
    ya = _samples("y", y, min_n=min_n)
    if xa.shape[1] != ya.shape[1]:
        raise ShapeError(
            f"x and y must have the same number of features d, got x of shape {xa.shape} "
            f"and y of shape {ya.shape}"
        )
    return xa, ya


def _pair_sum(a: np.ndarray, b: np.ndarray, metric: str, fn: Callable | None = None) -> float:
    """Sum ``fn(dist(a_i, b_j))`` over all pairs (i, j), in row blocks to bound memory."""
    total = 0.0
    for start in range(0, a.shape[0], _BLOCK):
        dist = cdist(a[start : start + _BLOCK], b, metric=metric)  # (block, m)
        total += float((dist if fn is None else fn(dist)).sum())
    return total


def w2_exact(x: Any, y: Any, *, max_n: int = 2000) -> float:
    r"""Exact 2-Wasserstein distance between two equal-size empirical laws.

    Both samples carry uniform weights ``1/n``. For two such measures an optimal
    coupling is a permutation (Birkhoff-von Neumann), so the optimal transport
    problem is the linear assignment problem on the squared-Euclidean cost
    matrix, solved exactly with :func:`scipy.optimize.linear_sum_assignment`.

    Args:
        x: array of shape (n, d), finite.
        y: array of shape (n, d), finite, same ``n`` and ``d`` as ``x``.
        max_n: largest ``n`` accepted; the solver costs O(n^3) time and the cost
            matrix O(n^2) memory.

    Returns:
        :math:`W_2(\hat\mu_x, \hat\mu_y) = (\min_\sigma \frac1n \sum_i
        |x_i - y_{\sigma(i)}|^2)^{1/2}`.

    Raises:
        ShapeError: if an input is not 2-D, or the feature dimensions differ.
        NonFiniteError: if an input holds NaN or infinity.
        ValidationError: if the sample sizes differ, if ``n > max_n``, or if
            ``max_n`` is not a positive integer.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0], [2.0]])
        >>> w2_exact(x, x[::-1] + 3.0)
        3.0
    """
    check_positive_int("max_n", max_n)
    xa, ya = _pair(x, y)
    n = xa.shape[0]
    if ya.shape[0] != n:
        raise ValidationError(
            f"w2_exact needs equal sample sizes, got x with {n} and y with {ya.shape[0]} "
            "points; subsample to a common size or use sliced_w2, which allows unequal sizes"
        )
    if n > max_n:
        raise ValidationError(
            f"w2_exact got n={n} points, more than max_n={max_n}; the exact assignment "
            "costs O(n^3) time and O(n^2) memory. Use sliced_w2 for large samples, "
            "subsample, or raise max_n if you can afford it"
        )
    cost = cdist(xa, ya, metric="sqeuclidean")  # (n, n)
    rows, cols = linear_sum_assignment(cost)
    return float(np.sqrt(cost[rows, cols].mean()))


def _quantile_pairing(n: int, m: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact pairing of the quantile functions of an n-point and an m-point law.

    The quantile function of a uniform n-point law is constant on each interval
    ((i-1)/n, i/n]. On the common refinement of both grids both quantile
    functions are constant, so the 1-D W2² is a finite weighted sum. The grid
    points are kept as exact integers in units of 1/(n m).

    Returns:
        Index into the sorted x, index into the sorted y, and interval weights
        (summing to 1), each of shape (K,) with K <= n + m - 1.
    """
    grid = np.union1d(np.arange(n + 1, dtype=np.int64) * m, np.arange(m + 1, dtype=np.int64) * n)
    lo, hi = grid[:-1], grid[1:]
    mid2 = lo + hi  # twice the interval midpoint, in units of 1/(n m)
    ix = mid2 // (2 * m)
    iy = mid2 // (2 * n)
    weights = (hi - lo) / float(n * m)
    return ix, iy, weights


def sliced_w2(
    x: Any,
    y: Any,
    *,
    n_projections: int = 256,
    rng: int | np.random.Generator | np.random.SeedSequence | None = None,
) -> float:
    r"""Sliced 2-Wasserstein distance, by Monte Carlo over random directions.

    Both samples are projected onto ``n_projections`` directions drawn uniformly
    on the unit sphere. Along each direction the 1-D W2² between the projected
    empirical laws is computed exactly from their quantile functions (so unequal
    sample sizes are allowed), and the result is the square root of the mean.

    Args:
        x: array of shape (n, d), finite.
        y: array of shape (m, d), finite; ``m`` may differ from ``n``.
        n_projections: number of random directions L.
        rng: seed or generator for the directions (SPEC 7).

    Returns:
        :math:`(\frac1L \sum_{l} W_2^2(\theta_l \# \hat\mu_x,
        \theta_l \# \hat\mu_y))^{1/2}`, never larger than the exact W2.

    Raises:
        ShapeError: if an input is not 2-D, or the feature dimensions differ.
        NonFiniteError: if an input holds NaN or infinity.
        ValidationError: if ``n_projections`` is not a positive integer or
            ``rng`` has an unsupported type.

    Notes:
        For a 1-D sample (d = 1) every direction is ±1 and the result is the
        exact 1-D W2. Reference: Bonneel et al., "Sliced and Radon Wasserstein
        barycenters of measures", JMIV 2015.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0]])
        >>> y = np.array([[0.0], [0.5], [1.0], [1.5]]) + 2.0
        >>> round(sliced_w2(x, y, rng=0), 6)  # d = 1: the exact W2, sqrt(5.125)
        2.263846
    """
    check_positive_int("n_projections", n_projections)
    xa, ya = _pair(x, y)
    gen = as_rng(rng)
    d = xa.shape[1]
    theta = gen.standard_normal((n_projections, d))  # (L, d)
    theta /= np.linalg.norm(theta, axis=1, keepdims=True)
    xp = np.sort(xa @ theta.T, axis=0)  # (n, L)
    yp = np.sort(ya @ theta.T, axis=0)  # (m, L)
    ix, iy, weights = _quantile_pairing(xa.shape[0], ya.shape[0])
    w2_sq = weights @ (xp[ix] - yp[iy]) ** 2  # (L,)
    return float(np.sqrt(w2_sq.mean()))


def _median_pairwise_distance(pooled: np.ndarray) -> float:
    """Median Euclidean distance over distinct pairs of (a strided subset of) the points."""
    if pooled.shape[0] > _MEDIAN_MAX_POINTS:
        step = -(-pooled.shape[0] // _MEDIAN_MAX_POINTS)  # ceil division
        pooled = pooled[::step]
    return float(np.median(pdist(pooled)))


def mmd_rbf(x: Any, y: Any, *, bandwidth: float | None = None) -> float:
    r"""Unbiased estimate of the squared MMD with a Gaussian RBF kernel.

    Args:
        x: array of shape (n, d), finite, ``n >= 2``.
        y: array of shape (m, d), finite, ``m >= 2``.
        bandwidth: kernel bandwidth h > 0. ``None`` uses the median heuristic:
            h is the median Euclidean distance over distinct pairs of the pooled
            sample (above 4000 pooled points, over the pairs of an evenly strided
            subset of 4000, which keeps it deterministic and O(1) in memory).

    Returns:
        The U-statistic :math:`\widehat{\mathrm{MMD}}^2_u = \frac{1}{n(n-1)}
        \sum_{i \ne j} k(x_i, x_j) + \frac{1}{m(m-1)} \sum_{i \ne j} k(y_i, y_j)
        - \frac{2}{nm} \sum_{i,j} k(x_i, y_j)` with
        :math:`k(a, b) = \exp(-|a - b|^2 / (2 h^2))`. Being unbiased it can be
        slightly negative when the two laws are equal.

    Raises:
        ShapeError: if an input is not 2-D, has fewer than 2 points, or the
            feature dimensions differ.
        NonFiniteError: if an input holds NaN or infinity.
        ValidationError: if ``bandwidth`` is not a finite positive number, or the
            median heuristic gives 0 (all pooled points coincide).

    Notes:
        Gretton et al., "A kernel two-sample test", JMLR 2012, eq. (3).

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0]])
        >>> round(mmd_rbf(x, x + 10.0, bandwidth=1.0), 6)  # 2 exp(-1/2); cross term ~ 0
        1.213061
    """
    xa, ya = _pair(x, y, min_n=2)
    if bandwidth is None:
        h = _median_pairwise_distance(np.concatenate([xa, ya]))
        if h <= 0.0:
            raise ValidationError(
                "mmd_rbf median heuristic gave bandwidth 0 because most pooled points "
                "coincide; pass bandwidth=... explicitly"
            )
    else:
        check_positive("bandwidth", bandwidth)
        h = float(bandwidth)
    n, m = xa.shape[0], ya.shape[0]
    scale = -1.0 / (2.0 * h * h)

    def kernel(sq: np.ndarray) -> np.ndarray:
        return np.exp(scale * sq)

    # k(a, a) = 1 exactly (cdist returns 0 on the diagonal), so the off-diagonal
    # sums are the full sums minus n and m.
    kxx = (_pair_sum(xa, xa, "sqeuclidean", kernel) - n) / (n * (n - 1))
    kyy = (_pair_sum(ya, ya, "sqeuclidean", kernel) - m) / (m * (m - 1))
    kxy = _pair_sum(xa, ya, "sqeuclidean", kernel) / (n * m)
    return float(kxx + kyy - 2.0 * kxy)


def energy_distance(x: Any, y: Any) -> float:
    r"""Energy distance between two samples, with unbiased within-sample terms.

    Args:
        x: array of shape (n, d), finite, ``n >= 2``.
        y: array of shape (m, d), finite, ``m >= 2``.

    Returns:
        :math:`2\,\mathbb{E}|X - Y| - \mathbb{E}|X - X'| - \mathbb{E}|Y - Y'|`
        with Euclidean norms; the cross term averages all ``n m`` pairs and the
        within-sample terms are U-statistics over the ``n (n-1)`` and
        ``m (m-1)`` off-diagonal pairs.

    Raises:
        ShapeError: if an input is not 2-D, has fewer than 2 points, or the
            feature dimensions differ.
        NonFiniteError: if an input holds NaN or infinity.

    Notes:
        Székely and Rizzo, "Energy statistics: A class of statistics based on
        distances", J. Stat. Plan. Inference 2013.

    Example:
        >>> import numpy as np
        >>> x = np.array([[0.0], [1.0]])
        >>> energy_distance(x, x + 2.0)
        2.0
    """
    xa, ya = _pair(x, y, min_n=2)
    n, m = xa.shape[0], ya.shape[0]
    exy = _pair_sum(xa, ya, "euclidean") / (n * m)
    exx = _pair_sum(xa, xa, "euclidean") / (n * (n - 1))  # diagonal is exactly 0
    eyy = _pair_sum(ya, ya, "euclidean") / (m * (m - 1))
    return float(2.0 * exy - exx - eyy)


def tvd(p: Any, q: Any) -> float:
    r"""Total variation distance between two histograms or probability vectors.

    Each input is normalised to sum to 1 first, so raw counts are accepted.

    Args:
        p: array of shape (k,), finite, non-negative, with a positive sum.
        q: array of shape (k,), same conditions and length as ``p``.

    Returns:
        :math:`\frac12 \sum_i |p_i / \sum p - q_i / \sum q|`, in [0, 1].

    Raises:
        ShapeError: if an input is not 1-D, or the lengths differ.
        NonFiniteError: if an input holds NaN or infinity.
        ValidationError: if an input has a negative entry or sums to 0.

    Example:
        >>> tvd([1, 1, 0], [0, 1, 1])
        0.5
    """
    arrays = []
    for name, v in (("p", p), ("q", q)):
        arr = _to_numpy(name, v)
        check_ndim(name, arr, 1, what="(k,): one histogram; flatten it or loop over rows")
        check_finite(name, arr)
        if (arr < 0).any():
            raise ValidationError(
                f"{name} must be non-negative, got {int((arr < 0).sum())} negative entries "
                f"(min {float(arr.min())!r}); pass counts or probabilities"
            )
        total = arr.sum()
        if not total > 0:
            raise ValidationError(
                f"{name} must have a positive sum, got {float(total)!r} (length {arr.shape[0]}); "
                "pass a histogram with at least one positive count"
            )
        arrays.append(arr / total)
    pa, qa = arrays
    if pa.shape != qa.shape:
        raise ShapeError(
            f"p and q must have the same length, got {pa.shape[0]} and {qa.shape[0]}; "
            "build both histograms over the same bins"
        )
    return float(0.5 * np.abs(pa - qa).sum())


def mean_pairwise_distance(x: Any, *, weights: Any = None) -> float:
    r"""Mean Euclidean distance between distinct samples: a diversity measure.

    With weights w (e.g. importance weights) it is
    :math:`\sum_{i \ne j} w_i w_j \|x_i - x_j\| / \sum_{i \ne j} w_i w_j`, the
    self-normalised estimate of :math:`E\|X - X'\|` under the weighted law.

    Args:
        x: samples, shape (n, ...) with n >= 2 (flattened per sample).
        weights: optional non-negative weights, shape (n,).

    Returns:
        The mean distance (float).

    Raises:
        ShapeError: fewer than 2 samples or weights of the wrong shape.
        NonFiniteError: NaN or inf in x or weights.
        ValidationError: negative weights or no weight on two distinct samples.

    Example:
        >>> mean_pairwise_distance(np.array([[0.0], [3.0], [3.0]]))
        2.0
    """
    arr = _flat_samples("x", x, min_n=2)
    n = arr.shape[0]
    d = squareform(pdist(arr))
    if weights is None:
        return float(d.sum() / (n * (n - 1)))
    w = _to_numpy("weights", weights).astype(np.float64)
    if w.shape != (n,):
        raise ShapeError(f"weights must have shape ({n},), got {w.shape}")
    if (w < 0).any():
        raise ValidationError(f"weights must be non-negative, got min {w.min():.3g}")
    ww = np.outer(w, w)
    np.fill_diagonal(ww, 0.0)
    total = ww.sum()
    if total <= 0:
        raise ValidationError("weights put no mass on two distinct samples")
    return float((ww * d).sum() / total)


def nearest_distance(samples: Any, reference: Any, *, chunk: int = 2048) -> np.ndarray:
    r"""Euclidean distance of each sample to its nearest reference point.

    Used as a memorisation / on-manifold check: the median distance of generated
    images to their nearest training image, next to the same statistic for held-out
    real images or plain model samples.

    Args:
        samples: shape (n, ...), flattened per sample.
        reference: shape (m, ...) with the same flattened size, e.g. the training set.
        chunk: samples per block of the (chunk, m) distance matrix (bounds memory).

    Returns:
        Array of shape (n,), float64.

    Raises:
        ShapeError: flattened sizes that differ.
        NonFiniteError: NaN or inf in either input.
        ValidationError: ``chunk`` not a positive integer.

    Example:
        >>> nearest_distance(np.array([[0.0, 0.0], [3.0, 4.0]]), np.array([[0.0, 1.0]]))
        array([1.        , 4.24264069])
    """
    check_positive_int("chunk", chunk)
    s = _flat_samples("samples", samples)
    r = _flat_samples("reference", reference)
    if s.shape[1] != r.shape[1]:
        raise ShapeError(
            f"samples and reference must have the same size per sample, got {s.shape[1]} "
            f"and {r.shape[1]}"
        )
    r2 = (r**2).sum(1)  # (m,)
    out = np.empty(s.shape[0])
    for start in range(0, s.shape[0], chunk):
        b = s[start : start + chunk]
        d2 = (b**2).sum(1)[:, None] + r2[None] - 2.0 * b @ r.T  # (chunk, m)
        out[start : start + chunk] = np.sqrt(np.maximum(d2.min(1), 0.0))
    return out
