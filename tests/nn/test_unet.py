from __future__ import annotations

import json

import pytest
import torch

from tessera.errors import ShapeError, ValidationError
from tessera.nn import UNet, UNetConfig

CASES = [
    pytest.param(8, (1, 2), 1, id="8x8"),
    pytest.param(28, (1, 2), 1, id="28x28"),
    pytest.param(28, (1, 2, 2), 2, id="28x28-3levels-2ch"),
]


def _small(image_size: int, mults: tuple[int, ...], channels: int, **kw: object) -> UNet:
    return UNet(
        UNetConfig(
            image_size=image_size,
            in_channels=channels,
            base_channels=8,
            channel_mults=mults,
            time_dim=16,
            **kw,  # type: ignore[arg-type]
        )
    )


@pytest.mark.parametrize(("size", "mults", "channels"), CASES)
@pytest.mark.parametrize("num_classes", [None, 10])
def test_output_shape_image_and_flat(
    size: int, mults: tuple[int, ...], channels: int, num_classes: int | None, seed: int
) -> None:
    torch.manual_seed(seed)
    net = _small(size, mults, channels, num_classes=num_classes)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(3, channels, size, size, generator=g)
    t = torch.rand(3, generator=g)
    y = None if num_classes is None else torch.tensor([0, 9, 10])
    out = net(x, t, y=y)
    assert out.shape == x.shape
    flat = net(x.flatten(1), t, y=y)
    assert flat.shape == (3, channels * size * size)
    # the flat layout is the same function as the image layout
    torch.testing.assert_close(flat, out.flatten(1), rtol=1e-5, atol=1e-6)


def test_scalar_t_and_time_dependence(seed: int) -> None:
    torch.manual_seed(seed)
    net = _small(8, (1, 2), 1)
    x = torch.randn(4, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    assert torch.equal(net(x, torch.tensor(0.5)), net(x, torch.full((4,), 0.5)))
    a, b = net(x, torch.full((4,), 0.1)), net(x, torch.full((4,), 0.9))
    assert ((a - b).flatten(1).abs().amax(dim=1) > 0).all()


def test_labels_change_output_and_none_is_null(seed: int) -> None:
    torch.manual_seed(seed)
    net = _small(8, (1, 2), 1, num_classes=3)
    x = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(seed))
    t = torch.full((2,), 0.5)
    assert torch.equal(net(x, t), net(x, t, y=torch.tensor([3, 3])))
    assert not torch.equal(net(x, t, y=torch.tensor([0, 0])), net(x, t, y=torch.tensor([1, 1])))


@pytest.mark.parametrize(("size", "mults"), [(8, (1, 2)), (28, (1, 2, 2))])
def test_gradient_reaches_every_parameter(size: int, mults: tuple[int, ...], seed: int) -> None:
    torch.manual_seed(seed)
    net = _small(size, mults, 1, num_classes=4, num_res_blocks=2)
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(5, 1, size, size, generator=g)
    net(x, torch.rand(5, generator=g), y=torch.arange(5)).pow(2).mean().backward()
    for name, p in net.named_parameters():
        assert p.grad is not None, name
        assert p.grad.abs().sum() > 0, name


def test_batch_rows_are_independent(seed: int) -> None:
    # GroupNorm normalises per sample, so one image's output ignores the others
    torch.manual_seed(seed)
    net = _small(8, (1, 2), 1)
    g = torch.Generator().manual_seed(seed)
    x, t = torch.randn(4, 1, 8, 8, generator=g), torch.rand(4, generator=g)
    torch.testing.assert_close(net(x, t)[1:2], net(x[1:2], t[1:2]), rtol=1e-5, atol=1e-6)


def test_bad_inputs() -> None:
    net = _small(8, (1, 2), 1)
    t = torch.zeros(2)
    bad_shapes = [(2, 2, 8, 8), (2, 1, 4, 4), (2, 63), (2, 8, 8)]
    for bad in map(torch.zeros, bad_shapes):
        with pytest.raises(ShapeError, match=r"\(B, 1, 8, 8\)"):
            net(bad, t)
    with pytest.raises(ShapeError, match="t must have shape"):
        net(torch.zeros(2, 64), torch.zeros(2, 2))
    with pytest.raises(ValidationError, match="num_classes=None"):
        net(torch.zeros(2, 64), t, y=torch.zeros(2, dtype=torch.long))


def test_config_validation_and_round_trip() -> None:
    with pytest.raises(ValidationError, match="divisible"):
        UNetConfig(image_size=28, channel_mults=(1, 2, 2, 2))
    with pytest.raises(ValidationError, match="channel_mults"):
        UNetConfig(image_size=8, channel_mults=())
    with pytest.raises(ValidationError, match="channel_mults"):
        UNetConfig(image_size=8, channel_mults=(1, 0))
    with pytest.raises(ValidationError, match="image_size"):
        UNetConfig(image_size=0)
    cfg = UNetConfig(image_size=28, channel_mults=(1, 2, 2), num_classes=10)
    assert UNetConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg  # lists -> tuples
    assert UNetConfig(image_size=8, channel_mults=[1, 2]).channel_mults == (1, 2)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="UNetConfig"):
        UNet(cfg.to_dict())  # type: ignore[arg-type]
