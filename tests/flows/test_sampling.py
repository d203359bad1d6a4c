from __future__ import annotations

import pytest
import torch

from tessera.errors import NonFiniteError, ShapeError, ValidationError
from tessera.flows import CondOT, GaussianMixtureFlow, change_schedule, guided_velocity, sample
from tessera.nn import TimeMLP, TimeMLPConfig


def _model(num_classes: int | None = None) -> TimeMLP:
    torch.manual_seed(0)
    return TimeMLP(TimeMLPConfig(dim=2, hidden=16, depth=1, num_classes=num_classes))


def test_sample_is_seeded_and_batched() -> None:
    m = _model()
    a = sample(m, 10, (2,), steps=3, generator=4, batch_size=3)
    b = sample(m, 10, (2,), steps=3, generator=4, batch_size=10)
    assert a.shape == (10, 2)
    torch.testing.assert_close(a, b)  # batching does not change the result


def test_guidance_formula() -> None:
    m = _model(3)
    x, t = torch.randn(4, 2), torch.rand(4)
    y = torch.tensor([0, 1, 2, 0])
    v = guided_velocity(m, y, 2.0)(x, t)
    expect = 3.0 * m(x, t, y=y) - 2.0 * m(x, t, y=torch.full_like(y, 3))
    torch.testing.assert_close(v, expect)
    torch.testing.assert_close(guided_velocity(m, y)(x, t), m(x, t, y=y))


def test_bad_input() -> None:
    m, mc = _model(), _model(3)
    with pytest.raises(ValidationError, match="n must be"):
        sample(m, 0, (2,))
    with pytest.raises(ValidationError, match=r"y must have shape \(5,\)"):
        sample(mc, 5, (2,), y=torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValidationError, match="needs class labels"):
        guided_velocity(m, None, 1.0)
    with pytest.raises(ValidationError, match="not class-conditional"):
        guided_velocity(m, torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValidationError, match=">= 0"):
        guided_velocity(mc, torch.zeros(2, dtype=torch.long), -1.0)
    with pytest.raises(ValidationError, match=r"\[0, 2\]"):
        guided_velocity(mc, torch.tensor([5]))
    with pytest.raises(ShapeError, match=r"shape"):
        sample(m, 2, (3,))  # model expects 2 features
    v = change_schedule(GaussianMixtureFlow([1.0], [[0.0]], [[[1.0]]]).velocity, CondOT(), CondOT())
    with pytest.raises(NonFiniteError, match="x"):
        v(torch.full((2, 1), float("nan")), torch.full((2,), 0.5))
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        v(torch.zeros(2, 1), torch.full((2,), -0.5))
