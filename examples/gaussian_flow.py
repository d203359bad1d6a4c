"""Exact flows of a Gaussian mixture: ODE, SDE family and the memoryless schedule.

Run: python examples/gaussian_flow.py
"""

import torch

from tessera.flows import (
    CondOT,
    GaussianMixtureFlow,
    constant,
    memoryless,
    solve_ode,
    solve_sde,
    uniform_grid,
)

F64 = torch.float64
gmf = GaussianMixtureFlow([0.5, 0.5], [[-2.0], [2.0]], [[[0.25]], [[0.25]]])
x0 = torch.randn(20_000, 1, dtype=F64, generator=torch.Generator().manual_seed(0))
grid = uniform_grid(400, dtype=F64)

ode = solve_ode(gmf.velocity, x0, grid, method="midpoint")
print(f"data: mean {gmf.mean().item():+.3f}  var {gmf.cov().item():.3f}")
print(f"ODE : mean {ode.mean().item():+.3f}  var {ode.var().item():.3f}")
for name, diffusion in [
    ("sigma=0.5", constant(0.5)),
    ("memoryless", memoryless(CondOT(), 1 / 400)),
]:
    x1 = solve_sde(gmf.velocity, x0, grid, CondOT(), diffusion, generator=1)
    corr = torch.corrcoef(torch.stack([x0[:, 0], x1[:, 0]]))[0, 1].item()
    print(f"{name:<11}: var {x1.var().item():.3f}  corr(X0, X1) {corr:+.3f}")

tilted = gmf.tilt_linear([1.0], 0.5)
print(f"reward-tilted right-mode weight: {tilted.weights[1].item():.3f}")
