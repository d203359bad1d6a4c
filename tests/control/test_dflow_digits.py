"""D-Flow nonlinear control on digits: "make it a 3" with a classifier goal.

The cost is -log p_clf(3 | psi(x0)) of the reward classifier (5 midpoint steps of a
trained digits flow, chi_d regulariser 0.01, per-sample L-BFGS 5 x 20). Outputs are
labelled by the *independent* digits judge, never by the classifier being optimised.
Pass (acceptance 5 of the control issue): >= 90 % judged 3, and the median distance to
the nearest training digit within 1.2x that of plain samples (off-manifold adversarial
images would be far from every training digit).

Measured (seed 11 sources, n = 64): 100 % judged 3, nearest-train median 1.89 against
2.07 for plain 50-step samples (ratio 0.91). With n = 64 and a true rate of 0.98 the
chance of < 90 % is below 1e-3; a method that only fooled the classifier would fail the
judge, and one that left the manifold would fail the distance check.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tessera.control.dflow import classifier_cost, dflow
from tessera.control.evaluate import ode_samples
from tessera.control.rewards import digits_classifier
from tessera.data import digits
from tessera.flows import solve_ode, uniform_grid
from tessera.metrics import digits_judge, nearest_distance

pytestmark = pytest.mark.slow


def test_make_it_a_three_stays_on_the_data_manifold(digits_flow) -> None:
    clf = digits_classifier(seed=0)
    x0 = torch.randn(64, 64, generator=torch.Generator().manual_seed(11))
    res = dflow(
        digits_flow, classifier_cost(clf, 3), x0, ode_steps=5, per_sample=True, max_iter=5,
        inner_iter=20, reg_weight=0.01,
    )  # fmt: skip
    x1 = res.x1.detach().numpy()
    judged = digits_judge(seed=0).predict(x1)
    train_x = np.asarray(digits(seed=0).train_x)
    plain = ode_samples(digits_flow, 1000, (64,), steps=50, seed=3).numpy()
    ratio = np.median(nearest_distance(x1, train_x)) / np.median(nearest_distance(plain, train_x))
    assert (judged == 3).mean() >= 0.9
    assert ratio <= 1.2, ratio
    # the starting samples were mostly not 3s: the control did the work
    with torch.no_grad():
        start = solve_ode(digits_flow, x0, uniform_grid(5), method="midpoint").numpy()
    assert (digits_judge(seed=0).predict(start) == 3).mean() < 0.3
