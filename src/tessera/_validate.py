"""Shared argument checks that raise tessera errors with clear messages.

They accept NumPy arrays and torch tensors alike (duck typing, so this module does
not import torch).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from tessera.errors import NonFiniteError, ShapeError, UnsupportedError, ValidationError

__all__ = [
    "check_choice",
    "check_finite",
    "check_in_unit_interval",
    "check_ndim",
    "check_positive",
    "check_positive_int",
]


def _is_torch(x: Any) -> bool:
    return type(x).__module__.startswith("torch")


def check_finite(name: str, x: Any) -> None:
    """Raise NonFiniteError if ``x`` holds NaN or infinity.

    Args:
        name: parameter name used in the message.
        x: array, tensor or number.

    Raises:
        NonFiniteError: with the count of non-finite entries.
    """
    if _is_torch(x):
        import torch

        bad = int((~torch.isfinite(x)).sum().item()) if x.is_floating_point() else 0
    else:
        arr = np.asarray(x)
        bad = int((~np.isfinite(arr)).sum()) if np.issubdtype(arr.dtype, np.inexact) else 0
    if bad:
        raise NonFiniteError(f"{name} contains {bad} NaN or infinite value(s); pass finite numbers")


def check_ndim(name: str, x: Any, ndim: int | Iterable[int], *, what: str = "") -> None:
    """Raise ShapeError unless ``x.ndim`` is ``ndim`` (or one of them).

    Args:
        name: parameter name used in the message.
        x: array or tensor.
        ndim: allowed number(s) of dimensions.
        what: a description of the expected layout, e.g. ``"(B, D)"``.

    Raises:
        ShapeError: naming the shape received.
    """
    allowed = (ndim,) if isinstance(ndim, int) else tuple(ndim)
    if x.ndim not in allowed:
        hint = f" {what}" if what else ""
        raise ShapeError(
            f"{name} must have {' or '.join(map(str, allowed))} dimension(s){hint}, "
            f"got shape {tuple(x.shape)}"
        )


def check_positive(name: str, value: float, *, allow_zero: bool = False) -> None:
    """Raise ValidationError unless ``value`` is a finite number > 0 (or >= 0).

    Args:
        name: parameter name used in the message.
        value: the number to check.
        allow_zero: accept 0 as well.

    Raises:
        ValidationError: naming the value received.
    """
    ok = np.isfinite(value) and (value >= 0 if allow_zero else value > 0)
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValidationError(f"{name} must be a finite number {bound}, got {value!r}")


def check_positive_int(name: str, value: Any, *, minimum: int = 1) -> None:
    """Raise ValidationError unless ``value`` is an integer >= ``minimum``.

    Args:
        name: parameter name used in the message.
        value: the value to check.
        minimum: smallest allowed value.

    Raises:
        ValidationError: naming the value received.
    """
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValidationError(f"{name} must be an integer >= {minimum}, got {value!r}")


def check_in_unit_interval(name: str, value: float, *, open_: bool = False) -> None:
    """Raise ValidationError unless ``value`` lies in [0, 1] (or (0, 1)).

    Args:
        name: parameter name used in the message.
        value: the number to check.
        open_: require the open interval.

    Raises:
        ValidationError: naming the value received.
    """
    ok = np.isfinite(value) and ((0 < value < 1) if open_ else (0 <= value <= 1))
    if not ok:
        interval = "(0, 1)" if open_ else "[0, 1]"
        raise ValidationError(f"{name} must lie in {interval}, got {value!r}")


def check_choice(name: str, value: Any, choices: Iterable[Any]) -> None:
    """Raise UnsupportedError unless ``value`` is one of ``choices``.

    Args:
        name: parameter name used in the message.
        value: the value to check.
        choices: the allowed values.

    Raises:
        UnsupportedError: listing the allowed values.
    """
    options = tuple(choices)
    if value not in options:
        raise UnsupportedError(
            f"{name} must be one of {', '.join(map(repr, options))}; got {value!r}"
        )
