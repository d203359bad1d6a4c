"""Metrics: distances between samples, image quality, and judges of generated images.

``distances`` and ``images`` need only NumPy and SciPy (torch tensors are accepted
by duck typing, never imported). The judges need scikit-learn and are imported
on first use, so ``import tessera.metrics`` stays light.

Example:
    >>> import numpy as np
    >>> from tessera.metrics import w2_exact
    >>> w2_exact(np.zeros((3, 2)), np.ones((3, 2)))  # shift by (1, 1)
    1.4142135623730951
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from tessera.metrics.distances import (
    energy_distance,
    mean_pairwise_distance,
    mmd_rbf,
    nearest_distance,
    sliced_w2,
    tvd,
    w2_exact,
)
from tessera.metrics.images import psnr, ssim

if TYPE_CHECKING:  # pragma: no cover
    from tessera.metrics.judges import DigitsJudge, JudgeReport, digits_judge, mnist5k_judge

__all__ = [
    "DigitsJudge",
    "JudgeReport",
    "digits_judge",
    "energy_distance",
    "mean_pairwise_distance",
    "mmd_rbf",
    "mnist5k_judge",
    "nearest_distance",
    "psnr",
    "sliced_w2",
    "ssim",
    "tvd",
    "w2_exact",
]

_LAZY = {"DigitsJudge", "JudgeReport", "digits_judge", "mnist5k_judge"}


def __getattr__(name: str) -> Any:
    """Import the scikit-learn based judges on first access (PEP 562)."""
    if name in _LAZY:
        return getattr(importlib.import_module("tessera.metrics.judges"), name)
    raise AttributeError(f"module 'tessera.metrics' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _LAZY)
