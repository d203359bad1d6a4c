"""Ready-made training set-ups for the bundled data sets (used by the CLI and the demo).

Each data set gets a default velocity network and settings sized for a 2-core CPU:
an MLP for the 2-D toys and the 8x8 digits, a small U-Net for 28x28 MNIST-5k.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
from torch import nn

from tessera._validate import check_choice
from tessera.data import IMAGE_DATASET_NAMES, TOY2D_NAMES, digits, mnist5k, toy2d
from tessera.flows.training import FlowMatchingConfig, TrainResult, train_flow
from tessera.nn import TimeMLP, TimeMLPConfig, UNet, UNetConfig

__all__ = [
    "DATASET_NAMES",
    "TrainingData",
    "default_model",
    "load_flow",
    "load_training_data",
    "train_on",
]

DATASET_NAMES: tuple[str, ...] = (*TOY2D_NAMES, *IMAGE_DATASET_NAMES)
Arch = Literal["auto", "mlp", "unet"]


@dataclass(frozen=True, kw_only=True)
class TrainingData:
    """Training arrays of a bundled data set.

    Attributes:
        name: data set name.
        x: training samples, shape (n, *sample_shape), float32.
        y: labels, shape (n,) int64, or None for the 2-D toys.
        sample_shape: shape of one sample as the model takes it.
        image_shape: (H, W) for image sets, None otherwise.
    """

    name: str
    x: np.ndarray
    y: np.ndarray | None
    sample_shape: tuple[int, ...]
    image_shape: tuple[int, int] | None


def load_training_data(name: str, *, n_toy: int = 20_000, seed: int = 0) -> TrainingData:
    """Load the training split of a bundled data set.

    Args:
        name: one of :data:`DATASET_NAMES`.
        n_toy: number of samples drawn for a 2-D toy set.
        seed: seed of the toy sample / the image train-test split.

    Returns:
        A :class:`TrainingData`.

    Raises:
        UnsupportedError: for an unknown name.
    """
    check_choice("data", name, DATASET_NAMES)
    if name in TOY2D_NAMES:
        x = toy2d(name, n_toy, rng=seed).astype(np.float32)
        return TrainingData(name=name, x=x, y=None, sample_shape=(2,), image_shape=None)
    ds = digits(seed=seed) if name == "digits" else mnist5k(seed=seed)
    return TrainingData(
        name=name,
        x=np.asarray(ds.train_x, dtype=np.float32),
        y=np.asarray(ds.train_y),
        sample_shape=(int(np.prod(ds.image_shape)),),
        image_shape=(int(ds.image_shape[0]), int(ds.image_shape[1])),
    )


def default_model(
    name: str, *, arch: Arch = "auto", num_classes: int | None = None
) -> tuple[nn.Module, FlowMatchingConfig]:
    """The default network and training settings for a bundled data set.

    Args:
        name: one of :data:`DATASET_NAMES`.
        arch: ``"mlp"``, ``"unet"`` (image sets only) or ``"auto"`` (MLP for toys and
            digits, U-Net for MNIST-5k).
        num_classes: make the network class-conditional with this many classes.

    Returns:
        ``(model, config)``; the config holds the recommended steps, batch and lr.

    Raises:
        UnsupportedError: unknown data set or arch, or a U-Net for a 2-D toy set.
    """
    check_choice("data", name, DATASET_NAMES)
    check_choice("arch", arch, ("auto", "mlp", "unet"))
    if name in TOY2D_NAMES:
        if arch == "unet":
            check_choice("arch (for 2-D toy data)", arch, ("auto", "mlp"))
        mlp = TimeMLP(TimeMLPConfig(dim=2, hidden=256, depth=3, num_classes=num_classes))
        return mlp, FlowMatchingConfig(steps=3000, batch_size=512, lr=2e-3)
    side = 8 if name == "digits" else 28
    if arch == "unet" or (arch == "auto" and name == "mnist5k"):
        mults = (1, 2) if side == 8 else (1, 2, 2) if side % 4 == 0 else (1, 2)
        unet = UNet(
            UNetConfig(
                image_size=side, base_channels=32, channel_mults=mults, num_classes=num_classes
            )
        )
        return unet, FlowMatchingConfig(steps=4000, batch_size=64, lr=1e-3)
    mlp = TimeMLP(
        TimeMLPConfig(dim=side * side, hidden=512, depth=3, time_dim=128, num_classes=num_classes)
    )
    return mlp, FlowMatchingConfig(steps=6000, batch_size=256, lr=1e-3)


def train_on(
    name: str,
    *,
    arch: Arch = "auto",
    class_conditional: bool = False,
    seed: int = 0,
    **overrides: Any,
) -> tuple[TrainResult, TrainingData]:
    """Train the default flow on a bundled data set.

    Args:
        name: one of :data:`DATASET_NAMES`.
        arch: see :func:`default_model`.
        class_conditional: condition on labels (image sets only), with CFG dropout.
        seed: seed of the data and of training.
        **overrides: fields of :class:`FlowMatchingConfig` (``steps``, ``out_dir`` ...).

    Returns:
        ``(result, data)``; with ``out_dir`` the final model is written to
        ``out_dir/model`` with the facts ``tessera flows sample`` needs.

    Raises:
        UnsupportedError: unknown data set or arch.
        ValidationError: class conditioning on a toy set, or bad overrides.
    """
    import torch

    data = load_training_data(name, seed=seed)
    if class_conditional and data.y is None:
        from tessera.errors import ValidationError

        raise ValidationError(f"class_conditional needs labels; data set {name!r} has none")
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # initial weights only; training uses its own Generator
        model, config = default_model(
            name, arch=arch, num_classes=10 if class_conditional else None
        )
    config = replace(config, seed=seed, **overrides)
    x = data.x
    if isinstance(model, UNet):
        h, w = data.image_shape or (0, 0)
        x = x.reshape(-1, 1, h, w)  # (n, 1, H, W)
    meta = {
        "dataset": name,
        "sample_shape": list(x.shape[1:]),
        "image_shape": list(data.image_shape) if data.image_shape else None,
        "class_conditional": class_conditional,
    }
    result = train_flow(
        model, x, config, labels=data.y if class_conditional else None, metadata=meta
    )
    return result, data


def load_flow(ckpt: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Load a flow written by :func:`train_on` / ``tessera flows train``.

    Args:
        ckpt: the training output directory (holding ``model/``) or the model directory.

    Returns:
        ``(model, facts)`` with the facts stored at training time (``sample_shape``,
        ``image_shape``, ``dataset``, ``class_conditional``, ``flow``, ``schedule``).

    Raises:
        ValidationError: if no model is found there, or it lacks ``sample_shape``.
    """
    from tessera.errors import ValidationError
    from tessera.nn import load_model

    path = Path(ckpt)
    if (path / "model" / "config.json").exists():
        path = path / "model"
    loaded = load_model(path)
    if "sample_shape" not in loaded.extra:
        raise ValidationError(
            f"{path} holds a model without 'sample_shape'; train it with tessera flows train "
            "or save it with extra={'sample_shape': [...]}"
        )
    return loaded.model, dict(loaded.extra)
