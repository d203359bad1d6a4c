from __future__ import annotations

import pytest
import torch
from torch import nn

from tessera.errors import ValidationError
from tessera.nn import EMA


class _Tiny(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(2, 1)
        self.register_buffer("count", torch.zeros(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x)


def _set(model: _Tiny, w: list[float], b: float, count: float) -> None:
    with torch.no_grad():
        model.lin.weight.copy_(torch.tensor([w]))
        model.lin.bias.fill_(b)
        model.count.fill_(count)


def test_ema_math_exact() -> None:
    # All values are dyadic and decay = 0.5, so float32 arithmetic is exact.
    model = _Tiny()
    _set(model, [1.0, -2.0], 0.5, 0.0)
    ema = EMA(model, decay=0.5)
    _set(model, [3.0, 2.0], 1.5, 1.0)
    ema.update(model)
    # shadow = 0.5 * [1, -2, 0.5] + 0.5 * [3, 2, 1.5] = [2, 0, 1]
    _set(model, [-2.0, 4.0], -1.0, 2.0)
    ema.update(model)
    # shadow = 0.5 * [2, 0, 1] + 0.5 * [-2, 4, -1] = [0, 2, 0]
    assert torch.equal(ema.module.lin.weight, torch.tensor([[0.0, 2.0]]))
    assert torch.equal(ema.module.lin.bias, torch.tensor([0.0]))
    assert torch.equal(ema.module.count, torch.tensor(2.0))  # buffers are copied


def test_ema_math_exact_asymmetric_decay() -> None:
    # decay 0.75 tells d from 1 - d; dyadic values keep float32 exact.
    model = _Tiny()
    _set(model, [1.0, -2.0], 0.5, 0.0)
    ema = EMA(model, decay=0.75)
    _set(model, [3.0, 2.0], 1.5, 1.0)
    ema.update(model)
    # shadow = 0.75 * [1, -2, 0.5] + 0.25 * [3, 2, 1.5] = [1.5, -1, 0.75]
    assert torch.equal(ema.module.lin.weight, torch.tensor([[1.5, -1.0]]))
    assert torch.equal(ema.module.lin.bias, torch.tensor([0.75]))


def test_shadow_is_independent_frozen_eval_copy() -> None:
    model = _Tiny().train()
    ema = EMA(model, decay=0.9)
    assert ema.module is not model
    assert not ema.module.training and model.training
    assert all(not p.requires_grad for p in ema.module.parameters())
    assert all(p.requires_grad for p in model.parameters())
    before = ema.module.lin.weight.clone()
    with torch.no_grad():
        model.lin.weight.add_(1.0)
    assert torch.equal(ema.module.lin.weight, before)


def test_decay_zero_copies() -> None:
    model = _Tiny()
    ema = EMA(model, decay=0.0)
    _set(model, [0.3, 0.7], -0.1, 5.0)
    ema.update(model)
    for a, b in zip(ema.module.state_dict().values(), model.state_dict().values(), strict=True):
        assert torch.equal(a, b)


@pytest.mark.parametrize("decay", [-0.1, 1.0, 1.5, float("nan"), True, "0.9", None])
def test_bad_decay(decay: object) -> None:
    with pytest.raises(ValidationError, match="decay"):
        EMA(_Tiny(), decay=decay)  # type: ignore[arg-type]


def test_bad_model() -> None:
    with pytest.raises(ValidationError, match=r"nn\.Module"):
        EMA("model", decay=0.5)  # type: ignore[arg-type]
    ema = EMA(_Tiny(), decay=0.5)
    with pytest.raises(ValidationError, match="do not match"):
        ema.update(nn.Linear(3, 1))


def test_state_dict_round_trip(seed: int) -> None:
    torch.manual_seed(seed)
    ema = EMA(_Tiny(), decay=0.5)
    other = EMA(_Tiny(), decay=0.5)
    other.load_state_dict(ema.state_dict())
    for a, b in zip(ema.state_dict().values(), other.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(ValidationError, match="does not match"):
        other.load_state_dict({"lin.weight": torch.zeros(1, 2)})
