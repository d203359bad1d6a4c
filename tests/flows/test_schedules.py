"""Exact identities of the affine paths (float64)."""

from __future__ import annotations

import pytest
import torch

from tessera.errors import UnsupportedError, ValidationError
from tessera.flows import VP, CondOT, Cosine, GaussianMixtureFlow, change_schedule
from tessera.flows.schedules import Schedule, schedule_from_dict

SCHEDULES = [CondOT(), VP(), Cosine()]
F64 = torch.float64


def _batch(seed: int, n: int = 64, d: int = 5):
    g = torch.Generator().manual_seed(seed)
    x0 = torch.randn(n, d, generator=g, dtype=F64)
    x1 = 2.0 * torch.randn(n, d, generator=g, dtype=F64) + 1.0
    t = 0.05 + 0.9 * torch.rand(n, generator=g, dtype=F64)
    return x0, x1, t


@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: s.name)
def test_conversions_round_trip(s: Schedule, seed: int) -> None:
    # On a single conditional path the velocity is the path derivative, so every
    # conversion must recover the endpoints exactly.
    x0, x1, t = _batch(seed)
    xt, v = s.sample_path(x0, x1, t)
    torch.testing.assert_close(s.velocity_to_x1(v, xt, t), x1, rtol=0, atol=1e-10)
    torch.testing.assert_close(s.velocity_to_x0(v, xt, t), x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(s.x1_to_velocity(x1, xt, t), v, rtol=0, atol=1e-10)
    torch.testing.assert_close(s.epsilon_to_velocity(x0, xt, t), v, rtol=0, atol=1e-10)
    score = s.velocity_to_score(v, xt, t)
    torch.testing.assert_close(score, -x0 / s.beta(t)[:, None], rtol=0, atol=1e-10)
    torch.testing.assert_close(s.score_to_velocity(score, xt, t), v, rtol=0, atol=1e-10)
    # the score written with kappa and eta, (v - kappa x) / eta
    k, e = s.kappa(t)[:, None], s.eta(t)[:, None]
    torch.testing.assert_close((v - k * xt) / e, score, rtol=0, atol=1e-9)


@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: s.name)
def test_derivatives_match_finite_differences(s: Schedule) -> None:
    t = torch.linspace(0.05, 0.95, 19, dtype=F64)
    h = 1e-6
    for f, df in ((s.alpha, s.d_alpha), (s.beta, s.d_beta)):
        fd = (f(t + h) - f(t - h)) / (2 * h)
        torch.testing.assert_close(df(t), fd, rtol=1e-7, atol=1e-8)
    # eta = beta^2 d/dt log(alpha / beta)
    fd_log = (torch.log(s.snr(t + h)) - torch.log(s.snr(t - h))) / (2 * h)
    torch.testing.assert_close(s.eta(t), s.beta(t) ** 2 * fd_log, rtol=1e-7, atol=1e-8)


def test_cond_ot_closed_forms() -> None:
    s, t = CondOT(), torch.linspace(0.1, 0.9, 9, dtype=F64)
    torch.testing.assert_close(s.kappa(t), 1 / t, rtol=1e-14, atol=0)
    torch.testing.assert_close(s.eta(t), (1 - t) / t, rtol=1e-14, atol=0)


def test_vp_is_variance_preserving() -> None:
    t = torch.linspace(0.0, 1.0, 101, dtype=F64)
    torch.testing.assert_close(VP().alpha(t) ** 2 + VP().beta(t) ** 2, torch.ones_like(t))


@pytest.mark.parametrize("s", SCHEDULES, ids=lambda s: s.name)
def test_snr_inverse(s: Schedule) -> None:
    t = torch.linspace(0.02, 0.98, 49, dtype=F64)
    torch.testing.assert_close(s.snr_inverse(s.snr(t)), t, rtol=0, atol=1e-10)
    # the generic bisection of the base class agrees with the closed form
    torch.testing.assert_close(Schedule.snr_inverse(s, s.snr(t)), t, rtol=0, atol=1e-10)


def _gmm(schedule: Schedule) -> GaussianMixtureFlow:
    return GaussianMixtureFlow(
        [0.2, 0.5, 0.3],
        [[1.0, -1.0, 0.0], [-2.0, 0.5, 1.0], [0.0, 2.0, -1.5]],
        [torch.eye(3) * 0.3, torch.diag(torch.tensor([0.5, 0.1, 0.2])), torch.eye(3) * 0.05],
        schedule,
    )


@pytest.mark.parametrize(
    ("source", "target"), [(VP(), CondOT()), (Cosine(), CondOT()), (CondOT(), VP())]
)
def test_change_schedule_matches_exact_velocity(
    source: Schedule, target: Schedule, seed: int
) -> None:
    # Acceptance: VP converted to the OT time by SNR matching equals the cond-OT velocity.
    g = torch.Generator().manual_seed(seed)
    x = 2.0 * torch.randn(2000, 3, generator=g, dtype=F64)
    t = 0.05 + 0.9 * torch.rand(2000, generator=g, dtype=F64)
    converted = change_schedule(_gmm(source).velocity, source, target)
    err = (converted(x, t) - _gmm(target).velocity(x, t)).abs().max().item()
    assert err <= 1e-6, err


def test_schedule_registry() -> None:
    for s in SCHEDULES:
        assert schedule_from_dict(s.to_dict()) == s
    assert schedule_from_dict({"name": "vp", "beta_min": 0.2, "beta_max": 10.0}) == VP(0.2, 10.0)
    with pytest.raises(UnsupportedError, match="schedule must be one of"):
        schedule_from_dict("linear")
    with pytest.raises(ValidationError, match="beta_max"):
        VP(beta_min=1.0, beta_max=0.5)
