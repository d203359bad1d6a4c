"""GSHM release: contribution bounding, threshold, engine parity, bad input."""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from tessera.errors import UnsupportedError, ValidationError
from tessera.privacy.gshm import (
    BudgetLedger,
    calibrate,
    integer_threshold,
    release,
    release_from_counts,
)
from tessera.privacy.gshm._engines import Bounds, aggregate_duckdb, aggregate_numpy


def _table(seed: int, n: int = 50_000, users: int = 5_000, keys: int = 300) -> pd.DataFrame:
    rs = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "user id": rs.integers(0, users, n),
            "key": (rs.zipf(1.4, n) % keys).astype(np.int64),
            "v": rs.integers(-3, 8, n).astype(np.float64),
        }
    )


def test_never_releases_below_tau_and_is_reproducible(seed: int) -> None:
    df = _table(seed)
    p = calibrate(1.0, 1e-6, k=3)
    r1 = release(df, key="key", user="user id", params=p, engine="numpy", rng=random.Random(seed))
    r2 = release(df, key="key", user="user id", params=p, engine="numpy", rng=random.Random(seed))
    assert r1.keys.size > 0
    assert np.all(r1.counts >= p.tau) and np.all(r1.counts >= r1.threshold)
    assert r1.threshold > p.tau
    assert np.array_equal(r1.keys, r2.keys) and np.array_equal(r1.counts, r2.counts)
    assert np.all(np.diff(r1.keys) > 0)


def test_mechanism_threshold_on_arrays() -> None:
    """Every key at the threshold boundary: never outputs a count below τ."""
    p = calibrate(1.0, 1e-6, k=1)
    counts = np.full(3000, int(p.tau), dtype=np.int64)
    r = release_from_counts(np.arange(3000), counts, params=p, rng=random.Random(1))
    assert 0 < r.keys.size < 3000
    assert r.counts.min() >= p.tau
    assert integer_threshold(p) / 1024 == r.threshold
    with pytest.raises(ValidationError, match="integers"):
        release_from_counts([1], [1.5], params=p)
    with pytest.raises(ValidationError, match="equal length"):
        release_from_counts([1, 2], [1], params=p)


@pytest.mark.parametrize("engine", ["numpy", "duckdb"])
def test_user_with_more_than_k_keys_contributes_to_exactly_k(engine: str) -> None:
    k = 4
    rows = [(0, key) for key in range(50) for _ in range(3)]  # user 0: 50 keys, 3 rows each
    rows += [(u, 1000) for u in range(1, 20)]  # 19 other users on one key
    df = pd.DataFrame(rows, columns=["u", "x"])
    agg = {"numpy": aggregate_numpy, "duckdb": aggregate_duckdb}[engine]
    picks = set()
    for salt in ("a", "b", "c", "d", "e"):
        st = agg(
            df,
            key="x",
            user="u",
            value=None,
            bounds=Bounds(k=k, linf=1, value_bound=None, grid=None, salt=salt),
        )
        user0 = st.keys != 1000
        assert int(st.counts[user0].sum()) == k  # exactly k keys, each clamped to Δ∞ = 1
        assert np.all(st.counts[user0] == 1)
        assert int(st.counts[~user0][0]) == 19
        picks.add(tuple(st.keys[user0].tolist()))
    assert len(picks) > 1  # the choice changes with the secret salt, not the data


@pytest.mark.parametrize("engine", ["numpy", "duckdb"])
def test_random_choice_is_uniform_over_a_users_keys(seed: int, engine: str) -> None:
    """H0: each user keeps each of its 10 keys with probability k/10 = 0.3.

    Test: 3 000 users with the same 10 keys, k = 3; per-key totals O. Under H0 each
    user's choice is a uniform 3-subset, so Pearson's X² = Σ(O − E)²/E is distributed
    as (7/9)·χ²₉ (covariance of sampling without replacement); α = 1e-4 on
    (9/7)·X². Effect size: a data-dependent choice (e.g. the 3 smallest keys) gives
    X² ≈ 21 000; a 10 % bias towards one key gives X² ≈ 40 (p ≈ 1e-6 at n = 3 000).
    """
    from scipy import stats as st

    n = 3000
    df = pd.DataFrame(
        {"u": np.repeat(np.arange(n), 10), "x": np.tile([f"k{i}" for i in range(10)], n)}
    )
    agg = {"numpy": aggregate_numpy, "duckdb": aggregate_duckdb}[engine]
    salt = format(random.Random(seed).randrange(2**64), "x")
    s = agg(
        df,
        key="x",
        user="u",
        value=None,
        bounds=Bounds(k=3, linf=1, value_bound=None, grid=None, salt=salt),
    )
    assert int(s.counts.sum()) == 3 * n
    chi2 = float(np.sum((s.counts - 0.3 * n) ** 2 / (0.3 * n)))
    assert st.chi2.sf(chi2 * 9 / 7, 9) > 1e-4


def test_engine_parity_numpy_duckdb(seed: int, tmp_path) -> None:
    df = _table(seed)
    p = calibrate(1.0, 1e-6, k=2, value_bound=5.0)
    outs = [
        release(
            df, key="key", user="user id", value="v", params=p, engine=e, rng=random.Random(seed)
        )
        for e in ("numpy", "duckdb")
    ]
    path = tmp_path / "t.parquet"
    df.to_parquet(path)
    outs.append(
        release(
            str(path),
            key="key",
            user="user id",
            value="v",
            params=p,
            engine="duckdb",
            rng=random.Random(seed),
        )
    )
    outs.append(
        release(
            str(path),
            key="key",
            user="user id",
            value="v",
            params=p,
            engine="numpy",
            rng=random.Random(seed),
        )
    )
    outs.append(
        release(
            {c: df[c].to_numpy() for c in df},
            key="key",
            user="user id",
            value="v",
            params=p,
            engine="duckdb",
            rng=random.Random(seed),
        )
    )
    for o in outs[1:]:
        assert np.array_equal(o.keys, outs[0].keys)
        assert np.array_equal(o.counts, outs[0].counts)
        assert np.array_equal(o.sums, outs[0].sums)


def test_value_sums_are_clamped_per_user_key() -> None:
    """One user with a huge value: its per-key contribution is clamped to B."""
    df = pd.DataFrame({"u": [0, 0, 1], "x": ["a", "a", "a"], "v": [1e9, 5.0, -1e9]})
    st = aggregate_numpy(
        df,
        key="x",
        user="u",
        value="v",
        bounds=Bounds(k=1, linf=1, value_bound=2.0, grid=2.0**-19, salt="s"),
    )
    assert st.sums is not None and int(st.sums[0]) == 0  # +2 and −2 in grid units
    assert int(st.counts[0]) == 2


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"key": "nope"}, ValidationError, "key='nope' is not a column"),
        ({"user": "who"}, ValidationError, "user='who' is not a column"),
        ({"value": "v"}, ValidationError, "value_bound"),
        ({"engine": "polars"}, UnsupportedError, "engine"),
    ],
)
def test_release_bad_input(kwargs: dict, exc: type, match: str) -> None:
    df = _table(0, n=100)
    args = {"key": "key", "user": "user id", "params": calibrate(1.0, 1e-6, k=2), "engine": "numpy"}
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        release(df, rng=random.Random(0), **args)


@pytest.mark.parametrize("engine", ["numpy", "duckdb"])
def test_missing_user_values_are_an_error(engine: str) -> None:
    df = pd.DataFrame({"u": [1.0, None], "x": ["a", "b"]})
    with pytest.raises(ValidationError, match="missing"):
        release(
            df,
            key="x",
            user="u",
            params=calibrate(1.0, 1e-6, k=2),
            engine=engine,
            rng=random.Random(0),
        )


def test_ledger_refuses_over_budget() -> None:
    from tessera.errors import PrivacyBudgetExceededError

    p = calibrate(0.6, 6e-6, k=2)
    ledger = BudgetLedger(epsilon=1.0, delta=1e-5)
    ledger.charge_params(p, name="first")
    with pytest.raises(PrivacyBudgetExceededError, match="only"):
        ledger.charge_params(p, name="second")
    assert len(ledger.spent) == 1
    df = _table(0, n=200)
    with pytest.raises(PrivacyBudgetExceededError):
        release(
            df,
            key="key",
            user="user id",
            params=p,
            engine="numpy",
            rng=random.Random(0),
            ledger=ledger,
        )
    assert len(ledger.spent) == 1
