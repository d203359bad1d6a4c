"""Shared fixtures of the control tests: one trained digits flow per session (slow tests)."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session")
def digits_flow(tmp_path_factory):
    """The foundation recipe's digits flow (6,000 steps, seed 0; ~2 min on 2 cores), frozen."""
    from tessera.flows.recipes import train_on

    result, _ = train_on(
        "digits", steps=6000, seed=0, out_dir=str(tmp_path_factory.mktemp("flow")), progress=False
    )
    return result.sampling_model.eval().requires_grad_(False)
