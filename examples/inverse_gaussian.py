"""OT-ODE on an exact problem: the paper's init vs the Gaussian-posterior inits.

A non-centred N(m, Sigma) prior (its closed-form flow), three noisy measurements of six
coordinates, started late (t' = 0.5). The exact posterior is known, so each init's bias
is visible. Run: python examples/inverse_gaussian.py
"""

import torch

from tessera.control import Dense, GaussianPrior, ot_ode
from tessera.control.inverse import INITS
from tessera.flows import CondOT, GaussianMixtureFlow

F64 = torch.float64
g = torch.Generator().manual_seed(0)
L = torch.randn(6, 6, generator=g, dtype=F64) / 3 + torch.eye(6, dtype=F64)
Sigma, m = L @ L.T, torch.full((6,), 2.0, dtype=F64)
flow = GaussianMixtureFlow([1.0], [m.tolist()], [Sigma])
A = torch.randn(3, 6, generator=g, dtype=F64)
sigma_y = 0.1
y = (m + L @ torch.randn(6, generator=g, dtype=F64)) @ A.T
y = (y + sigma_y * torch.randn(3, generator=g, dtype=F64)).expand(10_000, 3).clone()

# the exact posterior, and the same Gaussian fitted from 50,000 prior samples
K = Sigma @ A.T @ torch.linalg.inv(A @ Sigma @ A.T + sigma_y**2 * torch.eye(3, dtype=F64))
mu, C = m + K @ (y[0] - A @ m), Sigma - K @ A @ Sigma
prior = GaussianPrior.fit(m + torch.randn(50_000, 6, generator=g, dtype=F64) @ L.T)

print("init               prior     mean error  covariance error")
for init in INITS:
    for name, p in [("N(m, I)", None), ("fitted", prior)]:
        if init == "backprojection" and p is not None:
            continue
        x = ot_ode(flow.velocity, CondOT(), Dense(A), y, sigma_y, start_time=0.5, steps=100,
                   init=init, prior=p, generator=1)  # fmt: skip
        mean_err = (x.mean(0) - mu).abs().max().item()
        cov_err = (torch.linalg.norm(torch.cov(x.T) - C) / torch.linalg.norm(C)).item()
        print(f"{init:18s} {name:9s} {mean_err:10.3f}  {cov_err:16.3f}")
