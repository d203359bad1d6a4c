"""A small time-conditioned U-Net velocity model for 8x8 and 28x28 images.

Example:
    >>> import torch
    >>> net = UNet(UNetConfig(image_size=8, base_channels=8))
    >>> net(torch.randn(2, 1, 8, 8), torch.rand(2)).shape
    torch.Size([2, 1, 8, 8])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from tessera._validate import check_positive_int
from tessera.errors import ShapeError, ValidationError
from tessera.nn.checkpoint import _config_from_dict, _config_to_dict, _load_as, register_model
from tessera.nn.embeddings import ClassEmbedding, TimeEmbedding, _time_batch

__all__ = ["UNet", "UNetConfig"]


@dataclass(frozen=True, kw_only=True)
class UNetConfig:
    """Configuration of :class:`UNet`.

    Attributes:
        image_size: height = width of the (square) images; must be divisible by
            ``2 ** (len(channel_mults) - 1)``.
        in_channels: image channels (also the output channels).
        base_channels: channels at full resolution.
        channel_mults: channel multiplier per resolution level; level ``i`` has
            ``base_channels * channel_mults[i]`` channels and resolution
            ``image_size / 2**i``.
        num_res_blocks: ResBlocks per level on the way down (and on the way up).
        time_dim: width of the time (and class) embedding.
        num_classes: number of classes for class conditioning, or ``None``.

    Raises:
        ValidationError: if a size is not a positive integer or ``image_size`` is not
            divisible by ``2 ** (len(channel_mults) - 1)``.
    """

    image_size: int
    in_channels: int = 1
    base_channels: int = 32
    channel_mults: tuple[int, ...] = (1, 2)
    num_res_blocks: int = 1
    time_dim: int = 128
    num_classes: int | None = None

    def __post_init__(self) -> None:
        for name in ("image_size", "in_channels", "base_channels", "num_res_blocks", "time_dim"):
            check_positive_int(name, getattr(self, name))
        if self.num_classes is not None:
            check_positive_int("num_classes", self.num_classes)
        mults = self.channel_mults
        if isinstance(mults, list):
            mults = tuple(mults)
            object.__setattr__(self, "channel_mults", mults)
        if not isinstance(mults, tuple) or not mults:
            raise ValidationError(
                f"channel_mults must be a non-empty tuple of positive ints, got {mults!r}"
            )
        for m in mults:
            check_positive_int("channel_mults entries", m)
        factor = 2 ** (len(mults) - 1)
        if self.image_size % factor:
            raise ValidationError(
                f"image_size={self.image_size} must be divisible by 2**(len(channel_mults)-1)"
                f"={factor} for channel_mults={mults}; use fewer levels or another size"
            )

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-ready dict.

        Returns:
            Dict of field names to values (``channel_mults`` as a tuple).
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> UNetConfig:
        """Build a config from :meth:`to_dict` output (lists become tuples).

        Args:
            d: dict of field names to values.

        Returns:
            The config.

        Raises:
            ValidationError: on unknown or missing keys or invalid values.
        """
        return _config_from_dict(cls, d)


def _groups(channels: int) -> int:
    """Largest divisor of ``channels`` that is at most 8 (GroupNorm groups)."""
    return max(g for g in range(1, 9) if channels % g == 0)


class _ResBlock(nn.Module):
    """GroupNorm-SiLU-conv3x3, + embedding projection, GroupNorm-SiLU-conv3x3, + skip."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int):
        super().__init__()
        self.norm1 = nn.GroupNorm(_groups(c_in), c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, c_out)
        self.norm2 = nn.GroupNorm(_groups(c_out), c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1)
        self.skip = nn.Conv2d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))  # (B, c_out, H, W)
        h = h + self.emb(emb)[:, :, None, None]  # emb: (B, emb_dim) -> (B, c_out, 1, 1)
        h = self.conv2(F.silu(self.norm2(h)))
        return self.skip(x) + h


class _Up(nn.Module):
    """Nearest-neighbour x2 upsampling followed by a 3x3 conv."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class UNet(nn.Module):
    r"""Small U-Net velocity field :math:`v_\theta(x, t, y)` for square images.

    Level ``i`` works at resolution ``image_size / 2**i`` with
    ``base_channels * channel_mults[i]`` channels. Down path: ``num_res_blocks``
    ResBlocks per level, the level output kept as a skip, then a stride-2 3x3 conv
    (except at the last level). Middle: two ResBlocks. Up path, from the last level
    to the first: concatenate the skip, ``num_res_blocks`` ResBlocks, then
    nearest-neighbour upsampling + 3x3 conv (except at level 0). Each ResBlock is
    GroupNorm + SiLU + conv3x3, adds a projection of the embedding, GroupNorm + SiLU
    + conv3x3, plus a (1x1 conv) residual. The embedding is the time embedding plus,
    if ``num_classes`` is set, a class embedding whose index ``num_classes`` is the
    null label (``y=None`` means no label). With the defaults a 28x28 input runs at
    28 -> 14 and 8x8 at 8 -> 4; ``channel_mults=(1, 2, 2)`` adds 7x7 / 2x2 levels.

    Args:
        config: a :class:`UNetConfig`.

    Raises:
        ValidationError: if ``config`` is not a :class:`UNetConfig`.
    """

    def __init__(self, config: UNetConfig):
        super().__init__()
        if not isinstance(config, UNetConfig):
            raise ValidationError(f"config must be a UNetConfig, got {type(config).__name__}")
        self.config = config
        c = config
        chans = [c.base_channels * m for m in c.channel_mults]
        levels = len(chans)
        self.time_embed = TimeEmbedding(c.time_dim)
        self.class_embed = (
            ClassEmbedding(c.num_classes, c.time_dim) if c.num_classes is not None else None
        )
        self.conv_in = nn.Conv2d(c.in_channels, c.base_channels, 3, padding=1)

        self.down = nn.ModuleList()
        self.downsample = nn.ModuleList()
        prev = c.base_channels
        for i, ch in enumerate(chans):
            blocks = []
            for _ in range(c.num_res_blocks):
                blocks.append(_ResBlock(prev, ch, c.time_dim))
                prev = ch
            self.down.append(nn.ModuleList(blocks))
            if i < levels - 1:
                self.downsample.append(nn.Conv2d(ch, ch, 3, stride=2, padding=1))

        deep = chans[-1]
        self.mid = nn.ModuleList([_ResBlock(deep, deep, c.time_dim) for _ in range(2)])

        # up[j] / upsample[j] serve level levels-1-j (deepest first).
        self.up = nn.ModuleList()
        self.upsample = nn.ModuleList()
        for i in reversed(range(levels)):
            ch = chans[i]
            blocks = [_ResBlock(2 * ch, ch, c.time_dim)]
            blocks += [_ResBlock(ch, ch, c.time_dim) for _ in range(c.num_res_blocks - 1)]
            self.up.append(nn.ModuleList(blocks))
            if i > 0:
                self.upsample.append(_Up(ch, chans[i - 1]))

        self.norm_out = nn.GroupNorm(_groups(chans[0]), chans[0])
        self.conv_out = nn.Conv2d(chans[0], c.in_channels, 3, padding=1)

    def _as_images(self, x: Tensor) -> Tensor:
        c = self.config
        C, S = c.in_channels, c.image_size
        if x.ndim == 2 and x.shape[1] == C * S * S:
            return x.reshape(x.shape[0], C, S, S)  # (B, C, H, W)
        if x.ndim == 4 and tuple(x.shape[1:]) == (C, S, S):
            return x
        raise ShapeError(
            f"x must have shape (B, {C}, {S}, {S}) or flat (B, {C * S * S}), got {tuple(x.shape)}"
        )

    def forward(self, x: Tensor, t: Tensor, *, y: Tensor | None = None) -> Tensor:
        """Evaluate the velocity.

        Args:
            x: shape (B, C, H, W) or flat (B, C*H*W), float32, with
                ``C = in_channels`` and ``H = W = image_size``.
            t: shape (B,) or 0-dim (broadcast), float; times in [0, 1].
            y: shape (B,), int64 labels in ``[0, num_classes]`` (``num_classes`` =
                no label), or ``None``; only for a class-conditional model.

        Returns:
            Tensor of x's shape (same layout as the input) and dtype.

        Raises:
            ShapeError: if x does not match the configured image shape or t/y do not
                match the batch.
            ValidationError: if ``y`` is given to an unconditional model or holds bad labels.
        """
        h = self._as_images(x)  # (B, C, H, W)
        B = h.shape[0]
        emb = self.time_embed(_time_batch(t, B, like=h))  # (B, time_dim)
        if self.class_embed is not None:
            emb = emb + self.class_embed(y, batch_size=B)
        elif y is not None:
            raise ValidationError(
                "y was given but the model has num_classes=None; pass y=None or build the "
                "model with UNetConfig(num_classes=...)"
            )
        emb = F.silu(emb)

        h = self.conv_in(h)  # (B, base, H, W)
        skips = []
        for i, blocks in enumerate(self.down):
            for block in blocks:  # type: ignore[attr-defined]  # a ModuleList
                h = block(h, emb)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)  # (B, ch, H/2, W/2)
        for block in self.mid:
            h = block(h, emb)
        for j, blocks in enumerate(self.up):
            h = torch.cat([h, skips.pop()], dim=1)  # (B, 2 ch, h, w)
            for block in blocks:  # type: ignore[attr-defined]  # a ModuleList
                h = block(h, emb)
            if j < len(self.upsample):
                h = self.upsample[j](h)  # (B, ch_prev, 2h, 2w)
        h = self.conv_out(F.silu(self.norm_out(h)))  # (B, C, H, W)
        return h.reshape(x.shape)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], *, map_location: str = "cpu"
    ) -> UNet:
        """Load a UNet checkpoint written by :func:`tessera.nn.save_model`.

        Args:
            directory: the checkpoint directory.
            map_location: device for the weights.

        Returns:
            The model, in eval mode.

        Raises:
            ValidationError: if the checkpoint is missing, malformed or holds another
                model class.
        """
        return _load_as(cls, directory, map_location=map_location)


register_model("UNet", UNet, UNetConfig)
