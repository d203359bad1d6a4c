"""Sampling a trained velocity network, with optional classifier-free guidance."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from tessera._rng import as_generator
from tessera._validate import check_finite, check_positive_int
from tessera.errors import ValidationError
from tessera.flows.solvers import ODEMethod, solve_ode, uniform_grid

__all__ = ["guided_velocity", "sample"]


def guided_velocity(
    model: nn.Module, y: Tensor | None = None, guidance: float = 0.0
) -> Callable[[Tensor, Tensor], Tensor]:
    r"""The velocity ``v(x, t)`` of a (class-conditional) network, with CFG.

    With labels and ``guidance = w``:
    :math:`v = (1 + w)\,v(x, t | y) - w\,v(x, t | \varnothing)` (w = 0: plain
    conditional; the null label is index ``num_classes``).

    Args:
        model: ``model(x, t, y=None)``.
        y: labels, shape (B,) int64, or None (unconditional).
        guidance: CFG weight w >= 0 (needs y).

    Returns:
        A function ``v(x, t)``.

    Raises:
        ValidationError: guidance without labels, or a negative weight.
    """
    check_finite("guidance", torch.tensor(float(guidance)))
    if guidance < 0:
        raise ValidationError(f"guidance must be >= 0, got {guidance}")
    if y is None:
        if guidance:
            raise ValidationError("guidance needs class labels y; pass y or set guidance=0")
        return lambda x, t: model(x, t)
    n_classes = getattr(getattr(model, "config", None), "num_classes", None)
    if n_classes is None:
        raise ValidationError("labels given to a model that is not class-conditional")
    if int(y.min()) < 0 or int(y.max()) >= n_classes:
        raise ValidationError(f"labels must lie in [0, {n_classes - 1}], got {y.tolist()[:8]}...")
    if not guidance:
        return lambda x, t: model(x, t, y=y)
    null = torch.full_like(y, n_classes)

    def v(x: Tensor, t: Tensor) -> Tensor:
        return (1.0 + guidance) * model(x, t, y=y) - guidance * model(x, t, y=null)

    return v


@torch.no_grad()
def sample(
    model: nn.Module,
    n: int,
    shape: Sequence[int],
    *,
    steps: int = 100,
    method: ODEMethod = "midpoint",
    y: Tensor | None = None,
    guidance: float = 0.0,
    generator: torch.Generator | int | None = None,
    batch_size: int = 4096,
) -> Tensor:
    """Draw n samples by solving the flow ODE from N(0, I) at t = 0 to t = 1.

    Args:
        model: velocity network ``model(x, t, y=None)``.
        n: number of samples.
        shape: the shape of one sample (without the batch dimension).
        steps: solver steps.
        method: ODE method (see :func:`tessera.flows.solvers.solve_ode`).
        y: labels, shape (n,), for a class-conditional model.
        guidance: CFG weight.
        generator: torch Generator or seed for the source noise.
        batch_size: samples per solver call (bounds memory).

    Returns:
        Tensor of shape (n, *shape) in the model's dtype.

    Raises:
        ValidationError: bad n, steps, labels or guidance.
    """
    check_positive_int("n", n)
    check_positive_int("batch_size", batch_size)
    if y is not None and tuple(y.shape) != (n,):
        raise ValidationError(f"y must have shape ({n},), got {tuple(y.shape)}")
    param = next(model.parameters())
    gen = as_generator(generator)
    grid = uniform_grid(steps, dtype=param.dtype).to(param.device)
    was_training = model.training
    model.eval()
    # all source noise is drawn at once so that batch_size does not change the samples
    noise = torch.randn((n, *shape), generator=gen, dtype=param.dtype)
    out = []
    for lo in range(0, n, batch_size):
        hi = min(n, lo + batch_size)
        x0 = noise[lo:hi].to(param.device)
        v = guided_velocity(model, None if y is None else y[lo:hi].to(param.device), guidance)
        out.append(solve_ode(v, x0, grid, method=method))
    model.train(was_training)
    return torch.cat(out)
