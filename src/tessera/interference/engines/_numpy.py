"""The in-memory NumPy engine: validation and aggregation with bincount and sparse products."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp

from tessera.errors import ValidationError
from tessera.interference.engines._base import (
    Columns,
    GraphStats,
    RandomizationSums,
    UnitStats,
    check_columns,
    raise_problems,
)
from tessera.interference.engines._io import to_pandas

__all__ = ["NumpyEngine"]


@dataclass
class _Handle:
    a_ids: np.ndarray  # (n_all,) sorted outcome ids
    y: np.ndarray  # (n_all,)
    X: np.ndarray  # (n_all, q)
    r_ids: np.ndarray  # (m,) sorted randomization ids
    z: np.ndarray  # (m,)
    p: np.ndarray  # (m,)
    ei: np.ndarray  # (E,) index into a_ids
    ej: np.ndarray  # (E,) index into r_ids
    w: np.ndarray  # (E,) weights (normalised per analysis unit when requested)
    keep: np.ndarray  # (n_all,) bool, positive exposure variance
    pos: np.ndarray  # (n_all,) position among kept units, -1 if dropped


def _first(values: np.ndarray, mask: np.ndarray) -> Any:
    idx = np.flatnonzero(mask)
    return values[idx[0]] if idx.size else None


def _nulls(frame: Any, table: str, cols: list[str]) -> list[tuple[str, str, str, int, Any]]:
    out = []
    for c in cols:
        miss = frame[c].isna().to_numpy()
        out.append(
            ("null", table, c, int(miss.sum()), f"index {_first(frame.index.to_numpy(), miss)!r}")
        )
    return out


def _float(frame: Any, col: str, table: str) -> np.ndarray:
    try:
        return frame[col].to_numpy(dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValidationError(
            f"{table}.{col} must be numeric, got dtype {frame[col].dtype}; pass numbers"
        ) from exc


def _dupes(keys: np.ndarray) -> tuple[int, Any]:
    order = np.argsort(keys, kind="stable")
    sk = keys[order]
    same = sk[1:] == sk[:-1]
    return int(same.sum()), (sk[1:][same][0] if same.any() else None)


class NumpyEngine:
    """Aggregate in memory with NumPy and SciPy sparse matrices.

    Every input is materialised as a pandas DataFrame first, so this engine suits
    tables that fit in RAM (it is the reference for the parity tests).

    Example:
        >>> NumpyEngine().name
        'numpy'
    """

    name = "numpy"

    def prepare(
        self,
        edges: Any,
        assignments: Any,
        outcomes: Any,
        *,
        columns: Columns,
        covariates: tuple[str, ...],
        normalize: bool,
    ) -> _Handle:
        """Load the tables into arrays and validate them.

        Args:
            edges: edge table (analysis id, randomization id, weight).
            assignments: assignment table (randomization id, treated, p).
            outcomes: outcome table (analysis id, outcome, covariates).
            columns: the column names.
            covariates: covariate column names in the outcome table.
            normalize: divide weights by their per-analysis-unit sum.

        Returns:
            The engine handle.

        Raises:
            ValidationError: for missing columns, missing or non-finite values,
                negative weights, duplicates, unknown ids, treated not 0/1 or p not in (0, 1).
        """
        c = columns
        E = to_pandas(edges, "edges")
        A = to_pandas(assignments, "assignments")
        O = to_pandas(outcomes, "outcomes")  # noqa: E741
        check_columns(
            "edges",
            list(map(str, E.columns)),
            [
                ("analysis_id", c.analysis_id),
                ("randomization_id", c.randomization_id),
                ("weight", c.weight),
            ],
        )
        check_columns(
            "assignments",
            list(map(str, A.columns)),
            [("randomization_id", c.randomization_id), ("treated", c.treated), ("p", c.p)],
        )
        check_columns(
            "outcomes",
            list(map(str, O.columns)),
            [("analysis_id", c.analysis_id), ("outcome", c.outcome)]
            + [("covariate", name) for name in covariates],
        )
        problems = (
            _nulls(E, "edges", [c.analysis_id, c.randomization_id, c.weight])
            + _nulls(A, "assignments", [c.randomization_id, c.treated, c.p])
            + _nulls(O, "outcomes", [c.analysis_id, c.outcome, *covariates])
        )
        raise_problems(problems)
        w = _float(E, c.weight, "edges")
        p = _float(A, c.p, "assignments")
        z = _float(A, c.treated, "assignments")
        y = _float(O, c.outcome, "outcomes")
        X = (
            np.column_stack([_float(O, k, "outcomes") for k in covariates])
            if covariates
            else np.zeros((len(O), 0))
        )
        for arr, table, col in [
            (w, "edges", c.weight),
            (p, "assignments", c.p),
            (y, "outcomes", c.outcome),
        ] + [(X[:, k], "outcomes", name) for k, name in enumerate(covariates)]:
            bad = ~np.isfinite(arr)
            problems.append(("nonfinite", table, col, int(bad.sum()), _first(arr, bad)))
        neg = w < 0
        problems.append(("negative_weight", "edges", c.weight, int(neg.sum()), _first(w, neg)))
        a_raw = O[c.analysis_id].to_numpy()
        r_raw = A[c.randomization_id].to_numpy()
        ea = E[c.analysis_id].to_numpy()
        er = E[c.randomization_id].to_numpy()
        cnt, ex = _dupes(a_raw)
        problems.append(("duplicate_outcome", "outcomes", c.analysis_id, cnt, ex))
        cnt, ex = _dupes(r_raw)
        problems.append(("duplicate_assignment", "assignments", c.randomization_id, cnt, ex))
        badz = ~np.isin(z, (0.0, 1.0))
        problems.append(("bad_treated", "assignments", c.treated, int(badz.sum()), _first(z, badz)))
        badp = ~((p > 0) & (p < 1))
        problems.append(("bad_p", "assignments", c.p, int(badp.sum()), _first(p, badp)))
        a_order = np.argsort(a_raw, kind="stable")
        r_order = np.argsort(r_raw, kind="stable")
        a_ids, r_ids = a_raw[a_order], r_raw[r_order]
        try:
            ei = np.searchsorted(a_ids, ea).clip(0, max(len(a_ids) - 1, 0))
            ej = np.searchsorted(r_ids, er).clip(0, max(len(r_ids) - 1, 0))
        except TypeError as exc:
            raise ValidationError(
                "id columns have incompatible types across tables (edges "
                f"{ea.dtype}/{er.dtype}, outcomes {a_ids.dtype}, assignments {r_ids.dtype}); "
                "use the same id type in every table"
            ) from exc
        unk_a = (a_ids[ei] != ea) if len(a_ids) else np.ones(len(ea), bool)
        unk_r = (r_ids[ej] != er) if len(r_ids) else np.ones(len(er), bool)
        problems.append(
            (
                "unknown_analysis",
                "edges",
                c.analysis_id,
                int(np.sum(unk_a)),
                _first(ea, np.asarray(unk_a)),
            )
        )
        problems.append(
            (
                "unknown_randomization",
                "edges",
                c.randomization_id,
                int(np.sum(unk_r)),
                _first(er, np.asarray(unk_r)),
            )
        )
        pair = ei.astype(np.int64) * max(len(r_ids), 1) + ej
        cnt, ex = _dupes(pair)
        if cnt:
            k = int(ex)
            ex = (a_ids[k // max(len(r_ids), 1)], r_ids[k % max(len(r_ids), 1)])
        problems.append(("duplicate_edge", "edges", "", cnt, ex))
        raise_problems(problems)

        n_all = len(a_ids)
        if normalize:
            tot = np.bincount(ei, weights=w, minlength=n_all)
            with np.errstate(divide="ignore", invalid="ignore"):
                w = np.where(tot[ei] > 0, w / np.where(tot[ei] > 0, tot[ei], 1.0), 0.0)
        p_s = p[r_order]
        s2 = np.bincount(ei, weights=w * w * (p_s * (1 - p_s))[ej], minlength=n_all)
        keep = s2 > 0
        pos = np.full(n_all, -1, dtype=np.int64)
        pos[keep] = np.arange(int(keep.sum()))
        return _Handle(
            a_ids=a_ids,
            y=y[a_order],
            X=X[a_order],
            r_ids=r_ids,
            z=z[r_order],
            p=p_s,
            ei=ei,
            ej=ej,
            w=w,
            keep=keep,
            pos=pos,
        )

    def unit_stats(self, handle: _Handle) -> UnitStats:
        """Exposure moments, outcomes and covariates per retained analysis unit.

        Args:
            handle: from :meth:`prepare`.

        Returns:
            The per-unit arrays (sorted by analysis id).
        """
        h = handle
        n_all = len(h.a_ids)
        v = h.p * (1 - h.p)
        x = np.bincount(h.ei, weights=h.w * h.z[h.ej], minlength=n_all)
        mu = np.bincount(h.ei, weights=h.w * h.p[h.ej], minlength=n_all)
        s2 = np.bincount(h.ei, weights=h.w * h.w * v[h.ej], minlength=n_all)
        deg = np.bincount(h.ei, minlength=n_all).astype(np.int64)
        k = h.keep
        return UnitStats(
            ids=h.a_ids[k],
            x=x[k],
            mu=mu[k],
            s2=s2[k],
            deg=deg[k],
            y=h.y[k],
            X=h.X[k],
            n_dropped=int((~k).sum()),
            dropped_examples=tuple(h.a_ids[~k][:5].tolist()),
        )

    def _matrix(self, h: _Handle) -> sp.csr_matrix:
        sel = h.keep[h.ei]
        n = int(h.keep.sum())
        return sp.csr_matrix((h.w[sel], (h.pos[h.ei[sel]], h.ej[sel])), shape=(n, len(h.r_ids)))

    def randomization_sums(
        self, handle: _Handle, ids: np.ndarray, c: np.ndarray, g: np.ndarray
    ) -> RandomizationSums:
        """Per-randomization-unit sums and the quadratic self-join total.

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), the retained analysis ids (as from :meth:`unit_stats`).
            c: shape (n,), float64, linear coefficients.
            g: shape (n,), float64, quadratic coefficients.

        Returns:
            The sums; see :class:`RandomizationSums`.
        """
        h = handle
        W = self._matrix(h)  # (n, m)
        W2 = W.multiply(W).tocsr()
        v = h.p * (1 - h.p)
        C = np.asarray(W.T @ c).ravel()
        G = np.asarray(W2.T @ g).ravel()
        Gm = (W.T @ sp.diags(g) @ W).tocoo()  # (m, m), G_jk = Σ_i g_i w_ij w_ik
        q_full = float(np.sum(v[Gm.row] * v[Gm.col] * Gm.data**2))
        return RandomizationSums(ids=h.r_ids, p=h.p, C=C, G=G, q_full=q_full)

    def replicate_sums(
        self, handle: _Handle, ids: np.ndarray, c: np.ndarray, g: np.ndarray, e: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Per-replicate sums ``Σ_i c_i u_ib`` and ``Σ_i g_i u_ib²``.

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids.
            c: shape (n,), float64.
            g: shape (n,), float64.
            e: shape (m, B), float64, centred replicate assignments ``Z_jb - p_j``,
                rows in the order of the sorted randomization ids.

        Returns:
            Two arrays of shape (B,).
        """
        U = self._matrix(handle) @ e  # (n, B)
        return c @ U, g @ (U * U)

    def column_totals(self, handle: _Handle, ids: np.ndarray, V: np.ndarray) -> np.ndarray:
        """Per-randomization-unit totals ``Σ_i w_ij V_il`` (``Wᵀ V``).

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids (rows of ``V``).
            V: shape (n, L), float64.

        Returns:
            Shape (m, L), float64, rows in the order of the sorted randomization ids.
        """
        return np.asarray(self._matrix(handle).T @ np.asarray(V, dtype=np.float64))

    def row_totals(self, handle: _Handle, ids: np.ndarray, M: np.ndarray) -> np.ndarray:
        """Per-analysis-unit totals ``Σ_j w_ij M_jl`` (``W M``).

        Args:
            handle: from :meth:`prepare`.
            ids: shape (n,), retained analysis ids (rows of the result).
            M: shape (m, L), float64, rows in the order of the sorted randomization ids.

        Returns:
            Shape (n, L), float64.
        """
        return np.asarray(self._matrix(handle) @ np.asarray(M, dtype=np.float64))

    def graph_stats(self, handle: _Handle) -> GraphStats:
        """Totals for the sparsity diagnostics.

        Args:
            handle: from :meth:`prepare`.

        Returns:
            Weight and degree per randomization unit, the largest analysis degree.
        """
        h = handle
        sel = h.keep[h.ei]
        m = len(h.r_ids)
        deg_i = np.bincount(h.ei[sel], minlength=len(h.a_ids))
        return GraphStats(
            ids=h.r_ids,
            p=h.p,
            weight=np.bincount(h.ej[sel], weights=h.w[sel], minlength=m),
            degree=np.bincount(h.ej[sel], minlength=m).astype(np.int64),
            max_analysis_degree=int(deg_i.max()) if deg_i.size else 0,
            n_edges=int(sel.sum()),
        )

    def close(self, handle: _Handle) -> None:
        """Nothing to release for in-memory arrays.

        Args:
            handle: from :meth:`prepare`.
        """
