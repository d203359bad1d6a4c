"""Adjoint Matching and its baselines: exact Gaussian references first, then learned fits.

Exact references: for a Gaussian base with a linear velocity and a linear reward, the
discrete chain is linear-Gaussian, its value gradient is constant in x, and the optimal
control u_k = -sigma_k a_{k+1} built from the lean adjoint shifts the terminal mean by
exactly lam * b * Var(X_K | X_0) (any diffusion); for the memoryless chain this is the
tilted target up to the O(h) residual memory. These pin the signs, the offset and the
noiseless last step of the implementation.
"""

from __future__ import annotations

import contextlib
import math

import pytest
import torch

from tessera.control.finetune import (
    FineTuneConfig,
    ResidualVelocity,
    adjoint_matching,
    discrete_adjoint,
    draft,
    kl_certificate,
    lean_adjoint,
    refl,
    rollout,
)
from tessera.control.rewards import as_reward, classifier_log_prob, linear, parse_reward, quadratic
from tessera.errors import (
    ShapeError,
    TesseraWarning,
    TrainingDivergedError,
    UnsupportedError,
    ValidationError,
)
from tessera.flows import CondOT, GaussianMixtureFlow, constant, memoryless, solve_ode, uniform_grid
from tessera.nn import TimeMLP, TimeMLPConfig, load_model

S2 = (1.5**2, 0.7**2)
LAM_B = (0.4, -0.3)


def _gaussian_base(variances: tuple[float, ...] = S2) -> GaussianMixtureFlow:
    d = len(variances)
    cov = torch.diag(torch.tensor(variances, dtype=torch.float64))
    return GaussianMixtureFlow([1.0], [[0.0] * d], [cov.tolist()])


def _slopes(base: GaussianMixtureFlow, diffusion, K: int, noiseless_last: bool) -> torch.Tensor:
    """Per-step multipliers 1 + h c_k of the 1-D linear base chain, by evaluating the drift."""
    grid = uniform_grid(K, dtype=torch.float64)
    one = torch.ones(1, 1, dtype=torch.float64)
    out = []
    for k in range(K):
        t = grid[k].expand(1)
        v = base.velocity(one, t)
        step = (
            v
            if (noiseless_last and k == K - 1)
            else diffusion.drift_from_velocity(v, one, t, CondOT())
        )
        out.append(1.0 + float(step[0, 0]) / K)
    return torch.tensor(out, dtype=torch.float64)


@pytest.mark.parametrize("which", ["memoryless", "constant"])
def test_lean_adjoint_control_gives_the_exact_tilted_mean_of_the_chain(which: str) -> None:
    # Acceptance 1 (Gaussian fixed point). 1-D base N(0, 1.5^2), r = x, lam b = 0.4, K = 200.
    K, lam_b = 200, 0.4
    base = _gaussian_base((S2[0],))
    diff = memoryless(CondOT(), 1.0 / K) if which == "memoryless" else constant(0.5)
    x0 = torch.randn(3, 1, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    states = rollout(base, x0, CondOT(), diff, K, generator=1)
    terminal = torch.full_like(x0, -lam_b)  # -lam grad r
    adj, vbase = lean_adjoint(base, states, CondOT(), diff, terminal)
    assert adj.shape == (K + 1, 3, 1) and vbase.shape == (K, 3, 1)
    # linear base: the adjoint is the same for every path
    assert torch.allclose(adj, adj[:, :1].expand_as(adj), rtol=0, atol=1e-13)
    sig = diff.sigma(uniform_grid(K, dtype=torch.float64)[:-1])
    g = _slopes(base, diff, K, noiseless_last=True)
    # controlled mean from X_0 = 0: m_{k+1} = g_k m_k + h sigma_k u_k, u_k = -sigma_k a_{k+1}
    m = 0.0
    for k in range(K - 1):
        m = float(g[k]) * m + (1.0 / K) * float(sig[k]) * (-float(sig[k]) * float(adj[k + 1, 0, 0]))
    m = float(g[K - 1]) * m  # noiseless, uncontrolled last step
    # independent forward recursion of Var(X_K | X_0) of the base chain
    cvar = 0.0
    for k in range(K - 1):
        cvar = float(g[k]) ** 2 * cvar + float(sig[k]) ** 2 / K
    cvar = float(g[K - 1]) ** 2 * cvar
    assert m == pytest.approx(lam_b * cvar, rel=1e-10)
    if which == "memoryless":
        # Var(X_K | X_0) is the chain's full variance up to the O(h^2) residual memory, and
        # near the continuous target lam b s^2 = 0.9 (Euler bias of the offset chain)
        assert cvar == pytest.approx(S2[0], rel=0.03)
        # the fine-tuned ODE v_ft = v_base - eta_k a_{k+1} carries the mean to 0.9
        eta = sig**2 / 2
        mo = 0.0
        for k in range(K):
            a_next = float(adj[k + 1, 0, 0]) if k < K - 1 else 0.0
            v = float(
                base.velocity(
                    torch.tensor([[mo]], dtype=torch.float64),
                    torch.tensor([k / K], dtype=torch.float64),
                )[0, 0]
            )
            mo = mo + (v - float(eta[k]) * a_next) / K
        assert mo == pytest.approx(lam_b * S2[0], abs=0.01)
    else:
        # constant sigma: Var(X_1 | X_0) is ~23 % of Var(X_1) (the biased shift of the notes)
        assert cvar / S2[0] == pytest.approx(0.230, abs=0.01)


def _am1_model(seed: int) -> ResidualVelocity:
    torch.manual_seed(seed)
    corr = TimeMLP(TimeMLPConfig(dim=2, hidden=64, depth=3, time_dim=32, zero_init_last=True))
    return ResidualVelocity(_gaussian_base(), corr)


def _ode_samples(model, n: int, d: int, seed: int) -> torch.Tensor:
    x0 = torch.randn(n, d, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        return solve_ode(model, x0, uniform_grid(200), method="midpoint")


def test_am1_reaches_the_tilted_gaussian(seed: int) -> None:
    # Acceptance 2 (AM-1): base N(0, diag(1.5^2, 0.7^2)), r = b^T x, lam b = (0.4, -0.3);
    # target N(S lam b, S). K = 100, batch 256, 300 steps; ODE samples n = 20,000
    # (mean SE 0.011 / 0.005: the 0.05 bound is > 4 SE).
    base = _gaussian_base()
    res = adjoint_matching(
        base, linear(LAM_B), lam=1.0, model=_am1_model(seed), sample_shape=(2,), steps=300,
        n_time_steps=100, batch_size=256, lr=1e-3, grad_clip=None, generator=seed, progress=False,
    )  # fmt: skip
    x = _ode_samples(res.model, 20_000, 2, seed + 1)
    S = torch.tensor(S2)
    target = S * torch.tensor(LAM_B)
    assert (x.mean(0) - target).abs().max() < 0.05
    assert ((x.var(0) - S).abs() / S).max() < 0.05
    # KL certificate J - J* on the same chain: n = 32,768 per term, SE ~0.004
    cert = kl_certificate(
        base, res.model, linear(LAM_B), 1.0, n=32_768, sample_shape=(2,), generator=seed + 2
    )
    assert abs(cert.value) < 0.02, cert
    assert res.history["step"][-1] == 300
    assert all(math.isfinite(v) for v in res.history["loss"])


@pytest.mark.slow
def test_am1_constant_sigma_reproduces_the_predicted_bias(seed: int) -> None:
    # Acceptance 2, ablation: constant(0.5) converges to the SOC optimum whose mean shift is
    # C lam b with C = Var(X_K | X_0) of the constant-sigma chain (exact recursion), about
    # 23 % / 44 % of the required shift; measured on SDE samples of the same diffusion.
    from tessera.flows import solve_sde

    K = 100
    base = _gaussian_base()
    with pytest.warns(TesseraWarning, match="memoryless"):
        res = adjoint_matching(
            base, linear(LAM_B), lam=1.0, model=_am1_model(seed), sample_shape=(2,), steps=600,
            n_time_steps=K, batch_size=256, lr=1e-3, grad_clip=None, diffusion=constant(0.5),
            generator=seed, progress=False,
        )  # fmt: skip
    C = []
    for var in S2:
        g = _slopes(_gaussian_base((var,)), constant(0.5), K, noiseless_last=True)
        P = 0.0
        for k in range(K - 1):
            P = float(g[k]) ** 2 * P + 0.25 / K
        C.append(float(g[K - 1]) ** 2 * P)
    predicted = torch.tensor(C) * torch.tensor(LAM_B)
    x0 = torch.randn(20_000, 2, generator=torch.Generator().manual_seed(seed + 1))
    # common random numbers: the shift is measured against the base chain driven by the
    # same noise (SE of the difference ~0.001, vs 0.005 for the raw mean)
    xs = solve_sde(res.model, x0, uniform_grid(K), CondOT(), constant(0.5), generator=seed + 2)
    xb = solve_sde(base, x0, uniform_grid(K), CondOT(), constant(0.5), generator=seed + 2)
    shift = (xs - xb).mean(0)
    assert ((shift - predicted).abs() / predicted.abs()).max() < 0.10, (shift, predicted)
    # ... and it fails the target criterion of the memoryless run
    target = torch.tensor(S2) * torch.tensor(LAM_B)
    assert (shift - target).abs().max() > 0.5


@pytest.mark.slow
@pytest.mark.parametrize("which", ["memoryless", "constant"])
def test_am2_mode_reweighting(which: str, seed: int) -> None:
    # Acceptance 3 (AM-2): modes +-2 (sd 0.5), r = x, lam = 0.5: the tilted right-mode
    # weight is 0.881 (the chain's exact optimum 0.8814); constant(0.5) gives ~0.61.
    # Moving mass between modes is slow: measured at seed 0, memoryless 0.845 after 1,000
    # steps, 0.879 after 3,000 (lr 1e-3); constant(0.5) 0.630 after 1,000. The SE of a
    # share from 20,000 ODE samples is 0.002.
    base = GaussianMixtureFlow([0.5, 0.5], [[-2.0], [2.0]], [[[0.25]], [[0.25]]])
    torch.manual_seed(seed)
    model = ResidualVelocity(
        base, TimeMLP(TimeMLPConfig(dim=1, hidden=64, depth=3, time_dim=32, zero_init_last=True))
    )
    diff = "memoryless" if which == "memoryless" else constant(0.5)
    with contextlib.ExitStack() as stack:
        if which != "memoryless":  # the biased ablation warns by design
            stack.enter_context(pytest.warns(TesseraWarning, match="memoryless"))
        res = adjoint_matching(
            base, linear([1.0]), lam=0.5, model=model, sample_shape=(1,),
            steps=3000 if which == "memoryless" else 1000, n_time_steps=100, batch_size=256, lr=1e-3, grad_clip=None, diffusion=diff,
            generator=seed, progress=False,
        )  # fmt: skip
    x = _ode_samples(res.model, 20_000, 1, seed + 1)
    right = float((x > 0).double().mean())
    if which == "memoryless":
        assert abs(right - 0.881) < 0.02
    else:
        assert abs(right - 0.61) < 0.04


def test_base_stays_frozen_and_a_true_copy_is_trained() -> None:
    torch.manual_seed(0)
    base = TimeMLP(TimeMLPConfig(dim=2, hidden=16, depth=1, time_dim=8))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    res = adjoint_matching(
        base,
        linear([1.0, 0.0]),
        lam=1.0,
        steps=3,
        n_time_steps=5,
        batch_size=8,
        lr=1e-2,
        progress=False,
    )
    for k, v in base.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert res.model is not base
    assert any(not torch.equal(v, before[k]) for k, v in res.model.state_dict().items())
    assert all(p.requires_grad for p in base.parameters())  # the caller's module is untouched


def test_loss_is_zero_at_the_base_when_the_reward_is_flat() -> None:
    # r = 0: the lean adjoint is 0 and the base is the optimum; a copy of the base has loss 0
    torch.manual_seed(0)
    base = TimeMLP(TimeMLPConfig(dim=2, hidden=16, depth=1, time_dim=8))
    res = adjoint_matching(
        base, lambda x: 0.0 * x.sum(1), lam=1.0, steps=2, n_time_steps=5, batch_size=8,
        progress=False, log_every=1,
    )  # fmt: skip
    assert res.history["loss"][0] == 0.0


@pytest.mark.parametrize("clip", [None, 2.0])
def test_chunked_loss_gives_the_same_gradient(clip) -> None:
    # the AM loss is a sum over times: accumulating its gradient over blocks of one time
    # must equal one backward pass over all times (float64, so only summation order differs);
    # with clip, clipped trajectories contribute no gradient in either form
    def run(chunk: int, clip=clip) -> dict[str, torch.Tensor]:
        torch.manual_seed(0)
        base = TimeMLP(TimeMLPConfig(dim=2, hidden=16, depth=1, time_dim=8)).double()
        res = adjoint_matching(
            base, quadratic([2.0, -1.0]), lam=1.0, steps=3, n_time_steps=12, batch_size=8,
            lr=1e-2, clip=clip, loss_chunk=chunk, progress=False, log_every=1, generator=0,
        )  # fmt: skip
        return {"state": res.model.state_dict(), "loss": res.history["loss"]}

    one, all_at_once = run(1), run(100)
    for k, v in one["state"].items():
        torch.testing.assert_close(v, all_at_once["state"][k], rtol=1e-10, atol=1e-12)
    assert one["loss"] == pytest.approx(all_at_once["loss"], rel=1e-10)
    if clip is not None:  # the clip was active: the unclipped run moves differently
        free = run(100, clip=None)
        assert any(not torch.allclose(v, free["state"][k]) for k, v in one["state"].items())


@pytest.mark.parametrize("method", ["adjoint_matching", "discrete_adjoint", "draft", "refl"])
def test_resume_reproduces_the_uninterrupted_run(tmp_path, method: str) -> None:
    fns = {
        "adjoint_matching": adjoint_matching,
        "discrete_adjoint": discrete_adjoint,
        "draft": draft,
        "refl": refl,
    }
    fn = fns[method]

    class StopError(Exception):
        pass

    def kill_after_4(step, stats):
        if step == 4:
            raise StopError

    def run(out, resume, on_step=None):
        torch.manual_seed(0)
        base = TimeMLP(TimeMLPConfig(dim=2, hidden=16, depth=1, time_dim=8))
        return fn(
            base, linear([0.5, -0.5]), lam=1.0, steps=6, n_time_steps=6, batch_size=8, lr=1e-2,
            progress=False, out_dir=str(out), checkpoint_every=2, resume=resume, log_every=1,
            on_step=on_step,
        )  # fmt: skip

    full = run(tmp_path / "a", False)
    with pytest.raises(StopError):
        run(tmp_path / "b", False, on_step=kill_after_4)
    resumed = run(tmp_path / "b", True)
    for (k, v), (_, w) in zip(
        full.model.state_dict().items(), resumed.model.state_dict().items(), strict=True
    ):
        assert torch.equal(v, w), k
    assert full.history == resumed.history
    loaded = load_model(tmp_path / "b" / "model")
    assert loaded.extra["finetune"]["method"] == method


def test_nan_reward_stops_training_naming_the_step() -> None:
    torch.manual_seed(0)
    base = TimeMLP(TimeMLPConfig(dim=2, hidden=16, depth=1, time_dim=8))
    calls = {"n": 0}

    def reward(x):
        calls["n"] += 1
        return x.sum(1) * (float("nan") if calls["n"] >= 4 else 1.0)

    with pytest.raises(TrainingDivergedError, match="step"):
        adjoint_matching(
            base, reward, lam=1.0, steps=10, n_time_steps=4, batch_size=4, progress=False
        )
    calls["n"] = 0
    with pytest.raises(TrainingDivergedError, match="step 4"):
        draft(base, reward, lam=1.0, steps=10, n_time_steps=4, batch_size=4, progress=False)


def test_bad_input() -> None:
    base = _gaussian_base()
    mlp = TimeMLP(TimeMLPConfig(dim=2, hidden=8, depth=1, time_dim=8))
    with pytest.raises(ValidationError, match="lam"):
        adjoint_matching(mlp, linear([1.0, 0.0]), lam=0.0, steps=1, progress=False)
    with pytest.raises(ValidationError, match="model="):
        adjoint_matching(base, linear([1.0, 0.0]), lam=1.0, steps=1, progress=False)
    with pytest.raises(ValidationError, match="not differentiable"):
        adjoint_matching(
            mlp, lambda x: x.sum(1).detach(), lam=1.0, steps=1, n_time_steps=3, progress=False
        )
    with pytest.raises(ShapeError, match=r"\(B,\)"):
        adjoint_matching(mlp, lambda x: x, lam=1.0, steps=1, n_time_steps=3, progress=False)
    with pytest.raises(ValidationError, match="diffusion"):
        adjoint_matching(mlp, linear([1.0, 0.0]), lam=1.0, diffusion="loud", progress=False)
    with pytest.raises(ValidationError, match="itself"):
        adjoint_matching(mlp, linear([1.0, 0.0]), lam=1.0, model=mlp, progress=False)
    with pytest.raises(ValidationError, match="sample_shape"):
        adjoint_matching(
            base,
            linear([1.0, 0.0]),
            lam=1.0,
            model=ResidualVelocity(base, TimeMLP(TimeMLPConfig(dim=2))),
            progress=False,
        )
    with pytest.raises(ValidationError, match="out_dir"):
        FineTuneConfig(checkpoint_every=5)
    with pytest.raises(UnsupportedError, match="method"):
        FineTuneConfig(method="dpo")
    with pytest.raises(ValidationError, match="k = 9"):
        draft(mlp, linear([1.0, 0.0]), k=9, n_time_steps=4, progress=False)


def test_rewards() -> None:
    x = torch.tensor([[1.0, 2.0], [0.0, -1.0]], requires_grad=True)
    assert linear([1.0, 1.0])(x).tolist() == [3.0, -1.0]
    assert quadratic([1.0, 2.0], weight=2.0)(x).tolist() == [0.0, -10.0]
    clf = classifier_log_prob(lambda z: torch.stack([z[:, 0], z[:, 1]], 1), 1)
    expected = torch.log_softmax(x.detach(), 1)[:, 1]
    assert torch.allclose(clf(x), expected)
    with pytest.raises(ShapeError):
        linear([1.0, 2.0, 3.0])(x)
    with pytest.raises(ValidationError, match="class"):
        classifier_log_prob(lambda z: z, 5)(x)
    with pytest.raises(ValidationError, match="target"):
        classifier_log_prob(lambda z: z, -1)
    with pytest.raises(ShapeError, match=r"\(B,\)"):
        as_reward(lambda z: z)(x)
    r = parse_reward("linear:0.4,-0.3", dim=2)
    assert torch.allclose(r(x), x @ torch.tensor([0.4, -0.3]))
    with pytest.raises(UnsupportedError, match="linear"):
        parse_reward("banana:1")
    with pytest.raises(ValidationError, match="2 coordinates"):
        parse_reward("linear:1,2,3", dim=2)
    with pytest.raises(ValidationError, match="digit"):
        parse_reward("classifier:x", dataset="digits")
    with pytest.raises(ValidationError, match="digits or mnist5k"):
        parse_reward("classifier:3", dataset="moons")
