r"""Flow-matching training: the conditional path loss, EMA, CFG dropout, checkpoints, resume.

The loss is the conditional flow-matching regression on an affine path
(Lipman et al. 2023):

.. math::

    L(\theta) = E_{t \sim U[0,1],\, x_0 \sim N(0,I),\, x_1 \sim \text{data}}
        \big\| v_\theta(\alpha_t x_1 + \beta_t x_0, t) - (\dot\alpha_t x_1 + \dot\beta_t x_0) \big\|^2,

optionally with minibatch-OT coupling of (x_0, x_1) (Tong et al., Pooladian et al.),
which straightens the learned flow. All randomness (batches, times, noise, label
dropout) comes from one torch Generator seeded by ``config.seed`` whose state is saved
in every checkpoint, so a resumed run reproduces the uninterrupted one bit for bit.

Checkpoints (every ``checkpoint_every`` steps) live in
``out_dir/checkpoints/step_XXXXXXXX/`` (model, EMA, optimizer and trainer state;
safetensors + JSON) and are swapped into place atomically; ``out_dir/model/`` holds
the final EMA weights for :func:`tessera.nn.load_model` and ``tessera flows sample``.
"""

from __future__ import annotations

import json
import logging
import math
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import Tensor, nn

from tessera._optional import require
from tessera._validate import (
    check_choice,
    check_finite,
    check_in_unit_interval,
    check_positive,
    check_positive_int,
)
from tessera.errors import ShapeError, TesseraWarning, TrainingDivergedError, ValidationError
from tessera.flows.schedules import Schedule, schedule_from_dict
from tessera.nn import EMA, atomic_write_text, load_tensors, save_model, save_tensors
from tessera.nn.checkpoint import load_model
from tessera.nn.trainer_state import (
    latest_checkpoint,
    load_optimizer,
    optimizer_tensors,
    write_step_checkpoint,
)

__all__ = ["FlowMatchingConfig", "TrainResult", "flow_matching_loss", "train_flow"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class FlowMatchingConfig:
    """Settings of :func:`train_flow`.

    Attributes:
        steps: optimiser steps.
        batch_size: minibatch size (drawn with replacement).
        lr: AdamW learning rate.
        weight_decay: AdamW weight decay.
        lr_schedule: ``"constant"`` or ``"cosine"`` (decay to 10 % of ``lr``).
        grad_clip: max gradient norm, or None for no clipping.
        ema_decay: EMA decay of the weights (0 disables the EMA copy).
        schedule: path name (``"cond_ot"``, ``"vp"``, ``"cosine"``).
        coupling: ``"independent"`` or ``"minibatch_ot"`` pairing of noise and data.
        cfg_dropout: probability of dropping the label (classifier-free guidance).
        checkpoint_every: steps between checkpoints (0: none).
        out_dir: directory for checkpoints and the final model (None: nothing written).
        resume: continue from the latest checkpoint in ``out_dir`` if there is one.
        seed: seed of the training Generator.
        log_every: steps between history entries.
        progress: show a progress bar on stderr.
    """

    steps: int = 5000
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    grad_clip: float | None = 1.0
    ema_decay: float = 0.999
    schedule: str = "cond_ot"
    coupling: Literal["independent", "minibatch_ot"] = "independent"
    cfg_dropout: float = 0.1
    checkpoint_every: int = 0
    out_dir: str | None = None
    resume: bool = False
    seed: int = 0
    log_every: int = 50
    progress: bool = True

    def __post_init__(self) -> None:
        check_positive_int("steps", self.steps)
        check_positive_int("batch_size", self.batch_size)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        if not 0.0 <= self.ema_decay < 1.0:
            raise ValidationError(f"ema_decay must lie in [0, 1), got {self.ema_decay}")
        schedule_from_dict(self.schedule)  # raises UnsupportedError for unknown names
        check_choice("coupling", self.coupling, ("independent", "minibatch_ot"))
        check_in_unit_interval("cfg_dropout", self.cfg_dropout)
        check_positive_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_positive_int("log_every", self.log_every)
        if (self.checkpoint_every or self.resume) and self.out_dir is None:
            raise ValidationError(
                "checkpoint_every and resume need out_dir; pass out_dir='runs/my_flow'"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the settings.

        Returns:
            dict of field name to value.
        """
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> FlowMatchingConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error.

        Args:
            d: a dict from :meth:`to_dict`.

        Returns:
            The config.

        Raises:
            ValidationError: for unknown keys.
        """
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValidationError(
                f"unknown FlowMatchingConfig keys {unknown}; known: {sorted(known)}"
            )
        return cls(**d)


@dataclass
class TrainResult:
    """What :func:`train_flow` returns.

    Attributes:
        model: the trained network (raw weights).
        ema: the EMA copy (None when ``ema_decay == 0``).
        history: ``{"step": [...], "loss": [...]}`` every ``log_every`` steps.
        config: the settings used.
        out_dir: where the final model was written, if anywhere.
    """

    model: nn.Module
    ema: nn.Module | None
    history: dict[str, list[float]] = field(default_factory=dict)
    config: FlowMatchingConfig | None = None
    out_dir: Path | None = None

    @property
    def sampling_model(self) -> nn.Module:
        """The network to sample with: the EMA copy if there is one."""
        return self.ema if self.ema is not None else self.model


def _num_classes(model: nn.Module) -> int | None:
    return getattr(getattr(model, "config", None), "num_classes", None)


def flow_matching_loss(
    model: nn.Module,
    x1: Tensor,
    x0: Tensor,
    t: Tensor,
    schedule: Schedule,
    y: Tensor | None = None,
) -> Tensor:
    """Mean squared error between the model and the conditional path velocity.

    Args:
        model: velocity network ``model(x, t, y=...)``.
        x1: data, shape (B, ...).
        x0: noise, shape (B, ...).
        t: times, shape (B,).
        schedule: the path.
        y: labels (B,) int64, or None for an unconditional model.

    Returns:
        Scalar tensor (mean over batch and coordinates).
    """
    xt, target = schedule.sample_path(x0, x1, t)
    pred = model(xt, t, y=y) if y is not None else model(xt, t)
    return ((pred - target) ** 2).mean()


def _ot_pairing(x0: Tensor, x1: Tensor) -> Tensor:
    from scipy.optimize import linear_sum_assignment

    cost = torch.cdist(x1.flatten(1), x0.flatten(1)) ** 2
    _, cols = linear_sum_assignment(cost.detach().cpu().numpy())
    return x0[torch.as_tensor(cols, device=x0.device)]


def _lr_at(config: FlowMatchingConfig, step: int) -> float:
    if config.lr_schedule == "constant":
        return config.lr
    frac = step / max(1, config.steps)
    return config.lr * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac)))


# ---- checkpoints ----------------------------------------------------------------------------
def _save_checkpoint(
    root: Path,
    step: int,
    model: nn.Module,
    ema: EMA | None,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    history: dict[str, list[float]],
    config: FlowMatchingConfig,
) -> Path:
    def write(tmp: Path) -> None:
        save_model(tmp / "model", model)
        if ema is not None:
            save_model(tmp / "ema", ema.module)
        tensors, meta = optimizer_tensors(opt)
        tensors["rng_state"] = gen.get_state()
        save_tensors(tmp / "trainer.safetensors", tensors)
        trainer = {"step": step, "history": history, "config": config.to_dict(), **meta}
        atomic_write_text(tmp / "trainer.json", json.dumps(trainer))

    return write_step_checkpoint(root, step, write)


def _load_checkpoint(
    root: Path,
    model: nn.Module,
    ema: EMA | None,
    opt: torch.optim.Optimizer,
    gen: torch.Generator,
    config: FlowMatchingConfig,
) -> tuple[int, dict[str, list[float]]] | None:
    ck = latest_checkpoint(root)
    if ck is None:
        return None
    loaded = load_model(ck / "model")
    model.load_state_dict(loaded.model.state_dict())
    if ema is not None:
        ema.module.load_state_dict(load_model(ck / "ema").model.state_dict())
    trainer = json.loads((ck / "trainer.json").read_text())
    saved = trainer.get("config", {})
    free = {"steps", "progress", "resume", "out_dir", "log_every", "checkpoint_every"}
    changed = sorted(k for k, v in config.to_dict().items() if k not in free and saved.get(k) != v)
    if changed:
        warnings.warn(
            f"resuming {ck} with settings that differ from the checkpoint's: {changed}; "
            "the run will not reproduce an uninterrupted one",
            TesseraWarning,
            stacklevel=3,
        )
    tensors = load_tensors(ck / "trainer.safetensors")
    gen.set_state(tensors.pop("rng_state"))
    load_optimizer(opt, tensors, trainer)
    return int(trainer["step"]), trainer["history"]


# ---- training loop ----------------------------------------------------------------------------
def _as_data(
    data: Tensor | np.ndarray, labels: Tensor | np.ndarray | None
) -> tuple[Tensor, Tensor | None]:
    x = (
        data if isinstance(data, Tensor) else torch.from_numpy(np.array(data))
    )  # copy: inputs may be read-only
    if x.ndim < 2 or x.shape[0] < 1:
        raise ShapeError(f"data must have shape (N, ...) with N >= 1, got {tuple(x.shape)}")
    if not x.is_floating_point():
        x = x.float()
    check_finite("data", x)
    y = None
    if labels is not None:
        y = labels if isinstance(labels, Tensor) else torch.from_numpy(np.array(labels))
        if y.shape != (x.shape[0],):
            raise ShapeError(f"labels must have shape ({x.shape[0]},), got {tuple(y.shape)}")
        y = y.long()
    return x, y


def train_flow(
    model: nn.Module,
    data: Tensor | np.ndarray,
    config: FlowMatchingConfig,
    *,
    labels: Tensor | np.ndarray | None = None,
    metadata: dict[str, Any] | None = None,
    on_step: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train a velocity network by conditional flow matching.

    Args:
        model: ``model(x, t, y=None) -> v`` (e.g. :class:`tessera.nn.TimeMLP`); trained in
            place.
        data: training samples, shape (N, ...), the layout the model takes.
        config: the settings.
        labels: class labels, shape (N,), for a class-conditional model (its config
            must have ``num_classes``); dropped with probability ``cfg_dropout``.
        metadata: extra JSON-ready facts stored with the final model (data set name,
            image shape ...).
        on_step: called as ``on_step(step, loss)`` after each optimiser step.

    Returns:
        A :class:`TrainResult` with the trained model, its EMA copy and the history.

    Raises:
        ShapeError: data or labels of the wrong shape.
        NonFiniteError: NaN or inf in the data.
        ValidationError: labels without a class-conditional model, or out of range.
        TrainingDivergedError: a non-finite loss, naming the step.
    """
    x_all, y_all = _as_data(data, labels)
    n_classes = _num_classes(model)
    null_label = n_classes if n_classes is not None else 0
    if y_all is not None:
        if n_classes is None:
            raise ValidationError(
                "labels were given but the model is not class-conditional; build it with "
                "num_classes set, or drop labels"
            )
        if int(y_all.min()) < 0 or int(y_all.max()) >= n_classes:
            raise ValidationError(
                f"labels must lie in [0, {n_classes - 1}], got [{int(y_all.min())}, {int(y_all.max())}]"
            )
    schedule = schedule_from_dict(config.schedule)
    param = next(model.parameters())
    x_all = x_all.to(device=param.device, dtype=param.dtype)
    if y_all is not None:
        y_all = y_all.to(param.device)
    gen = torch.Generator(device="cpu")
    gen.manual_seed(config.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    ema = EMA(model, decay=config.ema_decay) if config.ema_decay > 0 else None
    root = Path(config.out_dir) if config.out_dir is not None else None
    start = 0
    history: dict[str, list[float]] = {"step": [], "loss": []}
    if config.resume and root is not None:
        restored = _load_checkpoint(root, model, ema, opt, gen, config)
        if restored is not None:
            start, history = restored
            log.info("resumed from step %d in %s", start, root)

    tqdm = require("tqdm").tqdm
    bar = tqdm(
        total=config.steps,
        initial=start,
        disable=not config.progress,
        desc="train flow",
        unit="step",
    )
    model.train()
    N = x_all.shape[0]
    running = 0.0
    for step in range(start + 1, config.steps + 1):
        idx = torch.randint(N, (config.batch_size,), generator=gen).to(x_all.device)
        x1 = x_all[idx]
        x0 = torch.randn(x1.shape, generator=gen, dtype=x1.dtype).to(x1.device)
        t = torch.rand(config.batch_size, generator=gen, dtype=x1.dtype).to(x1.device)
        if config.coupling == "minibatch_ot":
            x0 = _ot_pairing(x0, x1)
        y = None
        if y_all is not None:
            y = y_all[idx]
            drop = torch.rand(config.batch_size, generator=gen).to(y.device) < config.cfg_dropout
            y = torch.where(drop, torch.full_like(y, null_label), y)
        for group in opt.param_groups:
            group["lr"] = _lr_at(config, step - 1)
        loss = flow_matching_loss(model, x1, x0, t, schedule, y)
        if not torch.isfinite(loss):
            bar.close()
            raise TrainingDivergedError(
                f"flow-matching loss became {loss.item()} at step {step}; lower lr "
                f"(now {config.lr}) or check the data scaling"
            )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if config.grad_clip is not None:
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
        opt.step()
        if ema is not None:
            ema.update(model)
        value = float(loss.item())
        running = value if step == start + 1 else 0.98 * running + 0.02 * value
        if step % config.log_every == 0 or step == config.steps:
            history["step"].append(step)
            history["loss"].append(value)
            bar.set_postfix(loss=f"{running:.4f}")
        bar.update(1)
        if on_step is not None:
            on_step(step, value)
        if root is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
            _save_checkpoint(root, step, model, ema, opt, gen, history, config)
    bar.close()
    model.eval()
    out = None
    if root is not None:
        final = ema.module if ema is not None else model
        extra = {"flow": config.to_dict(), "schedule": schedule.to_dict(), **(metadata or {})}
        out = save_model(root / "model", final, extra=extra)
    return TrainResult(
        model=model,
        ema=ema.module if ema is not None else None,
        history=history,
        config=config,
        out_dir=out,
    )
