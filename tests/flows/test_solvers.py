"""ODE and SDE solvers on problems with known solutions."""

from __future__ import annotations

import itertools
import math

import pytest
import torch

from tessera.errors import NonFiniteError, ShapeError, UnsupportedError, ValidationError
from tessera.flows import CondOT, Trajectory, solve_ode, solve_sde, uniform_grid
from tessera.flows.sde import constant

F64 = torch.float64


def _f(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    # dx/dt = t x + cos(t): non-autonomous, linear; solved exactly below
    return t[:, None] * x + torch.cos(t)[:, None]


def _exact(x0: torch.Tensor) -> torch.Tensor:
    # x(1) = e^{1/2} (x0 + int_0^1 e^{-s^2/2} cos(s) ds), integral by fine Simpson
    s = torch.linspace(0, 1, 20001, dtype=F64)
    w = torch.ones_like(s)
    w[1:-1:2], w[2:-1:2] = 4, 2
    integral = (w * torch.exp(-(s**2) / 2) * torch.cos(s)).sum() / (3 * 20000)
    return math.exp(0.5) * (x0 + integral)


@pytest.mark.parametrize(
    ("method", "order"), [("euler", 1), ("midpoint", 2), ("heun", 2), ("rk4", 4)]
)
def test_fixed_step_methods_reach_their_order(method: str, order: int) -> None:
    x0 = torch.tensor([[0.3], [-1.0]], dtype=F64)
    errs = []
    for n in (8, 16, 32):
        x1 = solve_ode(_f, x0, uniform_grid(n, dtype=F64), method=method)
        errs.append((x1 - _exact(x0)).abs().max().item())
    observed = [math.log2(a / b) for a, b in itertools.pairwise(errs)]
    for p in observed:
        assert abs(p - order) < 0.25, (method, observed)


def test_dopri5_and_reverse_grid() -> None:
    x0 = torch.tensor([[0.3], [-1.0]], dtype=F64)
    x1 = solve_ode(_f, x0, uniform_grid(4, dtype=F64), method="dopri5", atol=1e-10, rtol=1e-10)
    torch.testing.assert_close(x1, _exact(x0), rtol=0, atol=1e-8)
    back = solve_ode(_f, x1, uniform_grid(64, start=1.0, end=0.0, dtype=F64), method="rk4")
    torch.testing.assert_close(back, x0, rtol=0, atol=1e-7)
    # an adaptive reverse solve to t = 0 never asks the velocity for a time outside [0, 1]
    seen = []

    def f(x, t):
        seen.append(t)
        return _f(x, t)

    back = solve_ode(f, x1, uniform_grid(1, start=1.0, end=0.0, dtype=F64), method="dopri5")
    torch.testing.assert_close(back, x0, rtol=0, atol=1e-4)
    times = torch.cat(seen)
    assert times.min() >= 0 and times.max() <= 1


def test_record_returns_the_trajectory() -> None:
    x0 = torch.ones(3, 2, dtype=F64)
    tr = solve_ode(lambda x, t: x, x0, uniform_grid(10, dtype=F64), method="rk4", record=True)
    assert isinstance(tr, Trajectory)
    assert tr.states.shape == (11, 3, 2)
    torch.testing.assert_close(tr.states[:, 0, 0], torch.exp(tr.times), rtol=1e-6, atol=0)
    tr2 = solve_ode(lambda x, t: x, x0, uniform_grid(10, dtype=F64), method="dopri5", record=True)
    assert tr2.states.shape == (11, 3, 2)


@pytest.mark.parametrize("checkpointing", [False, True])
def test_differentiable_mode_gives_the_flow_jacobian(checkpointing: bool) -> None:
    # dx/dt = a x  =>  d x(1) / d x0 = e^a exactly for the ODE, (1 + a h)^n for Euler
    a = 0.7
    x0 = torch.tensor([[1.5]], dtype=F64, requires_grad=True)
    x1 = solve_ode(
        lambda x, t: a * x,
        x0,
        uniform_grid(20, dtype=F64),
        method="euler",
        differentiable=True,
        checkpointing=checkpointing,
    )
    (g,) = torch.autograd.grad(x1.sum(), x0)
    assert abs(g.item() - (1 + a / 20) ** 20) < 1e-12
    # the default mode keeps no graph
    assert not solve_ode(lambda x, t: a * x, x0, uniform_grid(5, dtype=F64)).requires_grad


def test_sde_with_zero_diffusion_is_euler() -> None:
    x0 = torch.randn(5, 2, dtype=F64, generator=torch.Generator().manual_seed(0))
    v = lambda x, t: -x  # noqa: E731
    a = solve_sde(v, x0, uniform_grid(50, dtype=F64), CondOT(), constant(0.0), generator=1)
    b = solve_ode(v, x0, uniform_grid(50, dtype=F64), method="euler")
    torch.testing.assert_close(a, b, rtol=0, atol=1e-14)
    c = solve_sde(v, x0, uniform_grid(50, dtype=F64), CondOT(), constant(1.0), generator=1)
    d = solve_sde(v, x0, uniform_grid(50, dtype=F64), CondOT(), constant(1.0), generator=1)
    torch.testing.assert_close(c, d, rtol=0, atol=0)  # same seed, same path


def test_bad_input() -> None:
    v = lambda x, t: x  # noqa: E731
    x0 = torch.zeros(2, 3)
    with pytest.raises(UnsupportedError, match="method must be one of"):
        solve_ode(v, x0, uniform_grid(4), method="leapfrog")
    with pytest.raises(ValidationError, match=r"\[0, 1\]"):
        solve_ode(v, x0, torch.tensor([0.0, 1.5]))
    with pytest.raises(ValidationError, match="strictly"):
        solve_ode(v, x0, torch.tensor([0.0, 0.5, 0.4, 1.0]))
    with pytest.raises(ShapeError, match="t_grid"):
        solve_ode(v, x0, torch.zeros(2, 2))
    with pytest.raises(NonFiniteError, match="x0"):
        solve_ode(v, torch.full((2, 3), float("nan")), uniform_grid(4))
    with pytest.raises(NonFiniteError, match="t_grid"):
        solve_ode(v, x0, torch.tensor([0.0, float("nan"), 1.0]))
    with pytest.raises(ValidationError, match="floating"):
        solve_ode(v, torch.zeros(2, 3, dtype=torch.long), uniform_grid(4))
    with pytest.raises(ValidationError, match="increasing"):
        solve_sde(v, x0, uniform_grid(4, start=1.0, end=0.0), CondOT(), constant(1.0))
    with pytest.raises(ValidationError, match="steps"):
        uniform_grid(0)
