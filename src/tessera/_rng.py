"""Normalise random-number-generator arguments (Scientific Python SPEC 7)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from tessera.errors import ValidationError

if TYPE_CHECKING:  # pragma: no cover
    import torch

__all__ = ["as_generator", "as_rng"]


def as_rng(rng: int | np.random.Generator | np.random.SeedSequence | None) -> np.random.Generator:
    """Return a NumPy Generator from a seed, a SeedSequence, a Generator or None.

    Args:
        rng: ``None`` (fresh entropy), an ``int`` seed, a ``SeedSequence`` or a
            ``Generator`` (returned unchanged).

    Returns:
        A ``numpy.random.Generator``.

    Raises:
        ValidationError: for any other type (the legacy ``RandomState`` included).

    Example:
        >>> bool(as_rng(0).integers(10) == as_rng(0).integers(10))
        True
    """
    if isinstance(rng, np.random.RandomState):
        raise ValidationError(
            "rng must be None, an int, a SeedSequence or a numpy Generator, got a legacy "
            "RandomState; pass np.random.default_rng(seed) instead"
        )
    if rng is None or isinstance(
        rng, int | np.integer | np.random.SeedSequence | np.random.Generator
    ):
        return np.random.default_rng(rng)
    raise ValidationError(
        f"rng must be None, an int, a SeedSequence or a numpy Generator, got {type(rng).__name__}"
    )


def as_generator(generator: Any, *, device: Any = None) -> torch.Generator:
    """Return a torch Generator from ``None``, an ``int`` seed or a Generator.

    Args:
        generator: ``None`` (seeded from fresh OS entropy), an ``int`` seed, or a
            ``torch.Generator`` (returned unchanged).
        device: device of a newly created generator (default CPU).

    Returns:
        A ``torch.Generator``.

    Raises:
        ValidationError: for any other type.

    Example:
        >>> import torch
        >>> g = as_generator(3)
        >>> torch.equal(torch.randn(2, generator=g), torch.randn(2, generator=as_generator(3)))
        True
    """
    import torch

    if isinstance(generator, torch.Generator):
        return generator
    if generator is None or isinstance(generator, int | np.integer):
        g = torch.Generator(device=device if device is not None else "cpu")
        seed = (
            int(generator)
            if generator is not None
            else int(np.random.SeedSequence().generate_state(1, dtype=np.uint64)[0] >> 1)
        )
        g.manual_seed(seed)
        return g
    raise ValidationError(
        f"generator must be None, an int seed or a torch.Generator, got {type(generator).__name__}"
    )
