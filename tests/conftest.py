"""Shared fixtures: the ``seed`` fixture is fixed by default and swept by TESSERA_SEEDS.

``TESSERA_SEEDS=0-20 make test`` reruns every seeded test over 21 seeds, which
measures the real false-failure rate of the statistical tests.
"""

from __future__ import annotations

import os

import pytest


def _seeds() -> list[int]:
    spec = os.environ.get("TESSERA_SEEDS", "0")
    if "-" in spec:
        lo, hi = spec.split("-")
        return list(range(int(lo), int(hi) + 1))
    return [int(s) for s in spec.split(",")]


@pytest.fixture(params=_seeds())
def seed(request: pytest.FixtureRequest) -> int:
    """The seed of a test that uses randomness."""
    return int(request.param)
