"""tilt_report against cases whose answer is known exactly.

Two well-separated 2-D clusters stand for two classes; a judge fitted on them labels
every point correctly, so histograms are exact fractions. With log-weights log(3) on
class 1 and 0 on class 0 and equal class counts in the base, the tilted class
histogram is exactly (1/4, 3/4).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tessera.control.evaluate import ode_samples, tilt_report
from tessera.errors import ValidationError
from tessera.metrics import DigitsJudge, mean_pairwise_distance

N = 300  # base samples per class


@pytest.fixture(scope="module")
def clusters() -> tuple[torch.Tensor, torch.Tensor, DigitsJudge]:
    rng = np.random.default_rng(0)
    x0 = rng.normal([-3.0, -3.0], 0.3, size=(N, 2))
    x1 = rng.normal([3.0, 3.0], 0.3, size=(N, 2))
    X = np.concatenate([x0, x1])
    y = np.repeat([0, 1], N)
    judge = DigitsJudge(hidden_layer_sizes=(8,), max_iter=500).fit(X, y)
    if not (judge.predict(X) == y).all():
        raise RuntimeError("the cluster judge must label every base point correctly")
    return torch.from_numpy(X), torch.from_numpy(y), judge


def _log_weights(y: torch.Tensor) -> torch.Tensor:
    return torch.where(y == 1, torch.tensor(np.log(3.0), dtype=torch.float64), 0.0)


def test_exact_tilt_has_zero_tvd_and_unit_diversity_ratio(clusters) -> None:
    X, y, judge = clusters
    # 100 of class 0 and all 300 of class 1: exactly the (1/4, 3/4) target, and the
    # class-1 samples are the base's, so the within-class diversity ratio is exactly 1
    exact = torch.cat([X[:100], X[N:]])
    collapsed = X[N : N + 1].repeat(200, 1)
    rep = tilt_report(
        X, _log_weights(y), {"exact": exact, "collapsed": collapsed, "base": X},
        target_class=1, judge=judge, train_x=X[::7].numpy() + 0.05,
    )  # fmt: skip
    t = rep["target"]
    assert t["class_histogram"] == pytest.approx([0.25, 0.75], abs=1e-12)
    assert t["ess"] == pytest.approx((N + 3 * N) ** 2 / (N + 9 * N), rel=1e-12)
    assert t["diversity"] == pytest.approx(mean_pairwise_distance(X[N:].numpy()), rel=1e-12)
    m = rep["models"]
    assert m["exact"]["tvd_to_target"] == pytest.approx(0.0, abs=1e-12)
    assert m["exact"]["target_fraction"] == pytest.approx(0.75, abs=1e-12)
    assert m["exact"]["diversity_ratio"] == pytest.approx(1.0, rel=1e-12)
    assert m["collapsed"]["target_fraction"] == pytest.approx(1.0, abs=1e-12)
    assert m["collapsed"]["tvd_to_target"] == pytest.approx(0.25, abs=1e-12)
    assert m["collapsed"]["diversity_ratio"] == 0.0
    assert m["base"]["tvd_to_target"] == pytest.approx(0.25, abs=1e-12)
    assert m["base"]["nearest_train_ratio"] == pytest.approx(1.0, rel=1e-12)


def test_bad_input_is_named(clusters) -> None:
    X, y, judge = clusters
    with pytest.raises(ValidationError, match="log_weights must have shape"):
        tilt_report(X, _log_weights(y)[:-1], {}, target_class=1, judge=judge)
    with pytest.raises(ValidationError, match="target_class=1"):
        tilt_report(X[:N], _log_weights(y)[:N], {}, target_class=1, judge=judge)


def test_ode_samples_of_a_zero_velocity_are_the_source_noise() -> None:
    x = ode_samples(lambda x, t: torch.zeros_like(x), 7, (3,), steps=4, seed=5, batch_size=3)
    ref = torch.randn((3, 3), generator=torch.Generator().manual_seed(5))
    assert x.shape == (7, 3)
    torch.testing.assert_close(x[:3], ref)
