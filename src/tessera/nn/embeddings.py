"""Time and class embeddings shared by the velocity models.

Flow-matching times live in ``[0, 1]``. A sinusoidal embedding with periods up to
``max_period`` would barely distinguish ``t = 0.30`` from ``t = 0.31`` if fed raw
times, so :func:`sinusoidal_embedding` multiplies ``t`` by ``scale = 1000`` first (the
DDPM convention of integer steps 0..1000), which makes the fastest frequency resolve
time differences of about 1e-3.

Example:
    >>> import torch
    >>> sinusoidal_embedding(torch.tensor([0.0, 0.5]), 8).shape
    torch.Size([2, 8])
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from tessera._validate import check_positive, check_positive_int
from tessera.errors import ShapeError, ValidationError

__all__ = ["ClassEmbedding", "TimeEmbedding", "sinusoidal_embedding"]

TIME_SCALE = 1000.0


def sinusoidal_embedding(
    t: Tensor, dim: int, *, max_period: float = 10000.0, scale: float = TIME_SCALE
) -> Tensor:
    r"""Transformer-style sinusoidal features of scalar times.

    With ``half = dim // 2`` and frequencies
    :math:`\omega_k = \text{max\_period}^{-k/\text{half}}`, :math:`k < \text{half}`,
    the output is :math:`[\cos(s t \omega_k), \sin(s t \omega_k)]` with
    :math:`s` = ``scale`` (1000 by default, so times in [0, 1] are resolved to about
    1e-3); an odd ``dim`` gets one trailing zero column.

    Args:
        t: shape (B,), floating (integers are converted to float32); times, usually in [0, 1].
        dim: embedding width, >= 1.
        max_period: longest period of the features, > 0.
        scale: factor applied to ``t`` before the sinusoids, > 0.

    Returns:
        Tensor of shape (B, dim), the dtype of ``t`` (float32 for integer ``t``).

    Raises:
        ShapeError: if ``t`` is not one-dimensional.
        ValidationError: if ``dim``, ``max_period`` or ``scale`` are out of range.

    Example:
        >>> import torch
        >>> e = sinusoidal_embedding(torch.zeros(3), 4)
        >>> e.tolist()[0]
        [1.0, 1.0, 0.0, 0.0]
    """
    check_positive_int("dim", dim)
    check_positive("max_period", max_period)
    check_positive("scale", scale)
    if t.ndim != 1:
        raise ShapeError(f"t must have shape (B,), got {tuple(t.shape)}; flatten it first")
    if not t.is_floating_point():
        t = t.to(torch.get_default_dtype())
    half = dim // 2
    k = torch.arange(half, device=t.device, dtype=t.dtype)
    freqs = torch.exp(-math.log(max_period) * k / max(half, 1))  # (half,)
    args = (scale * t)[:, None] * freqs[None, :]  # (B, half)
    emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)  # (B, 2 * half)
    if dim % 2:
        emb = torch.cat([emb, emb.new_zeros(emb.shape[0], 1)], dim=-1)  # (B, dim)
    return emb


class TimeEmbedding(nn.Module):
    """Sinusoidal time features followed by a two-layer MLP with SiLU.

    ``t -> sinusoidal_embedding(t, freq_dim) -> Linear(freq_dim, dim) -> SiLU ->
    Linear(dim, dim)``.

    Args:
        dim: output width, >= 1.
        freq_dim: width of the sinusoidal features (defaults to ``dim``).
        max_period: passed to :func:`sinusoidal_embedding`.

    Raises:
        ValidationError: if a width is not a positive integer.

    Example:
        >>> import torch
        >>> TimeEmbedding(16)(torch.rand(5)).shape
        torch.Size([5, 16])
    """

    def __init__(self, dim: int, *, freq_dim: int | None = None, max_period: float = 10000.0):
        super().__init__()
        check_positive_int("dim", dim)
        freq_dim = dim if freq_dim is None else freq_dim
        check_positive_int("freq_dim", freq_dim)
        check_positive("max_period", max_period)
        self.dim = dim
        self.freq_dim = freq_dim
        self.max_period = float(max_period)
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        """Embed times.

        Args:
            t: shape (B,), floating; times in [0, 1].

        Returns:
            Tensor of shape (B, dim), the dtype of the MLP weights.

        Raises:
            ShapeError: if ``t`` is not one-dimensional.
        """
        w = self.mlp[0].weight
        assert isinstance(w, Tensor)  # internal invariant: the first layer is a Linear
        feats = sinusoidal_embedding(t.to(w.dtype), self.freq_dim, max_period=self.max_period)
        return self.mlp(feats)


class ClassEmbedding(nn.Module):
    """Learned class embedding with an extra "no label" row for classifier-free guidance.

    The table has ``num_classes + 1`` rows; index ``num_classes`` is the null label,
    used for unconditional predictions (``y=None``) and for label dropout in
    training.

    Args:
        num_classes: number of real classes, >= 1.
        dim: embedding width, >= 1.

    Raises:
        ValidationError: if ``num_classes`` or ``dim`` is not a positive integer.

    Example:
        >>> import torch
        >>> emb = ClassEmbedding(10, 4)
        >>> emb(None, batch_size=3).shape, emb.null_index
        (torch.Size([3, 4]), 10)
    """

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        check_positive_int("num_classes", num_classes)
        check_positive_int("dim", dim)
        self.num_classes = num_classes
        self.embedding = nn.Embedding(num_classes + 1, dim)

    @property
    def null_index(self) -> int:
        """int: the label index meaning "no label" (equal to ``num_classes``)."""
        return self.num_classes

    def forward(self, y: Tensor | None, *, batch_size: int) -> Tensor:
        """Embed labels; ``None`` embeds the null label for the whole batch.

        Args:
            y: shape (B,), integer labels in ``[0, num_classes]`` (``num_classes`` is
                the null label), or ``None``.
            batch_size: ``B``, used to check ``y`` and to build the null batch.

        Returns:
            Tensor of shape (B, dim), float32 (the table's dtype).

        Raises:
            ShapeError: if ``y`` is not of shape (batch_size,).
            ValidationError: if ``y`` is not an integer tensor or has labels out of range.
        """
        w = self.embedding.weight
        if y is None:
            idx = torch.full((batch_size,), self.num_classes, dtype=torch.long, device=w.device)
            return self.embedding(idx)
        if not isinstance(y, Tensor):
            raise ValidationError(
                f"y must be an int64 tensor of shape (B,), got {type(y).__name__}"
            )
        if y.shape != (batch_size,):
            raise ShapeError(
                f"y must have shape ({batch_size},) to match x's batch, got {tuple(y.shape)}"
            )
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise ValidationError(f"y must hold integer class labels (int64), got dtype {y.dtype}")
        if batch_size > 0:
            lo, hi = torch.aminmax(y)
            if int(lo) < 0 or int(hi) > self.num_classes:
                raise ValidationError(
                    f"y must hold labels in [0, {self.num_classes}] (index {self.num_classes} "
                    f"= no label), got values in [{int(lo)}, {int(hi)}]"
                )
        return self.embedding(y.to(device=w.device, dtype=torch.long))


def _time_batch(t: Tensor | float, batch_size: int, *, like: Tensor) -> Tensor:
    """Return ``t`` as shape (B,) with the dtype and device of ``like``.

    Accepts a Python number, a 0-dim tensor (broadcast to the batch), a (B,) tensor
    or a (B, 1) tensor.
    """
    if not isinstance(t, Tensor):
        t = torch.as_tensor(t)
    if t.ndim == 0:
        t = t.expand(batch_size)  # (B,)
    elif t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]  # (B,)
    if t.shape != (batch_size,):
        raise ShapeError(
            f"t must have shape ({batch_size},) (or be a scalar) to match x's batch, "
            f"got {tuple(t.shape)}"
        )
    return t.to(device=like.device, dtype=like.dtype)
