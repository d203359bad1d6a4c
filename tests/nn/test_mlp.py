from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera.errors import ShapeError, ValidationError
from tessera.nn import TimeEmbedding, TimeMLP, TimeMLPConfig, sinusoidal_embedding

# --------------------------------------------------------------------------- embeddings


def test_sinusoidal_values_at_zero_and_odd_dim() -> None:
    e = sinusoidal_embedding(torch.zeros(2), 7)
    assert e.shape == (2, 7)
    # half = 3: cos(0) = 1 for the first 3 columns, sin(0) = 0, then one zero pad column
    torch.testing.assert_close(e, torch.tensor([[1.0, 1, 1, 0, 0, 0, 0]] * 2))


def test_sinusoidal_matches_formula() -> None:
    t = torch.tensor([0.25, 0.7], dtype=torch.float64)
    e = sinusoidal_embedding(t, 4, max_period=100.0)
    freqs = [1.0, 100.0 ** (-1 / 2)]
    want = [
        [*(math.cos(1000 * s * f) for f in freqs), *(math.sin(1000 * s * f) for f in freqs)]
        for s in (0.25, 0.7)
    ]
    # float64 throughout: rtol 1e-10 as for exact float64 identities
    torch.testing.assert_close(e, torch.tensor(want, dtype=torch.float64), rtol=1e-10, atol=1e-12)


def test_sinusoidal_resolves_close_times() -> None:
    # scale = 1000: times 1e-3 apart differ by ~1 rad in the fastest feature
    e = sinusoidal_embedding(torch.tensor([0.300, 0.301]), 64)
    assert (e[0] - e[1]).abs().max() > 0.4


def test_sinusoidal_bad_t_shape() -> None:
    with pytest.raises(ShapeError, match="t must have shape"):
        sinusoidal_embedding(torch.zeros(3, 1), 8)
    with pytest.raises(ValidationError, match="dim"):
        sinusoidal_embedding(torch.zeros(3), 0)


def test_time_embedding_shape(seed: int) -> None:
    torch.manual_seed(seed)
    assert TimeEmbedding(12, freq_dim=6)(torch.rand(5)).shape == (5, 12)


# --------------------------------------------------------------------------- TimeMLP


def _inputs(shape: tuple[int, ...], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g), torch.rand(shape[0], generator=g)


@pytest.mark.parametrize(
    ("dim", "shape"), [(2, (5, 2)), (64, (5, 1, 8, 8)), (16, (3, 4, 4)), (3, (1, 3))]
)
@pytest.mark.parametrize("num_classes", [None, 10])
def test_output_shape(dim: int, shape: tuple[int, ...], num_classes: int | None, seed: int) -> None:
    torch.manual_seed(seed)
    model = TimeMLP(TimeMLPConfig(dim=dim, hidden=32, depth=2, num_classes=num_classes))
    x, t = _inputs(shape, seed)
    y = None if num_classes is None else torch.arange(shape[0]) % num_classes
    out = model(x, t, y=y)
    assert out.shape == x.shape and out.dtype == x.dtype


@settings(max_examples=15, deadline=None)
@given(
    batch=st.integers(1, 4),
    trailing=st.lists(st.integers(1, 4), min_size=1, max_size=3),
)
def test_output_shape_property(batch: int, trailing: list[int]) -> None:
    dim = math.prod(trailing)
    model = TimeMLP(TimeMLPConfig(dim=dim, hidden=8, depth=1, time_dim=4))
    x = torch.zeros(batch, *trailing)
    assert model(x, torch.full((batch,), 0.5)).shape == x.shape


def test_scalar_t_broadcasts(seed: int) -> None:
    torch.manual_seed(seed)
    model = TimeMLP(TimeMLPConfig(dim=2, hidden=16))
    x, _ = _inputs((4, 2), seed)
    a = model(x, torch.tensor(0.3))
    b = model(x, torch.full((4,), 0.3))
    assert torch.equal(a, b)


def test_zero_init_last_gives_exact_zeros(seed: int) -> None:
    torch.manual_seed(seed)
    model = TimeMLP(TimeMLPConfig(dim=2, num_classes=3, zero_init_last=True))
    x, t = _inputs((8, 2), seed)
    out = model(x, t, y=torch.tensor([0, 1, 2, 3, 0, 1, 2, 3]))
    assert torch.equal(out, torch.zeros_like(x))
    # and the default init is not zero
    assert TimeMLP(TimeMLPConfig(dim=2))(x, t).abs().max() > 0


def test_time_changes_output(seed: int) -> None:
    torch.manual_seed(seed)
    model = TimeMLP(TimeMLPConfig(dim=2, hidden=32))
    x, _ = _inputs((6, 2), seed)
    a = model(x, torch.full((6,), 0.2))
    b = model(x, torch.full((6,), 0.8))
    assert (a - b).abs().min() > 0  # every sample's output depends on t


def test_label_changes_output_and_none_is_null(seed: int) -> None:
    torch.manual_seed(seed)
    model = TimeMLP(TimeMLPConfig(dim=2, hidden=32, num_classes=4))
    x, t = _inputs((6, 2), seed)
    null = torch.full((6,), 4)
    assert torch.equal(model(x, t), model(x, t, y=null))
    a = model(x, t, y=torch.zeros(6, dtype=torch.long))
    b = model(x, t, y=torch.ones(6, dtype=torch.long))
    assert (a - b).abs().min() > 0


@pytest.mark.parametrize("num_classes", [None, 5])
def test_gradient_reaches_every_parameter(num_classes: int | None, seed: int) -> None:
    torch.manual_seed(seed)
    model = TimeMLP(TimeMLPConfig(dim=3, hidden=16, depth=3, num_classes=num_classes))
    x, t = _inputs((16, 3), seed)
    y = None if num_classes is None else torch.arange(16) % (num_classes + 1)
    model(x, t, y=y).pow(2).sum().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_batch_rows_are_independent(seed: int) -> None:
    torch.manual_seed(seed)
    model = TimeMLP(TimeMLPConfig(dim=4, hidden=16))
    x, t = _inputs((5, 4), seed)
    # float32 matmuls of a row alone vs in a batch may differ by a few ulp
    torch.testing.assert_close(model(x, t)[2:3], model(x[2:3], t[2:3]), rtol=1e-5, atol=1e-6)


def test_bad_inputs() -> None:
    model = TimeMLP(TimeMLPConfig(dim=4, hidden=8, num_classes=3))
    x, t = torch.zeros(2, 4), torch.zeros(2)
    with pytest.raises(ShapeError, match="dim=4"):
        model(torch.zeros(2, 5), t)
    with pytest.raises(ShapeError, match="dim=4"):
        model(torch.zeros(4), t)
    with pytest.raises(ShapeError, match="t must have shape"):
        model(x, torch.zeros(3))
    with pytest.raises(ShapeError, match="y must have shape"):
        model(x, t, y=torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValidationError, match="integer"):
        model(x, t, y=torch.zeros(2))
    with pytest.raises(ValidationError, match=r"labels in \[0, 3\]"):
        model(x, t, y=torch.tensor([0, 4]))
    with pytest.raises(ValidationError, match=r"labels in \[0, 3\]"):
        model(x, t, y=torch.tensor([-1, 0]))
    uncond = TimeMLP(TimeMLPConfig(dim=4, hidden=8))
    with pytest.raises(ValidationError, match="num_classes=None"):
        uncond(x, t, y=torch.zeros(2, dtype=torch.long))


def test_config_round_trip_and_validation() -> None:
    cfg = TimeMLPConfig(dim=5, hidden=7, depth=2, time_dim=6, num_classes=3, zero_init_last=True)
    assert TimeMLPConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValidationError, match="unknown"):
        TimeMLPConfig.from_dict({**cfg.to_dict(), "width": 3})
    with pytest.raises(ValidationError, match="missing"):
        TimeMLPConfig.from_dict({"hidden": 3})
    for bad in ({"dim": 0}, {"dim": 2, "depth": 1.5}, {"dim": 2, "num_classes": 0}):
        with pytest.raises(ValidationError):
            TimeMLPConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="TimeMLPConfig"):
        TimeMLP({"dim": 2})  # type: ignore[arg-type]
