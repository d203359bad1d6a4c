"""Simulated experiments: variance reduction (acceptance 4), coverage (3) and diagnostics."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from tessera.errors import UnsupportedError, ValidationError
from tessera.interference.bipartite import SparsityWarning, ca_erl, erl, exact_design_variance
from tessera.interference.simulate import bipartite


def test_simulate_is_seeded_and_normalised(seed: int) -> None:
    a = bipartite(300, 60, graph="dense", rng=seed)
    b = bipartite(300, 60, graph="dense", rng=seed)
    np.testing.assert_array_equal(a.weight, b.weight)
    np.testing.assert_array_equal(a.z, b.z)
    rows = np.asarray(a.weights_matrix().sum(axis=1)).ravel()
    np.testing.assert_allclose(rows, 1.0, rtol=1e-12)
    assert a.true_effect == pytest.approx(a.beta.mean())
    # r2 is the population share of Var(alpha) explained by y_pre
    big = bipartite(50_000, 10, r2=0.6, rng=seed)
    r2 = np.corrcoef(big.alpha, big.y_pre)[0, 1] ** 2
    assert r2 == pytest.approx(0.6, abs=0.02)  # SE of r2 at n=5e4 is ~0.003
    c = a.redraw(seed + 1)
    assert not np.array_equal(c.z, a.z) and np.array_equal(c.alpha, a.alpha)


def test_simulate_rejects_bad_arguments() -> None:
    with pytest.raises(ValidationError, match="p must lie"):
        bipartite(10, 5, p=1.0)
    with pytest.raises(ValidationError, match="r2"):
        bipartite(10, 5, r2=1.5)
    with pytest.raises(UnsupportedError, match="graph"):
        bipartite(10, 5, graph="complete")  # type: ignore[arg-type]


GRID = [
    (g, tau, r2, level)
    for g in ("sparse", "dense")
    for tau in (0.5, 5.0, 20.0)
    for r2 in (0.6, 0.8, 0.95)
    for level in (10.0, 0.0)
]


def test_variance_reduction_grid(seed: int) -> None:
    """Acceptance 4 with exact design variances (no Monte Carlo error): with y_pre explaining
    >= 60% of the control-outcome variance, in-sample CA-ERL (the recommended adjustment,
    refit and bias correction included) has <= 0.5x ERL's variance in every cell of
    graph x tau x r2 x level (measured at seed 0: reductions 64-99.96%).

    Pre-period CA-ERL (fixed h = y_pre) meets it only while the outcome level dominates
    tau * p: at level 10 (reductions 74-99.9%). At level 0 a fixed h cannot remove the
    location tau * p of Y - h, so the reduction collapses (dense, tau = 5: -5%); that
    documented limitation is asserted too, so the docs cannot drift from the numbers.
    """
    ratio_in, ratio_pre = {}, {}
    for graph, tau, r2, level in GRID:
        sim = bipartite(2000, 400, graph=graph, tau=tau, r2=r2, level=level, rng=seed)
        W = sim.weights_matrix()
        v_erl = exact_design_variance(W, sim.p, sim.alpha, sim.beta).total
        v_pre = exact_design_variance(W, sim.p, sim.alpha - sim.y_pre, sim.beta).total
        dv_in = exact_design_variance(W, sim.p, sim.alpha, sim.beta, covariates=sim.y_pre)
        # the in-sample estimand is a design-weighted mean of the slopes: close to mean(beta)
        assert abs(dv_in.mean - sim.true_effect) < 0.05 * np.sqrt(dv_in.total)
        key = (graph, tau, r2, level)
        ratio_in[key], ratio_pre[key] = dv_in.total / v_erl, v_pre / v_erl
    assert max(ratio_in.values()) <= 0.5, ratio_in
    assert max(r for k, r in ratio_pre.items() if k[3] == 10.0) <= 0.5, ratio_pre
    assert ratio_pre[("dense", 5.0, 0.8, 0.0)] > 0.9, ratio_pre  # the documented limitation
    # more explained variance, more reduction (level 0, small tau: driven by r2 alone)
    seq = [ratio_in[("sparse", 0.5, r2, 0.0)] for r2 in (0.6, 0.8, 0.95)]
    assert seq == sorted(seq, reverse=True)
    assert seq[0] > 2 * seq[-1]


def test_hub_graph_triggers_the_diagnostic(seed: int) -> None:
    sim = bipartite(2000, 400, graph="hub", tau=2.0, rng=seed)
    with pytest.warns(SparsityWarning, match="edge weight"):
        r = erl(*sim.tables(), engine="numpy")
    assert r.diagnostics["sparsity"]["clt_doubtful"]
    assert r.diagnostics["sparsity"]["max_weight_share"] > 0.05
    for graph in ("sparse", "dense"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", SparsityWarning)
            r = erl(*bipartite(2000, 400, graph=graph, rng=seed).tables(), engine="numpy")
        assert not r.diagnostics["sparsity"]["clt_doubtful"]


def _coverage(graph: str, tau: float, reps: int, seed: int) -> dict[str, float]:
    # the dense graph needs more randomization units for the CLT: at (2000, 400) each unit
    # touches ~5% of the analysis units and ERL's SE is ~5% low (coverage ~0.90 measured)
    n, m = (2000, 400) if graph == "sparse" else (6000, 1200)
    # slope_sd=0.25 (simulate's default is 0.5): the negative control then fails clearly
    base = bipartite(n, m, graph=graph, tau=tau, r2=0.95, slope_sd=0.25, rng=seed)
    seqs = np.random.SeedSequence(seed).spawn(reps)
    hits: dict[str, list[bool]] = {k: [] for k in ("erl", "ca_pre", "ca_in", "ca_in_linear")}
    truth = base.true_effect
    for s in seqs:
        e, a, o = base.redraw(np.random.default_rng(s)).tables()
        res = {
            "erl": erl(e, a, o, engine="numpy"),
            "ca_pre": ca_erl(
                e, a, o, covariates=["y_pre"], adjustment="pre_period", engine="numpy"
            ),
            "ca_in": ca_erl(e, a, o, covariates=["y_pre"], adjustment="in_sample", engine="numpy"),
        }
        for k, r in res.items():
            hits[k].append(r.ci_low <= truth <= r.ci_high)
        # negative control from the same fit: the linear term alone (variance="linear")
        r = res["ca_in"]
        half = 1.959963984540054 * np.sqrt(r.diagnostics["variance_terms"]["linear"])
        hits["ca_in_linear"].append(abs(r.estimate - truth) <= half)
    return {k: float(np.mean(v)) for k, v in hits.items()}


@pytest.mark.slow
@pytest.mark.statistical
@pytest.mark.parametrize("graph", ["sparse", "dense"])
def test_wald_coverage_and_negative_control(graph: str, seed: int) -> None:
    """Acceptance 3. H0: the 95% Wald interval covers mean(beta) with probability 0.95.

    Test: coverage over R = 1000 re-randomizations must lie in [0.93, 0.97] for ERL,
    pre-period CA-ERL and in-sample CA-ERL (the band the issue fixes: +-2.9 binomial SE,
    so alpha ~ 4e-3 per check under H0; it detects a coverage of 0.90 with power
    > 0.999). Measured at seed 0 (ERL / pre-period / in-sample): sparse 0.944 / 0.943 /
    0.944, dense 0.954 / 0.952 / 0.943. Negative control: the linear-only variance
    (quadratic and cross terms dropped) for in-sample CA-ERL at tau = 20 must cover
    < 0.90 (measured 0.617 sparse, 0.768 dense): the check can see the failure the paper
    describes.
    """
    cov = _coverage(graph, 20.0, 1000, seed)
    for k in ("erl", "ca_pre", "ca_in"):
        assert 0.93 <= cov[k] <= 0.97, cov
    assert cov["ca_in_linear"] < 0.90, cov
