"""The tessera error and warning tree.

Every exception the library raises for something a caller can get wrong is a
:class:`TesseraError`. Input problems are :class:`ValidationError`, which also
subclasses :class:`ValueError` so that ``except ValueError`` keeps working.
Messages name the parameter, the value received, what was expected and the fix.

Example:
    >>> from tessera.errors import ValidationError
    >>> try:
    ...     raise ValidationError("steps must be >= 1, got 0; pass a positive integer")
    ... except ValueError as e:
    ...     print(type(e).__name__)
    ValidationError
"""

from __future__ import annotations

__all__ = [
    "NonFiniteError",
    "PrivacyBudgetExceededError",
    "ShapeError",
    "TesseraError",
    "TesseraWarning",
    "TrainingDivergedError",
    "UnsupportedError",
    "ValidationError",
]


class TesseraError(Exception):
    """Base class of every error raised by tessera."""


class ValidationError(TesseraError, ValueError):
    """An argument has a wrong value, type or range."""


class ShapeError(ValidationError):
    """An array or tensor argument has the wrong shape or number of dimensions."""


class NonFiniteError(ValidationError):
    """An input contains NaN or infinity where finite numbers are required."""


class UnsupportedError(TesseraError, ValueError):
    """A choice (method, engine, schedule ...) that tessera does not provide."""


class TrainingDivergedError(TesseraError):
    """Training produced a non-finite loss or weights; the message names the step."""


class PrivacyBudgetExceededError(TesseraError):
    """A release would exceed the declared privacy budget."""


class TesseraWarning(UserWarning):
    """Base class of tessera's own warnings (the test suite turns them into errors)."""
