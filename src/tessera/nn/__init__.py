"""Shared torch building blocks: velocity models, embeddings, EMA and checkpoints.

Every velocity model takes ``forward(x, t, *, y=None)`` with x of shape (B, ...),
t of shape (B,) in [0, 1] (or a scalar) and optional int64 labels y of shape (B,),
and returns a tensor of x's shape. Models are built as ``Model(config)`` from a
frozen config dataclass and saved / loaded with :func:`save_model` /
:func:`load_model` (or ``Model.from_pretrained``).

Example:
    >>> import torch
    >>> from tessera.nn import TimeMLP, TimeMLPConfig
    >>> TimeMLP(TimeMLPConfig(dim=2, hidden=16))(torch.zeros(3, 2), torch.tensor(0.5)).shape
    torch.Size([3, 2])
"""

from __future__ import annotations

from tessera._optional import require

require("torch")  # a clear "pip install 'tessera[flows]'" message when torch is missing

from tessera.nn.checkpoint import (  # noqa: E402
    LoadedModel,
    atomic_write_bytes,
    atomic_write_text,
    load_model,
    load_tensors,
    register_model,
    registered_models,
    save_model,
    save_tensors,
)
from tessera.nn.ema import EMA  # noqa: E402
from tessera.nn.embeddings import ClassEmbedding, TimeEmbedding, sinusoidal_embedding  # noqa: E402
from tessera.nn.mlp import TimeMLP, TimeMLPConfig  # noqa: E402
from tessera.nn.unet import UNet, UNetConfig  # noqa: E402

__all__ = [
    "EMA",
    "ClassEmbedding",
    "LoadedModel",
    "TimeEmbedding",
    "TimeMLP",
    "TimeMLPConfig",
    "UNet",
    "UNetConfig",
    "atomic_write_bytes",
    "atomic_write_text",
    "load_model",
    "load_tensors",
    "register_model",
    "registered_models",
    "save_model",
    "save_tensors",
    "sinusoidal_embedding",
]
