"""Resumable trainer checkpoints: numbered step directories swapped into place atomically.

Every trainer in the project (flow matching, reward fine-tuning) writes its state to
``root/checkpoints/step_XXXXXXXX/`` through :func:`write_step_checkpoint`: the
directory is filled under a temporary name, renamed into place, and only then does
``root/checkpoints/LATEST`` name it, so an interrupted write never leaves a checkpoint
that :func:`latest_checkpoint` would pick. The two newest checkpoints are kept.
Optimizer state travels as safetensors (:func:`optimizer_tensors`) plus JSON.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from tessera.nn.checkpoint import atomic_write_text

__all__ = [
    "latest_checkpoint",
    "load_optimizer",
    "optimizer_tensors",
    "write_step_checkpoint",
]


def optimizer_tensors(opt: torch.optim.Optimizer) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """Split an optimizer's state dict into tensors (for safetensors) and JSON-ready facts.

    Args:
        opt: any torch optimizer.

    Returns:
        ``(tensors, meta)``; give both back to :func:`load_optimizer`.
    """
    sd = opt.state_dict()
    tensors = {}
    for idx, st in sd["state"].items():
        for k, v in st.items():
            tensors[f"state.{idx}.{k}"] = v if isinstance(v, Tensor) else torch.tensor(v)
    return tensors, {"param_groups": sd["param_groups"]}


def load_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, Tensor], meta: dict) -> None:
    """Restore what :func:`optimizer_tensors` produced (other keys in ``tensors`` are ignored).

    Args:
        opt: the optimizer, built over the same parameters.
        tensors: tensors whose keys start with ``state.``.
        meta: the dict holding ``param_groups``.
    """
    state: dict[int, dict[str, Tensor]] = {}
    for key, v in tensors.items():
        if not key.startswith("state."):
            continue
        _, idx, k = key.split(".", 2)
        state.setdefault(int(idx), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def write_step_checkpoint(root: Path, step: int, write: Callable[[Path], None]) -> Path:
    """Write checkpoint ``step`` under ``root/checkpoints`` with ``write(directory)``.

    Args:
        root: the run's output directory.
        step: the step number (names the directory).
        write: fills the (temporary) directory it is given.

    Returns:
        The final checkpoint directory.
    """
    ckdir = root / "checkpoints"
    ckdir.mkdir(parents=True, exist_ok=True)
    name = f"step_{step:08d}"
    tmp = ckdir / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        write(tmp)
        final = ckdir / name
        shutil.rmtree(final, ignore_errors=True)
        os.rename(tmp, final)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    atomic_write_text(ckdir / "LATEST", name)
    for old in sorted(p for p in ckdir.glob("step_*") if p.name != name)[:-1]:
        shutil.rmtree(old, ignore_errors=True)  # keep the latest two
    return final


def latest_checkpoint(root: Path) -> Path | None:
    """The directory ``root/checkpoints/LATEST`` names, or None when there is none.

    Args:
        root: the run's output directory.

    Returns:
        A path or None.
    """
    latest = root / "checkpoints" / "LATEST"
    if not latest.exists():
        return None
    return root / "checkpoints" / latest.read_text().strip()
