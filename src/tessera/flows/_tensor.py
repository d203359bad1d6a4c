"""Small tensor helpers shared by the flows modules."""

from __future__ import annotations

import torch
from torch import Tensor

from tessera._validate import check_finite
from tessera.errors import ShapeError, ValidationError

__all__ = ["as_time", "expand_like"]


def as_time(t: Tensor | float, x: Tensor, *, name: str = "t", check_range: bool = True) -> Tensor:
    """Return ``t`` as a tensor of shape (B,) on x's device and dtype.

    Args:
        t: a float, a 0-dim tensor, or a tensor of shape (B,), times in [0, 1].
        x: the state, shape (B, ...); fixes B, device and dtype.
        name: parameter name for error messages.
        check_range: raise if any time lies outside [0, 1].

    Returns:
        Tensor of shape (B,).

    Raises:
        ShapeError: if ``t`` is neither a scalar nor of shape (B,).
        NonFiniteError: if ``t`` holds NaN.
        ValidationError: if a time is outside [0, 1].
    """
    if not isinstance(t, Tensor):
        t = torch.tensor(float(t), dtype=x.dtype, device=x.device)
    else:
        t = t.to(device=x.device, dtype=x.dtype if x.is_floating_point() else t.dtype)
    if t.ndim == 0:
        t = t.expand(x.shape[0])
    elif t.ndim != 1 or t.shape[0] != x.shape[0]:
        raise ShapeError(
            f"{name} must be a scalar or have shape (B,) = ({x.shape[0]},), got {tuple(t.shape)}"
        )
    if check_range:
        check_finite(name, t)
        if bool(((t < 0) | (t > 1)).any()):
            raise ValidationError(
                f"{name} must lie in [0, 1] (noise at 0, data at 1), got values in "
                f"[{t.min().item():.4g}, {t.max().item():.4g}]"
            )
    return t


def expand_like(t: Tensor, x: Tensor) -> Tensor:
    """Reshape a (B,) tensor to (B, 1, ..., 1) so that it broadcasts against ``x``.

    Args:
        t: shape (B,).
        x: shape (B, ...).

    Returns:
        ``t`` viewed with x.ndim dimensions.

    Example:
        >>> expand_like(torch.ones(3), torch.zeros(3, 4, 5)).shape
        torch.Size([3, 1, 1])
    """
    return t.reshape(t.shape[0], *([1] * (x.ndim - 1)))
