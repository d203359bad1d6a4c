"""Train a flow on the eight-Gaussians toy set and compare it with the noise floor.

Run: python examples/train_toy_flow.py [steps]
"""

import sys

import torch

from tessera.data import toy2d
from tessera.flows import FlowMatchingConfig, sample, train_flow
from tessera.metrics import w2_exact
from tessera.nn import TimeMLP, TimeMLPConfig

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 3000
torch.manual_seed(0)
model = TimeMLP(TimeMLPConfig(dim=2, hidden=256, depth=3))
data = toy2d("eight_gaussians", 20_000, rng=0)
result = train_flow(model, data, FlowMatchingConfig(steps=steps, batch_size=512, lr=2e-3))
x = sample(result.sampling_model, 2000, (2,), generator=1).numpy()
floor = w2_exact(toy2d("eight_gaussians", 2000, rng=1), toy2d("eight_gaussians", 2000, rng=2))
print(
    f"W2 to data {w2_exact(x, toy2d('eight_gaussians', 2000, rng=3)):.3f}, noise floor {floor:.3f}"
)
