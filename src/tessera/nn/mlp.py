"""A time-conditioned MLP velocity model for vector data (2-D toys, flattened images).

Example:
    >>> import torch
    >>> model = TimeMLP(TimeMLPConfig(dim=2, hidden=32, depth=2))
    >>> model(torch.randn(4, 2), torch.rand(4)).shape
    torch.Size([4, 2])
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

from torch import Tensor, nn

from tessera._validate import check_positive_int
from tessera.errors import ShapeError, ValidationError
from tessera.nn.checkpoint import _config_from_dict, _config_to_dict, _load_as, register_model
from tessera.nn.embeddings import ClassEmbedding, TimeEmbedding, _time_batch

__all__ = ["TimeMLP", "TimeMLPConfig"]


@dataclass(frozen=True, kw_only=True)
class TimeMLPConfig:
    """Configuration of :class:`TimeMLP`.

    Attributes:
        dim: data dimension ``D`` (the product of x's trailing dims).
        hidden: width of the hidden layers.
        depth: number of hidden layers (each modulated by the time/class embedding).
        time_dim: width of the time (and class) embedding.
        num_classes: number of classes for class conditioning, or ``None`` for an
            unconditional model.
        zero_init_last: zero the last Linear so that the model outputs exactly 0 at init.

    Raises:
        ValidationError: if a size is not a positive integer.
    """

    dim: int
    hidden: int = 256
    depth: int = 3
    time_dim: int = 64
    num_classes: int | None = None
    zero_init_last: bool = False

    def __post_init__(self) -> None:
        for name in ("dim", "hidden", "depth", "time_dim"):
            check_positive_int(name, getattr(self, name))
        if self.num_classes is not None:
            check_positive_int("num_classes", self.num_classes)
        if not isinstance(self.zero_init_last, bool):
            raise ValidationError(f"zero_init_last must be a bool, got {self.zero_init_last!r}")

    def to_dict(self) -> dict[str, Any]:
        """Return the config as a JSON-ready dict.

        Returns:
            Dict of field names to values.
        """
        return _config_to_dict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TimeMLPConfig:
        """Build a config from :meth:`to_dict` output.

        Args:
            d: dict of field names to values.

        Returns:
            The config.

        Raises:
            ValidationError: on unknown or missing keys or invalid values.
        """
        return _config_from_dict(cls, d)


class TimeMLP(nn.Module):
    r"""MLP velocity field :math:`v_\theta(x, t, y)` with FiLM time/class conditioning.

    Architecture: ``x -> Linear(D, hidden)``, then ``depth`` hidden layers, each
    ``h <- SiLU(h * (1 + scale_i) + shift_i)`` followed (except the last) by
    ``Linear(hidden, hidden)``, and finally ``Linear(hidden, D)``. The per-layer
    ``(scale_i, shift_i)`` come from ``Linear(SiLU(e))`` where ``e`` is the time
    embedding plus (if ``num_classes`` is set) the class embedding. Class index
    ``num_classes`` is the null label used for classifier-free guidance, and
    ``y=None`` means "no label" for the whole batch.

    x may have any trailing shape whose product is ``dim``; the output has x's shape.

    Args:
        config: a :class:`TimeMLPConfig`.

    Raises:
        ValidationError: if ``config`` is not a :class:`TimeMLPConfig`.
    """

    def __init__(self, config: TimeMLPConfig):
        super().__init__()
        if not isinstance(config, TimeMLPConfig):
            raise ValidationError(f"config must be a TimeMLPConfig, got {type(config).__name__}")
        self.config = config
        c = config
        self.time_embed = TimeEmbedding(c.time_dim)
        self.class_embed = (
            ClassEmbedding(c.num_classes, c.time_dim) if c.num_classes is not None else None
        )
        self.cond_act = nn.SiLU()
        self.inp = nn.Linear(c.dim, c.hidden)
        self.films = nn.ModuleList(nn.Linear(c.time_dim, 2 * c.hidden) for _ in range(c.depth))
        self.hiddens = nn.ModuleList(nn.Linear(c.hidden, c.hidden) for _ in range(c.depth - 1))
        self.act = nn.SiLU()
        self.out = nn.Linear(c.hidden, c.dim)
        if c.zero_init_last:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: Tensor, t: Tensor, *, y: Tensor | None = None) -> Tensor:
        """Evaluate the velocity.

        Args:
            x: shape (B, ...) with ``prod(...) == dim``, float32.
            t: shape (B,) or 0-dim (broadcast), float; times in [0, 1].
            y: shape (B,), int64 labels in ``[0, num_classes]`` (``num_classes`` =
                no label), or ``None``; only for a class-conditional model.

        Returns:
            Tensor of x's shape and dtype.

        Raises:
            ShapeError: if x's trailing dims do not multiply to ``dim`` or t/y do not
                match the batch.
            ValidationError: if ``y`` is given to an unconditional model or holds bad labels.
        """
        if x.ndim < 2 or math.prod(x.shape[1:]) != self.config.dim:
            raise ShapeError(
                f"x must have shape (B, ...) with trailing dims multiplying to dim="
                f"{self.config.dim}, got {tuple(x.shape)}"
            )
        B = x.shape[0]
        h = x.reshape(B, self.config.dim)  # (B, D)
        emb = self.time_embed(_time_batch(t, B, like=h))  # (B, time_dim)
        if self.class_embed is not None:
            emb = emb + self.class_embed(y, batch_size=B)
        elif y is not None:
            raise ValidationError(
                "y was given but the model has num_classes=None; pass y=None or build the "
                "model with TimeMLPConfig(num_classes=...)"
            )
        emb = self.cond_act(emb)
        h = self.inp(h)  # (B, hidden)
        for i, film in enumerate(self.films):
            scale, shift = film(emb).chunk(2, dim=-1)  # (B, hidden) each
            h = self.act(h * (1 + scale) + shift)
            if i < len(self.hiddens):
                h = self.hiddens[i](h)
        return self.out(h).reshape(x.shape)  # (B, ...)

    @classmethod
    def from_pretrained(
        cls, directory: str | os.PathLike[str], *, map_location: str = "cpu"
    ) -> TimeMLP:
        """Load a TimeMLP checkpoint written by :func:`tessera.nn.save_model`.

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


register_model("TimeMLP", TimeMLP, TimeMLPConfig)
