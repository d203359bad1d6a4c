"""Flow matching core: affine paths, SDE diffusions, solvers, exact Gaussian flows, training.

Conventions: noise at t = 0, data at t = 1, ``x_t = alpha_t x1 + beta_t x0``; every
velocity is called as ``v(x, t)`` with x of shape (B, ...) and t of shape (B,).
"""

from __future__ import annotations

from tessera.flows.gaussian import GaussianMixtureFlow
from tessera.flows.sampling import guided_velocity, sample
from tessera.flows.schedules import VP, CondOT, Cosine, Schedule, change_schedule
from tessera.flows.sde import constant, drift, memoryless
from tessera.flows.solvers import Trajectory, solve_ode, solve_sde, uniform_grid
from tessera.flows.training import FlowMatchingConfig, TrainResult, train_flow

__all__ = [
    "VP",
    "CondOT",
    "Cosine",
    "FlowMatchingConfig",
    "GaussianMixtureFlow",
    "Schedule",
    "TrainResult",
    "Trajectory",
    "change_schedule",
    "constant",
    "drift",
    "guided_velocity",
    "memoryless",
    "sample",
    "solve_ode",
    "solve_sde",
    "train_flow",
    "uniform_grid",
]
