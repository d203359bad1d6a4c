r"""Reward fine-tuning of flows as stochastic optimal control: Adjoint Matching and baselines.

Goal: from a base flow with data law :math:`p_{\text{base}}` and a differentiable
reward r, a fine-tuned velocity whose samples follow the *tilted* law

.. math:: p^*(x) \propto p_{\text{base}}(x)\, e^{\lambda r(x)}.

Adjoint Matching (Domingo-Enrich et al., arXiv 2409.08861) casts this as stochastic
optimal control of the **memoryless** SDE of the base flow, whose drift is
:math:`b = 2v - \kappa_t x` and diffusion :math:`\sigma(t) = \sqrt{2\eta_t}`
(:func:`tessera.flows.memoryless`). Memorylessness (:math:`X_0 \perp X_1`) is what makes
the optimal controlled process end in :math:`p^*`; with any other diffusion each noise
seed is tilted separately and the result is biased ("initial value function bias").

Discretisation used here (the grid :math:`t_k = k h`, :math:`h = 1/K`, offset h in
:math:`\kappa` and :math:`\sigma` against the t = 0 singularity):

1. On-policy rollouts without gradients,
   :math:`X_{k+1} = X_k + h\,b_\theta(X_k, t_k) + \sqrt h\,\sigma_k \varepsilon_k` for
   k < K - 1, and a **noiseless final step** :math:`X_K = X_{K-1} + h\,v_\theta(X_{K-1}, t_{K-1})`
   (for cond-OT this is the denoiser :math:`E[X_1 | X_{K-1}]`), where the reward gradient
   is taken.
2. The **lean adjoint** of this chain with the *base* drift only (no Jacobian of the
   fine-tuned model): :math:`\tilde a_K = -\lambda\nabla r(X_K)`,
   :math:`\tilde a_k = \tilde a_{k+1} + h\,\nabla_x b_{\text{base}}(X_k, t_k)^T \tilde a_{k+1}`
   (one vector-Jacobian product of the frozen base per step, O(1) memory in K).
3. The loss :math:`\sum_{k \in S} w_k \| u_\theta(X_k, t_k) + \sigma_k \tilde a_{k+1}\|^2`
   with the control :math:`u = (b_\theta - b_{\text{base}})/\sigma` (for the memoryless
   SDE :math:`u = 2(v_\theta - v_{\text{base}})/\sigma`). Step k's control acts between
   :math:`X_k` and :math:`X_{k+1}`, so the discrete optimum is
   :math:`u_k = -\sigma_k E[\tilde a_{k+1} | X_k]`: regressing on :math:`\tilde a_{k+1}`
   is exact for the Euler chain. ``time_weighting="paper"`` uses :math:`w_k = 1`;
   ``"sigma"`` uses :math:`w_k = \sigma_k/2`, which fits the small-t correction (weight
   ~2h under the paper's loss) much faster; both have the same minimiser.

The fine-tuned velocity can then be sampled with any diffusion, the ODE included
(Thm. 1 of the paper). :func:`kl_certificate` turns correctness into one number:
:math:`J(u) - J^* = \mathrm{KL}(P^u \| P^*) \ge \mathrm{KL}(p^u_1 \| p^*_1)`, estimated on
the same discrete chain (all K steps stochastic), so that discretisation does not bias
it.

Baselines on the same interface: :func:`draft` (back-propagate the reward through the
last k ODE steps, no KL term), :func:`refl` (reward of the one-step denoised prediction
at a random late time), :func:`discrete_adjoint` (back-propagate the SOC objective
through the memoryless sampler: O(K) memory) and ``adjoint_matching(...,
diffusion=constant(0.5))``, the non-memoryless ablation that converges to a biased law.

The choices above that the notes could not verify against the paper (the offset form,
the noiseless last step with the fine-tuned velocity, regressing step k on
:math:`\tilde a_{k+1}`) are pinned by exact tests: for a Gaussian base and a linear
reward the lean adjoint's optimal control reproduces the discrete chain's tilted mean
to 1e-10 (``tests/control/test_finetune.py``).
"""

from __future__ import annotations

import copy
import json
import logging
import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from torch import Tensor, nn

from tessera._optional import require
from tessera._rng import as_generator
from tessera._validate import check_choice, check_positive, check_positive_int
from tessera.control.rewards import RewardFn, as_reward
from tessera.errors import (
    ShapeError,
    TesseraWarning,
    TrainingDivergedError,
    UnsupportedError,
    ValidationError,
)
from tessera.flows.schedules import CondOT, Schedule, schedule_from_dict
from tessera.flows.sde import Constant, Diffusion, Memoryless, constant, memoryless
from tessera.nn import atomic_write_text, load_tensors, save_model, save_tensors
from tessera.nn.trainer_state import (
    latest_checkpoint,
    load_optimizer,
    optimizer_tensors,
    write_step_checkpoint,
)

__all__ = [
    "METHODS",
    "FineTuneConfig",
    "FineTuneResult",
    "KLCertificate",
    "ResidualVelocity",
    "adjoint_matching",
    "discrete_adjoint",
    "draft",
    "kl_certificate",
    "lean_adjoint",
    "log_partition",
    "refl",
    "rollout",
]

log = logging.getLogger(__name__)

VelocityFn = Callable[[Tensor, Tensor], Tensor]
METHODS: tuple[str, ...] = ("adjoint_matching", "discrete_adjoint", "draft", "refl")


# ---- models ---------------------------------------------------------------------------------
class ResidualVelocity(nn.Module):
    """A frozen base velocity plus a trainable correction: ``v(x, t) = base(x, t) + net(x, t)``.

    Use it when the base is not a network (a closed-form flow) or when only a small
    correction should be trained. The correction's last ``nn.Linear`` is zeroed so the
    model starts exactly at the base.

    Args:
        base: ``v(x, t)``; treated as a constant (no gradients flow into it).
        correction: the trainable network ``net(x, t)``.
        zero_init: zero the correction's last linear layer.

    Raises:
        ValidationError: base not callable or correction not an ``nn.Module``.
    """

    def __init__(self, base: VelocityFn, correction: nn.Module, *, zero_init: bool = True) -> None:
        super().__init__()
        if not callable(base):
            raise ValidationError(f"base must be callable as v(x, t), got {type(base).__name__}")
        if not isinstance(correction, nn.Module):
            raise ValidationError(
                f"correction must be an nn.Module, got {type(correction).__name__}"
            )
        self._base = [base]  # a list: keep a module base out of parameters()/state_dict()
        self.correction = correction
        if zero_init:
            last = [m for m in correction.modules() if isinstance(m, nn.Linear)]
            if not last:
                raise ValidationError("zero_init needs a correction with an nn.Linear layer")
            with torch.no_grad():
                last[-1].weight.zero_()
                if last[-1].bias is not None:
                    last[-1].bias.zero_()

    def forward(self, x: Tensor, t: Tensor) -> Tensor:  # noqa: D102
        with torch.no_grad():
            vb = self._base[0](x, t)
        return vb + self.correction(x, t)


def _frozen_copy(base: Any) -> VelocityFn:
    if isinstance(base, nn.Module):
        frozen = copy.deepcopy(base).eval()
        frozen.requires_grad_(False)
        return frozen
    if not callable(base):
        raise ValidationError(
            f"base must be an nn.Module or a callable v(x, t), got {type(base).__name__}"
        )
    return base


def _infer_sample_shape(
    base: Any, model: nn.Module, sample_shape: Sequence[int] | None
) -> tuple[int, ...]:
    if sample_shape is not None:
        shape = tuple(int(s) for s in sample_shape)
        if not shape or any(s < 1 for s in shape):
            raise ShapeError(f"sample_shape must be positive sizes, got {sample_shape!r}")
        return shape
    for m in (base, model):
        cfg = getattr(m, "config", None)
        if cfg is not None and hasattr(cfg, "dim"):
            return (int(cfg.dim),)
        if cfg is not None and hasattr(cfg, "image_size"):
            return (int(cfg.in_channels), int(cfg.image_size), int(cfg.image_size))
    raise ValidationError(
        "cannot tell the shape of one sample from this base; pass sample_shape=(D,) "
        "(or (C, H, W) for images)"
    )


# ---- configuration and result ---------------------------------------------------------------
@dataclass(frozen=True, kw_only=True)
class FineTuneConfig:
    """Settings shared by :func:`adjoint_matching` and its baselines.

    Attributes:
        method: one of :data:`METHODS`.
        lam: reward multiplier lambda (> 0); the target is p_base exp(lam r).
        steps: optimiser steps.
        n_time_steps: K, steps of the sampling chain on [0, 1].
        batch_size: trajectories per step.
        lr: Adam learning rate.
        weight_decay: AdamW weight decay.
        lr_schedule: ``"constant"`` or ``"cosine"`` (decay to 2 % of lr).
        grad_clip: max gradient norm, or None.
        loss_time_subset: AM: None for all K - 1 controlled times, or m: the last
            ceil(m/2) times plus floor(m/2) random earlier ones each step (the paper
            uses 20 of 40).
        clip: AM: per-trajectory loss clip (None: none). Heavy-tailed losses carry the
            tilt between modes; clipping biases the result (see the module docs).
        loss_chunk: AM: times per backward pass of the loss. The gradient is accumulated
            over blocks of this many times, so memory does not grow with K; the
            gradient is the same for every value (up to float summation order).
        time_weighting: AM: ``"paper"`` or ``"sigma"`` (weights sigma_k / 2).
        diffusion: ``"memoryless"`` or ``"constant:S"`` (the biased ablation).
        k: DRaFT: number of final ODE steps back-propagated through.
        refl_start: ReFL: earliest time of the random prediction step, in [0, 1).
        schedule: the flow's path name.
        seed: seed of the run's Generator (trajectory noise, time subsets).
        checkpoint_every: steps between checkpoints (0: none).
        out_dir: output directory (checkpoints and the final model), or None.
        resume: continue from the latest checkpoint in out_dir.
        log_every: steps between history entries.
        progress: show a progress bar.
    """

    method: str = "adjoint_matching"
    lam: float = 1.0
    steps: int = 1000
    n_time_steps: int = 40
    batch_size: int = 64
    lr: float = 1e-4
    weight_decay: float = 0.0
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    grad_clip: float | None = 1.0
    loss_time_subset: int | None = None
    clip: float | None = None
    loss_chunk: int = 10
    time_weighting: Literal["paper", "sigma"] = "sigma"
    diffusion: str = "memoryless"
    k: int = 1
    refl_start: float = 0.5
    schedule: str = "cond_ot"
    seed: int = 0
    checkpoint_every: int = 0
    out_dir: str | None = None
    resume: bool = False
    log_every: int = 10
    progress: bool = True

    def __post_init__(self) -> None:
        check_choice("method", self.method, METHODS)
        check_positive("lam", self.lam)
        check_positive_int("steps", self.steps)
        check_positive_int("n_time_steps", self.n_time_steps, minimum=2)
        check_positive_int("batch_size", self.batch_size)
        check_positive("lr", self.lr)
        check_positive("weight_decay", self.weight_decay, allow_zero=True)
        check_choice("lr_schedule", self.lr_schedule, ("constant", "cosine"))
        if self.grad_clip is not None:
            check_positive("grad_clip", self.grad_clip)
        if self.loss_time_subset is not None:
            check_positive_int("loss_time_subset", self.loss_time_subset)
        if self.clip is not None:
            check_positive("clip", self.clip)
        check_positive_int("loss_chunk", self.loss_chunk)
        check_choice("time_weighting", self.time_weighting, ("paper", "sigma"))
        _parse_diffusion(self.diffusion, CondOT(), 0.01)
        check_positive_int("k", self.k)
        if self.k > self.n_time_steps:
            raise ValidationError(f"k = {self.k} exceeds n_time_steps = {self.n_time_steps}")
        if not 0.0 <= self.refl_start < 1.0:
            raise ValidationError(f"refl_start must lie in [0, 1), got {self.refl_start}")
        schedule_from_dict(self.schedule)
        check_positive_int("checkpoint_every", self.checkpoint_every, minimum=0)
        check_positive_int("log_every", self.log_every)
        if (self.checkpoint_every or self.resume) and self.out_dir is None:
            raise ValidationError(
                "checkpoint_every and resume need out_dir; pass out_dir='runs/my_finetune'"
            )

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the settings.

        Returns:
            dict of field name to value.
        """
        return asdict(self)


def _parse_diffusion(spec: str | Diffusion, schedule: Schedule, h: float) -> Diffusion:
    if isinstance(spec, Constant):
        return spec
    if isinstance(spec, Memoryless):
        return memoryless(schedule, h)
    if spec == "memoryless":
        return memoryless(schedule, h)
    if isinstance(spec, str) and spec.startswith("constant:"):
        try:
            value = float(spec.split(":", 1)[1])
        except ValueError:
            value = -1.0
        if value > 0 and math.isfinite(value):
            return constant(value)
    raise ValidationError(
        f"diffusion must be 'memoryless', 'constant:S' with S > 0, or constant(S); got {spec!r}"
    )


def _diffusion_spec(diffusion: str | Diffusion) -> str:
    if isinstance(diffusion, Constant):
        return f"constant:{diffusion.value}"
    if isinstance(diffusion, Memoryless):
        return "memoryless"
    return str(diffusion)


@dataclass
class FineTuneResult:
    """What the fine-tuning functions return.

    Attributes:
        model: the fine-tuned velocity network ``v(x, t)``.
        history: per logged step: ``step``, ``loss``, ``reward`` (mean r of the batch's
            final samples), ``control_cost`` (mean sum of h |u|^2 / 2 on the batch's
            trajectories) and ``kl_certificate`` (their J minus the base chain's J*: a
            noisy running estimate; use :func:`kl_certificate` for a figure); the last
            two for the SOC methods (Adjoint Matching, discrete adjoint) only.
        config: the settings used.
        out_dir: where the final model was written, if anywhere.
    """

    model: nn.Module
    history: dict[str, list[float]] = field(default_factory=dict)
    config: FineTuneConfig | None = None
    out_dir: Path | None = None


# ---- the discrete chain ------------------------------------------------------------------------
def _grid(K: int, dtype: torch.dtype, device: torch.device) -> Tensor:
    return torch.linspace(0.0, 1.0, K + 1, dtype=torch.float64).to(device=device, dtype=dtype)


def _sigmas(diffusion: Diffusion, grid: Tensor) -> Tensor:
    return diffusion.sigma(grid[:-1].to(torch.float64)).to(grid.dtype)


def _drift(diffusion: Diffusion, schedule: Schedule, v: Tensor, x: Tensor, t: Tensor) -> Tensor:
    return diffusion.drift_from_velocity(v, x, t, schedule)


def rollout(
    velocity_fn: VelocityFn,
    x0: Tensor,
    schedule: Schedule,
    diffusion: Diffusion,
    n_time_steps: int,
    *,
    generator: torch.Generator | int | None = None,
    noiseless_last: bool = True,
) -> Tensor:
    """Simulate the Euler-Maruyama chain of the SDE with drift b(v) on a uniform grid.

    Args:
        velocity_fn: ``v(x, t)``.
        x0: initial states, shape (B, ...).
        schedule: the velocity's path.
        diffusion: ``memoryless(schedule, 1/K)`` or ``constant(s)``.
        n_time_steps: K.
        generator: noise Generator or seed.
        noiseless_last: make the last step the ODE step ``x + h v`` (no noise).

    Returns:
        States at the K + 1 grid times, shape (K + 1, B, ...). Gradients flow through
        ``velocity_fn`` when called under ``torch.enable_grad()``.
    """
    check_positive_int("n_time_steps", n_time_steps)
    K = int(n_time_steps)
    gen = as_generator(generator, device=x0.device)
    grid = _grid(K, x0.dtype, x0.device)
    sig = _sigmas(diffusion, grid)
    h = 1.0 / K
    x = x0
    states = [x0]
    B = x0.shape[0]
    for k in range(K):
        t = grid[k].expand(B)
        v = velocity_fn(x, t)
        if noiseless_last and k == K - 1:
            x = x + h * v
        else:
            noise = torch.randn(x.shape, generator=gen, dtype=x.dtype, device=x.device)
            x = x + h * _drift(diffusion, schedule, v, x, t) + math.sqrt(h) * sig[k] * noise
        states.append(x)
    return torch.stack(states)


def lean_adjoint(
    base_fn: VelocityFn,
    states: Tensor,
    schedule: Schedule,
    diffusion: Diffusion,
    terminal: Tensor,
    *,
    noiseless_last: bool = True,
) -> tuple[Tensor, Tensor]:
    r"""The lean adjoint of the chain with the base drift, and the base velocities on it.

    :math:`\tilde a_K = ` ``terminal`` (pass :math:`-\lambda\nabla r(X_K)`), then
    :math:`\tilde a_k = \tilde a_{k+1} + h\,\nabla_x b_{\text{base}}(X_k, t_k)^T\tilde a_{k+1}`
    (the last step's map is :math:`x + h v_{\text{base}}` when ``noiseless_last``).

    Args:
        base_fn: the frozen base velocity.
        states: chain states, shape (K + 1, B, ...) (from :func:`rollout`).
        schedule: the path.
        diffusion: the chain's diffusion.
        terminal: :math:`\tilde a_K`, shape (B, ...).
        noiseless_last: whether the chain's last step was noiseless.

    Returns:
        ``(adjoint, v_base)``: adjoint of shape (K + 1, B, ...); base velocities at
        the first K states, shape (K, B, ...). Both detached.
    """
    K = states.shape[0] - 1
    h = 1.0 / K
    grid = _grid(K, states.dtype, states.device)
    B = states.shape[1]
    adj = [terminal.detach()]
    vbs: list[Tensor] = []
    a = terminal.detach()
    for k in range(K - 1, -1, -1):
        t = grid[k].expand(B)
        with torch.enable_grad():
            x = states[k].detach().requires_grad_(True)
            vb = base_fn(x, t)
            step = vb if (noiseless_last and k == K - 1) else _drift(diffusion, schedule, vb, x, t)
            (g,) = torch.autograd.grad(step, x, grad_outputs=a)
        a = a + h * g
        adj.append(a)
        vbs.append(vb.detach())
    adj.reverse()
    vbs.reverse()
    return torch.stack(adj), torch.stack(vbs)


def _reward_and_grad(
    reward_fn: RewardFn, x: Tensor, lam: float, step: int
) -> tuple[Tensor, Tensor]:
    with torch.enable_grad():
        xr = x.detach().requires_grad_(True)
        r = reward_fn(xr)
        if not r.requires_grad:
            raise ValidationError(
                "reward_fn is not differentiable in x (its output carries no gradient); use "
                "torch operations only, without .detach(), .numpy() or torch.no_grad()"
            )
        (g,) = torch.autograd.grad(r.sum(), xr)
    if not (torch.isfinite(r).all() and torch.isfinite(g).all()):
        raise TrainingDivergedError(
            f"reward or its gradient became non-finite at step {step}; check reward_fn on the "
            "model's samples (e.g. log of 0) or lower lr / lam"
        )
    return r.detach(), -lam * g


@torch.no_grad()
def log_partition(
    base: VelocityFn,
    reward_fn: RewardFn,
    lam: float,
    *,
    sample_shape: Sequence[int],
    schedule: Schedule | None = None,
    n: int = 4096,
    n_time_steps: int = 100,
    batch_size: int = 1024,
    noiseless_last: bool = False,
    generator: torch.Generator | int | None = None,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> tuple[float, float]:
    r"""J* = -log E_base[exp(lam r(X_K))] on the memoryless base chain, with its standard error.

    Args:
        base: base velocity.
        reward_fn: reward.
        lam: multiplier.
        sample_shape: shape of one sample.
        schedule: the path (default cond-OT).
        n: base rollouts.
        n_time_steps: K.
        batch_size: rollouts per batch.
        noiseless_last: chain variant (see :func:`rollout`).
        generator: Generator or seed.
        dtype: dtype of the rollouts.
        device: device of the rollouts.

    Returns:
        ``(j_star, standard_error)``.
    """
    schedule = schedule or CondOT()
    check_positive_int("n", n, minimum=2)
    gen = as_generator(generator)
    diff = memoryless(schedule, 1.0 / n_time_steps)
    lr_all = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        x0 = torch.randn((b, *sample_shape), generator=gen, dtype=dtype).to(device)
        xs = rollout(
            base, x0, schedule, diff, n_time_steps, generator=gen, noiseless_last=noiseless_last
        )
        lr_all.append(lam * reward_fn(xs[-1]).double())
    lr = torch.cat(lr_all)
    m = lr.max()
    w = torch.exp(lr - m)
    j_star = -(m + torch.log(w.mean()))
    se = w.std() / (math.sqrt(n) * w.mean())  # delta method for -log mean(w)
    return float(j_star), float(se)


@dataclass(frozen=True)
class KLCertificate:
    """J(u) - J*: an upper bound on KL(p_finetuned || p_target) in nats (estimated).

    Attributes:
        value: J - J* (nats).
        se: its standard error.
        j: E[sum_k h |u_k|^2 / 2 - lam r(X_K)] under the fine-tuned chain.
        j_star: -log E_base[exp(lam r(X_K))].
        control_cost: E[sum_k h |u_k|^2 / 2] (the path KL to the base chain).
        mean_reward: E[r(X_K)] under the fine-tuned chain.
        n: rollouts per estimate.
        n_time_steps: K.
    """

    value: float
    se: float
    j: float
    j_star: float
    control_cost: float
    mean_reward: float
    n: int
    n_time_steps: int

    def to_dict(self) -> dict[str, float | int]:
        """JSON-ready dict.

        Returns:
            dict of field name to value.
        """
        return asdict(self)


@torch.no_grad()
def kl_certificate(
    base: VelocityFn,
    finetuned: VelocityFn,
    reward_fn: RewardFn,
    lam: float,
    schedule: Schedule | None = None,
    n: int = 4096,
    *,
    sample_shape: Sequence[int] | None = None,
    n_time_steps: int = 100,
    batch_size: int = 1024,
    generator: torch.Generator | int | None = None,
) -> KLCertificate:
    r"""Estimate J(u) - J*, which bounds KL(p_finetuned || p_target) from above.

    Both terms are computed on the same memoryless Euler-Maruyama chain (K steps, all
    stochastic, offset 1/K). For such chains the path KL of the controlled chain to the
    base chain is exactly :math:`E\sum_k \tfrac h2\|u_k\|^2` with
    :math:`u_k = 2(v_{\text{ft}} - v_{\text{base}})/\sigma_k`, so
    :math:`J(u) - J^* = \mathrm{KL}(P^u\|P^*) \ge 0`, where :math:`P^*` is the base chain
    tilted by :math:`e^{\lambda r(X_K)}`; its terminal law is the tilted law of the
    chain's own terminal law (the chain's discretisation bias cancels). It is
    a Monte Carlo estimate: values within a few ``se`` below 0 are noise.

    Args:
        base: base velocity.
        finetuned: fine-tuned velocity.
        reward_fn: reward r.
        lam: multiplier lambda.
        schedule: the path (default cond-OT).
        n: rollouts for J and for J* each.
        sample_shape: shape of one sample (inferred for TimeMLP/UNet bases).
        n_time_steps: K.
        batch_size: rollouts per batch.
        generator: Generator or seed.

    Returns:
        A :class:`KLCertificate`.

    Raises:
        ValidationError: bad sizes or a shape that cannot be inferred.
    """
    schedule = schedule or CondOT()
    check_positive("lam", lam)
    check_positive_int("n", n, minimum=2)
    check_positive_int("n_time_steps", n_time_steps, minimum=2)
    K = int(n_time_steps)
    reward = as_reward(reward_fn)
    base_fn = _frozen_copy(base)
    ft_fn = _frozen_copy(finetuned)
    shape = _infer_sample_shape(
        base, finetuned if isinstance(finetuned, nn.Module) else nn.Identity(), sample_shape
    )
    param = next(iter(finetuned.parameters()), None) if isinstance(finetuned, nn.Module) else None
    dtype = param.dtype if param is not None else torch.float32
    device = param.device if param is not None else torch.device("cpu")
    gen = as_generator(generator)
    diff = memoryless(schedule, 1.0 / K)
    grid = _grid(K, dtype, device)
    sig = _sigmas(diff, grid)
    h = 1.0 / K
    js, costs, rewards = [], [], []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        x = torch.randn((b, *shape), generator=gen, dtype=dtype).to(device)
        cost = torch.zeros(b, dtype=torch.float64, device=device)
        for k in range(K):
            t = grid[k].expand(b)
            vf = ft_fn(x, t)
            vb = base_fn(x, t)
            u = 2.0 * (vf - vb) / sig[k]
            cost += 0.5 * h * (u.reshape(b, -1).double() ** 2).sum(1)
            noise = torch.randn(x.shape, generator=gen, dtype=dtype).to(device)
            x = x + h * _drift(diff, schedule, vf, x, t) + math.sqrt(h) * sig[k] * noise
        r = reward(x).double()
        js.append(cost - lam * r)
        costs.append(cost)
        rewards.append(r)
    J = torch.cat(js)
    j_star, se_star = log_partition(
        base_fn,
        reward,
        lam,
        sample_shape=shape,
        schedule=schedule,
        n=n,
        n_time_steps=K,
        batch_size=batch_size,
        generator=gen,
        dtype=dtype,
        device=device,
    )
    j = float(J.mean())
    se = math.sqrt(float(J.var()) / n + se_star**2)
    return KLCertificate(
        value=j - j_star,
        se=se,
        j=j,
        j_star=j_star,
        control_cost=float(torch.cat(costs).mean()),
        mean_reward=float(torch.cat(rewards).mean()),
        n=n,
        n_time_steps=K,
    )


# ---- the shared training loop ----------------------------------------------------------------
class _Context:
    """Everything one optimisation step needs."""

    def __init__(
        self,
        base_fn: VelocityFn,
        model: nn.Module,
        reward: RewardFn,
        schedule: Schedule,
        diffusion: Diffusion,
        config: FineTuneConfig,
        shape: tuple[int, ...],
        gen: torch.Generator,
    ) -> None:
        self.base_fn = base_fn
        self.opt = torch.optim.AdamW(
            model.parameters(), lr=config.lr, weight_decay=config.weight_decay
        )
        self.model = model
        self.reward = reward
        self.schedule = schedule
        self.diffusion = diffusion
        self.config = config
        self.shape = shape
        self.gen = gen
        p = next(model.parameters())
        self.dtype, self.device = p.dtype, p.device
        self.K = config.n_time_steps
        self.h = 1.0 / self.K
        self.grid = _grid(self.K, self.dtype, self.device)
        self.sig = _sigmas(diffusion, self.grid)
        self.j_star = math.nan

    def noise(self, b: int | None = None) -> Tensor:
        shape = (b or self.config.batch_size, *self.shape)
        return torch.randn(shape, generator=self.gen, dtype=self.dtype).to(self.device)


StepFn = Callable[[_Context, int], dict[str, float]]


def _am_times(ctx: _Context) -> Tensor:
    n_ctrl = ctx.K - 1  # the last (noiseless) step carries no control
    m = ctx.config.loss_time_subset
    if m is None or m >= n_ctrl:
        return torch.arange(n_ctrl)
    late = (m + 1) // 2
    early = m - late
    fixed = torch.arange(n_ctrl - late, n_ctrl)
    pick = torch.randperm(n_ctrl - late, generator=ctx.gen)[:early]
    return torch.cat([pick.sort().values, fixed])


def _control(
    ctx: _Context, v_ft: Tensor, v_base: Tensor, x: Tensor, t: Tensor, sig: Tensor
) -> Tensor:
    db = _drift(ctx.diffusion, ctx.schedule, v_ft, x, t) - _drift(
        ctx.diffusion, ctx.schedule, v_base, x, t
    )
    return db / sig.reshape(-1, *([1] * (x.ndim - 1)))


def _am_step(ctx: _Context, step: int) -> dict[str, float]:
    cfg = ctx.config
    B = cfg.batch_size
    with torch.no_grad():
        xs = rollout(ctx.model, ctx.noise(), ctx.schedule, ctx.diffusion, ctx.K, generator=ctx.gen)
    r, terminal = _reward_and_grad(ctx.reward, xs[-1], cfg.lam, step)
    adj, vbase = lean_adjoint(ctx.base_fn, xs, ctx.schedule, ctx.diffusion, terminal)
    ks = _am_times(ctx)
    view = (-1, *([1] * len(ctx.shape)))

    def per_path(sel: Tensor) -> tuple[Tensor, Tensor]:
        """Loss of the times ``sel`` per trajectory (B,), and the controls there (detached)."""
        n = len(sel)
        x = xs[sel].reshape(n * B, *ctx.shape)
        t = ctx.grid[sel].repeat_interleave(B)
        sig = ctx.sig[sel].repeat_interleave(B)
        u = _control(ctx, ctx.model(x, t), vbase[sel].reshape(n * B, *ctx.shape), x, t, sig)
        res = u + sig.reshape(view) * adj[sel + 1].reshape(n * B, *ctx.shape)
        per = (res.reshape(n * B, -1) ** 2).sum(1)
        if cfg.time_weighting == "sigma":
            per = per * (sig / 2.0)
        return per.reshape(n, B).sum(0), u.detach()

    # The loss is a sum over times, so its gradient is accumulated over blocks of
    # ``loss_chunk`` times: the graph never holds more than one block (memory O(1) in K).
    # A clipped trajectory contributes no gradient (d min(c, L)/dL = 0 above c), so with
    # ``clip`` the per-trajectory totals are computed first, without a graph.
    chunks = torch.split(ks, cfg.loss_chunk)
    keep = torch.ones(B, dtype=ctx.dtype, device=ctx.device)
    if cfg.clip is not None:
        with torch.no_grad():
            totals = torch.stack([per_path(c)[0] for c in chunks]).sum(0)  # (B,)
        keep = (totals < cfg.clip).to(ctx.dtype)
    ctx.opt.zero_grad(set_to_none=True)
    total = torch.zeros(B, dtype=ctx.dtype, device=ctx.device)
    us = []
    with torch.enable_grad():
        for c in chunks:
            part, u = per_path(c)
            (part * keep).sum().div(B).backward()
            total += part.detach()
            us.append(u)
    if cfg.clip is not None:
        total = total.clamp(max=cfg.clip)
    loss = total.mean()
    with torch.no_grad():  # running J on the batch: control cost over all controlled steps
        if len(ks) == ctx.K - 1:
            uu = torch.cat(us)
        else:
            allx = xs[: ctx.K - 1].reshape((ctx.K - 1) * B, *ctx.shape)
            allt = ctx.grid[: ctx.K - 1].repeat_interleave(B)
            alls = ctx.sig[: ctx.K - 1].repeat_interleave(B)
            vb_all = vbase[: ctx.K - 1].reshape((ctx.K - 1) * B, *ctx.shape)
            uu = _control(ctx, ctx.model(allx, allt), vb_all, allx, allt, alls)
        cost = 0.5 * ctx.h * (uu.reshape(ctx.K - 1, B, -1) ** 2).sum((0, 2))
    _step(ctx, loss, step)
    return {
        "loss": float(loss),
        "reward": float(r.mean()),
        "control_cost": float(cost.mean()),
        "kl_certificate": float((cost - cfg.lam * r).mean()) - ctx.j_star,
    }


def _discrete_adjoint_step(ctx: _Context, step: int) -> dict[str, float]:
    cfg = ctx.config
    B = cfg.batch_size
    x = ctx.noise()
    cost = torch.zeros(B, dtype=x.dtype, device=x.device)
    for k in range(ctx.K):
        t = ctx.grid[k].expand(B)
        vf = ctx.model(x, t)
        if k == ctx.K - 1:
            x = x + ctx.h * vf
            continue
        vb = ctx.base_fn(x, t)
        u = _control(ctx, vf, vb, x, t, ctx.sig[k].expand(B))
        cost = cost + 0.5 * ctx.h * (u.reshape(B, -1) ** 2).sum(1)
        noise = torch.randn(x.shape, generator=ctx.gen, dtype=x.dtype).to(x.device)
        x = (
            x
            + ctx.h * _drift(ctx.diffusion, ctx.schedule, vf, x, t)
            + math.sqrt(ctx.h) * ctx.sig[k] * noise
        )
    r = ctx.reward(x)
    _check_finite_reward(r, step)
    J = cost - cfg.lam * r
    loss = J.mean()
    _backward(ctx, loss, step)
    return {
        "loss": float(loss.detach()),
        "reward": float(r.detach().mean()),
        "control_cost": float(cost.detach().mean()),
        "kl_certificate": float(loss.detach()) - ctx.j_star,
    }


def _ode_to(ctx: _Context, x: Tensor, k_end: int, *, grad_from: int) -> Tensor:
    B = x.shape[0]
    for k in range(k_end):
        t = ctx.grid[k].expand(B)
        if k < grad_from:
            with torch.no_grad():
                x = x + ctx.h * ctx.model(x, t)
        else:
            x = x + ctx.h * ctx.model(x, t)
    return x


def _draft_step(ctx: _Context, step: int) -> dict[str, float]:
    cfg = ctx.config
    x = _ode_to(ctx, ctx.noise(), ctx.K, grad_from=ctx.K - cfg.k)
    r = ctx.reward(x)
    _check_finite_reward(r, step)
    loss = -cfg.lam * r.mean()
    _backward(ctx, loss, step)
    return {"loss": float(loss.detach()), "reward": float(r.detach().mean())}


def _refl_step(ctx: _Context, step: int) -> dict[str, float]:
    cfg = ctx.config
    lo = min(math.ceil(cfg.refl_start * ctx.K), ctx.K - 1)
    k = int(torch.randint(lo, ctx.K, (1,), generator=ctx.gen))
    x = _ode_to(ctx, ctx.noise(), k, grad_from=k)
    t = ctx.grid[k].expand(x.shape[0])
    x1 = ctx.schedule.velocity_to_x1(ctx.model(x, t), x, t)
    r = ctx.reward(x1)
    _check_finite_reward(r, step)
    loss = -cfg.lam * r.mean()
    _backward(ctx, loss, step)
    return {"loss": float(loss.detach()), "reward": float(r.detach().mean())}


def _check_finite_reward(r: Tensor, step: int) -> None:
    if not torch.isfinite(r).all():
        raise TrainingDivergedError(
            f"reward became non-finite at step {step}; check reward_fn on the model's samples "
            "or lower lr / lam"
        )


def _backward(ctx: _Context, loss: Tensor, step: int) -> None:
    if not torch.isfinite(loss):
        _diverged(ctx, loss, step)
    ctx.opt.zero_grad(set_to_none=True)
    loss.backward()
    _step(ctx, loss, step)


def _diverged(ctx: _Context, loss: Tensor, step: int) -> None:
    raise TrainingDivergedError(
        f"{ctx.config.method} loss became {float(loss)} at step {step}; lower lr "
        f"(now {ctx.config.lr}) or lam, or set clip"
    )


def _step(ctx: _Context, loss: Tensor, step: int) -> None:
    """Check the loss and the accumulated gradients, clip them and take the optimiser step."""
    if not torch.isfinite(loss):
        _diverged(ctx, loss, step)
    if ctx.config.grad_clip is not None:
        nn.utils.clip_grad_norm_(ctx.model.parameters(), ctx.config.grad_clip)
    for p in ctx.model.parameters():
        if p.grad is not None and not torch.isfinite(p.grad).all():
            raise TrainingDivergedError(
                f"{ctx.config.method} gradient became non-finite at step {step}; lower lr or lam"
            )
    ctx.opt.step()


_STEPS: dict[str, StepFn] = {
    "adjoint_matching": _am_step,
    "discrete_adjoint": _discrete_adjoint_step,
    "draft": _draft_step,
    "refl": _refl_step,
}


def _lr_at(config: FineTuneConfig, step: int) -> float:
    if config.lr_schedule == "constant":
        return config.lr
    frac = step / max(1, config.steps)
    return config.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * frac)))


def _save(root: Path, step: int, ctx: _Context, history: dict[str, list[float]]) -> Path:
    def write(tmp: Path) -> None:
        tensors, meta = optimizer_tensors(ctx.opt)
        tensors = {f"opt.{k}": v for k, v in tensors.items()}
        for k, v in ctx.model.state_dict().items():
            tensors[f"model.{k}"] = v
        tensors["rng_state"] = ctx.gen.get_state()
        save_tensors(tmp / "trainer.safetensors", tensors)
        state = {
            "step": step,
            "history": history,
            "config": ctx.config.to_dict(),
            "j_star": ctx.j_star,
            **meta,
        }
        atomic_write_text(tmp / "trainer.json", json.dumps(state))

    return write_step_checkpoint(root, step, write)


def _restore(root: Path, ctx: _Context) -> tuple[int, dict[str, list[float]]] | None:
    ck = latest_checkpoint(root)
    if ck is None:
        return None
    state = json.loads((ck / "trainer.json").read_text())
    saved = state.get("config", {})
    free = {"steps", "progress", "resume", "out_dir", "log_every", "checkpoint_every"}
    changed = sorted(
        k for k, v in ctx.config.to_dict().items() if k not in free and saved.get(k) != v
    )
    if changed:
        warnings.warn(
            f"resuming {ck} with settings that differ from the checkpoint's: {changed}; "
            "the run will not reproduce an uninterrupted one",
            TesseraWarning,
            stacklevel=4,
        )
    tensors = load_tensors(ck / "trainer.safetensors")
    ctx.gen.set_state(tensors.pop("rng_state"))
    model_sd = {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
    ctx.model.load_state_dict(model_sd)
    opt_t = {k[len("opt.") :]: v for k, v in tensors.items() if k.startswith("opt.")}
    load_optimizer(ctx.opt, opt_t, state)
    ctx.j_star = float(state.get("j_star", math.nan))
    return int(state["step"]), state["history"]


def _finetune(
    base: Any,
    reward_fn: RewardFn,
    config: FineTuneConfig,
    *,
    model: nn.Module | None,
    schedule: Schedule | None,
    diffusion: str | Diffusion | None,
    sample_shape: Sequence[int] | None,
    generator: torch.Generator | int | None,
    metadata: dict[str, Any] | None,
    on_step: Callable[[int, dict[str, float]], None] | None,
) -> FineTuneResult:
    schedule = schedule if schedule is not None else schedule_from_dict(config.schedule)
    base_fn = _frozen_copy(base)
    if model is None:
        if not isinstance(base, nn.Module):
            raise ValidationError(
                "a closed-form (non-module) base needs a trainable model; pass "
                "model=ResidualVelocity(base, TimeMLP(TimeMLPConfig(dim=D, zero_init_last=True)))"
            )
        model = copy.deepcopy(base)
    if not isinstance(model, nn.Module) or next(model.parameters(), None) is None:
        raise ValidationError("model must be an nn.Module with trainable parameters")
    if model is base:
        raise ValidationError(
            "model is the base itself; pass model=None (a copy is made) or a separate network"
        )
    model.requires_grad_(True)
    if isinstance(model, ResidualVelocity):
        model._base[0] = base_fn
    shape = _infer_sample_shape(base, model, sample_shape)
    reward = as_reward(reward_fn)
    K = config.n_time_steps
    diff = _parse_diffusion(
        diffusion if diffusion is not None else config.diffusion, schedule, 1.0 / K
    )
    if not isinstance(diff, Memoryless) and config.method == "adjoint_matching":
        warnings.warn(
            f"adjoint matching with {diff!r}: only the memoryless diffusion converges to "
            "p_base exp(lam r); this run will be biased (initial value function bias)",
            TesseraWarning,
            stacklevel=3,
        )
    if generator is None or isinstance(generator, int):
        gen = torch.Generator().manual_seed(config.seed if generator is None else int(generator))
    else:
        gen = as_generator(generator)
    ctx = _Context(base_fn, model, reward, schedule, diff, config, shape, gen)
    root = Path(config.out_dir) if config.out_dir is not None else None
    start = 0
    keys = ["step", "loss", "reward"]
    if config.method in ("adjoint_matching", "discrete_adjoint"):
        keys += ["control_cost", "kl_certificate"]
    history: dict[str, list[float]] = {k: [] for k in keys}
    restored = _restore(root, ctx) if (config.resume and root is not None) else None
    if restored is not None:
        start, history = restored
        log.info("resumed %s from step %d in %s", config.method, start, root)
    elif config.method in ("adjoint_matching", "discrete_adjoint"):
        ctx.j_star, _ = log_partition(
            base_fn, reward, config.lam, sample_shape=shape, schedule=schedule,
            n=max(4 * config.batch_size, 256), n_time_steps=K, batch_size=config.batch_size,
            noiseless_last=True, generator=gen, dtype=ctx.dtype, device=ctx.device,
        )  # fmt: skip
    step_fn = _STEPS[config.method]
    tqdm = require("tqdm").tqdm
    bar = tqdm(
        total=config.steps,
        initial=start,
        disable=not config.progress,
        desc=config.method,
        unit="step",
    )
    model.train()
    try:
        for step in range(start + 1, config.steps + 1):
            for group in ctx.opt.param_groups:
                group["lr"] = _lr_at(config, step - 1)
            stats = step_fn(ctx, step)
            if step % config.log_every == 0 or step == config.steps:
                history["step"].append(step)
                for k in keys[1:]:
                    history[k].append(stats[k])
                bar.set_postfix(reward=f"{stats['reward']:.3f}", loss=f"{stats['loss']:.3g}")
            bar.update(1)
            if on_step is not None:
                on_step(step, stats)
            if root is not None and config.checkpoint_every and step % config.checkpoint_every == 0:
                _save(root, step, ctx, history)
    finally:
        bar.close()
    model.eval()
    out = None
    if root is not None:
        extra = {"finetune": config.to_dict(), "schedule": schedule.to_dict(), **(metadata or {})}
        try:
            out = save_model(root / "model", model, extra=extra)
        except UnsupportedError:
            log.info("model class is not registered; wrote checkpoints only")
    return FineTuneResult(model=model, history=history, config=config, out_dir=out)


def _make_config(method: str, diffusion: str | Diffusion, **kwargs: Any) -> FineTuneConfig:
    return FineTuneConfig(method=method, diffusion=_diffusion_spec(diffusion), **kwargs)


def adjoint_matching(
    base: Any,
    reward_fn: RewardFn,
    *,
    lam: float,
    model: nn.Module | None = None,
    schedule: Schedule | None = None,
    sample_shape: Sequence[int] | None = None,
    steps: int = 1000,
    n_time_steps: int = 40,
    batch_size: int = 64,
    lr: float = 1e-4,
    loss_time_subset: int | None = None,
    clip: float | None = None,
    time_weighting: Literal["paper", "sigma"] = "sigma",
    diffusion: str | Diffusion = "memoryless",
    generator: torch.Generator | int | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    **settings: Any,
) -> FineTuneResult:
    """Fine-tune a flow towards p_base exp(lam r) by Adjoint Matching.

    Args:
        base: the base velocity: a network ``v(x, t)`` (copied and frozen: the caller's
            object is never modified) or any callable (a closed-form flow; then pass
            ``model``).
        reward_fn: differentiable ``r(x) -> (B,)`` (see :mod:`tessera.control.rewards`).
        lam: reward multiplier lambda (> 0).
        model: the network to train (default: a copy of ``base``; for a callable base,
            e.g. ``ResidualVelocity(base, TimeMLP(...))``).
        schedule: the flow's path (default from ``schedule=`` in settings, cond-OT).
        sample_shape: shape of one sample (inferred for TimeMLP / UNet).
        steps: optimiser steps.
        n_time_steps: K, chain steps (40 as the paper; use >= 100 for exact-law tests).
        batch_size: trajectories per step.
        lr: learning rate.
        loss_time_subset: None (all times) or m times per step (see FineTuneConfig).
        clip: per-trajectory loss clip, or None.
        time_weighting: ``"sigma"`` (default, faster) or ``"paper"``.
        diffusion: ``"memoryless"`` (required for the tilted target), or
            ``constant(s)`` / ``"constant:s"`` for the biased ablation (warns).
        generator: seed or Generator for trajectories and time subsets (a Generator's
            state is saved in checkpoints).
        progress: show a progress bar.
        metadata: JSON-ready facts stored with the final model (e.g. the base's
            ``sample_shape`` so that ``tessera flows sample`` can use it).
        on_step: called as ``on_step(step, stats)`` after every step.
        **settings: other :class:`FineTuneConfig` fields (``grad_clip``,
            ``weight_decay``, ``lr_schedule``, ``loss_chunk``, ``out_dir``, ``checkpoint_every``,
            ``resume``, ``log_every``, ``seed``).

    Returns:
        A :class:`FineTuneResult`.

    Raises:
        ValidationError: bad settings, a non-differentiable reward, a callable base
            without ``model``.
        TrainingDivergedError: a non-finite reward, gradient or loss (names the step).
    """
    config = _make_config(
        "adjoint_matching", diffusion, lam=lam, steps=steps, n_time_steps=n_time_steps,
        batch_size=batch_size, lr=lr, loss_time_subset=loss_time_subset, clip=clip,
        time_weighting=time_weighting, progress=progress, **settings,
    )  # fmt: skip
    return _finetune(
        base, reward_fn, config, model=model, schedule=schedule, diffusion=diffusion,
        sample_shape=sample_shape, generator=generator, metadata=metadata, on_step=on_step,
    )  # fmt: skip


def discrete_adjoint(
    base: Any,
    reward_fn: RewardFn,
    *,
    lam: float,
    model: nn.Module | None = None,
    schedule: Schedule | None = None,
    sample_shape: Sequence[int] | None = None,
    steps: int = 1000,
    n_time_steps: int = 40,
    batch_size: int = 64,
    lr: float = 1e-4,
    generator: torch.Generator | int | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    **settings: Any,
) -> FineTuneResult:
    """Baseline: minimise J(u) = E[sum h|u|^2/2 - lam r(X_1)] by backprop through the sampler.

    The same objective as Adjoint Matching on the memoryless chain, differentiated by
    autograd through all K steps (memory grows with K; higher gradient variance).
    Arguments as :func:`adjoint_matching`.

    Args:
        base: base velocity.
        reward_fn: reward.
        lam: multiplier.
        model: trainable network.
        schedule: path.
        sample_shape: shape of one sample.
        steps: optimiser steps.
        n_time_steps: K.
        batch_size: trajectories per step.
        lr: learning rate.
        generator: seed or Generator.
        progress: progress bar.
        metadata: facts stored with the model.
        on_step: per-step callback.
        **settings: other :class:`FineTuneConfig` fields.

    Returns:
        A :class:`FineTuneResult`.
    """
    config = _make_config(
        "discrete_adjoint", "memoryless", lam=lam, steps=steps, n_time_steps=n_time_steps,
        batch_size=batch_size, lr=lr, progress=progress, **settings,
    )  # fmt: skip
    return _finetune(
        base, reward_fn, config, model=model, schedule=schedule, diffusion="memoryless",
        sample_shape=sample_shape, generator=generator, metadata=metadata, on_step=on_step,
    )  # fmt: skip


def draft(
    base: Any,
    reward_fn: RewardFn,
    *,
    lam: float = 1.0,
    k: int = 1,
    model: nn.Module | None = None,
    schedule: Schedule | None = None,
    sample_shape: Sequence[int] | None = None,
    steps: int = 1000,
    n_time_steps: int = 40,
    batch_size: int = 64,
    lr: float = 1e-4,
    generator: torch.Generator | int | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    **settings: Any,
) -> FineTuneResult:
    """Baseline DRaFT-k: maximise E[lam r(X_1)] through the last k Euler ODE steps, no KL.

    It has no fixed point at the tilted law: reward keeps rising and diversity
    collapses the longer it runs (reward hacking).

    Args:
        base: base velocity.
        reward_fn: reward.
        lam: reward scale.
        k: back-propagated final steps.
        model: trainable network.
        schedule: path.
        sample_shape: shape of one sample.
        steps: optimiser steps.
        n_time_steps: ODE steps.
        batch_size: samples per step.
        lr: learning rate.
        generator: seed or Generator.
        progress: progress bar.
        metadata: facts stored with the model.
        on_step: per-step callback.
        **settings: other :class:`FineTuneConfig` fields.

    Returns:
        A :class:`FineTuneResult`.
    """
    config = _make_config(
        "draft", "memoryless", lam=lam, k=k, steps=steps, n_time_steps=n_time_steps,
        batch_size=batch_size, lr=lr, progress=progress, **settings,
    )  # fmt: skip
    return _finetune(
        base, reward_fn, config, model=model, schedule=schedule, diffusion="memoryless",
        sample_shape=sample_shape, generator=generator, metadata=metadata, on_step=on_step,
    )  # fmt: skip


def refl(
    base: Any,
    reward_fn: RewardFn,
    *,
    lam: float = 1.0,
    refl_start: float = 0.5,
    model: nn.Module | None = None,
    schedule: Schedule | None = None,
    sample_shape: Sequence[int] | None = None,
    steps: int = 1000,
    n_time_steps: int = 40,
    batch_size: int = 64,
    lr: float = 1e-4,
    generator: torch.Generator | int | None = None,
    progress: bool = True,
    metadata: dict[str, Any] | None = None,
    on_step: Callable[[int, dict[str, float]], None] | None = None,
    **settings: Any,
) -> FineTuneResult:
    """Baseline ReFL: maximise the reward of the one-step prediction E[X_1 | X_t] at a random late t.

    Each step runs the ODE without gradients to a random grid time in
    [refl_start, 1), predicts x1 with the model's denoiser and ascends lam r(x1). No KL.

    Args:
        base: base velocity.
        reward_fn: reward.
        lam: reward scale.
        refl_start: earliest prediction time.
        model: trainable network.
        schedule: path.
        sample_shape: shape of one sample.
        steps: optimiser steps.
        n_time_steps: ODE steps.
        batch_size: samples per step.
        lr: learning rate.
        generator: seed or Generator.
        progress: progress bar.
        metadata: facts stored with the model.
        on_step: per-step callback.
        **settings: other :class:`FineTuneConfig` fields.

    Returns:
        A :class:`FineTuneResult`.
    """
    config = _make_config(
        "refl", "memoryless", lam=lam, refl_start=refl_start, steps=steps,
        n_time_steps=n_time_steps, batch_size=batch_size, lr=lr, progress=progress, **settings,
    )  # fmt: skip
    return _finetune(
        base, reward_fn, config, model=model, schedule=schedule, diffusion="memoryless",
        sample_shape=sample_shape, generator=generator, metadata=metadata, on_step=on_step,
    )  # fmt: skip
