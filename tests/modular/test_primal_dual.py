"""Stochastic primal-dual fit against the exact robust solution of small finite instances."""

import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from modular import TabularGate, fit_robust_gate, kl_project_capped_simplex
from modular.z_estimators import BiasedEstimatorWarning
from tests.modular.modular_instances import entropies, enumerated_sets, excess_game_reference, finite_instance, tabular_q
from theory.divergences import kl
from theory import PriorSet, solve_robust
from theory.errors import InfeasibleLambdaError, InvalidOptionError, ShapeMismatchError

INSTANCES = [(12, 2, 0), (20, 3, 1), (30, 3, 2)]


def _fit(D, P, **kw):
    p, n = D.shape
    domains, experts = enumerated_sets(D, P)
    kw.setdefault("entropies", entropies(D))
    kw.setdefault("batch_size", None)
    kw.setdefault("steps", 1000)
    return fit_robust_gate(TabularGate(n, p), domains, experts, device="cpu", **kw)


@pytest.mark.parametrize("n,p,seed", INSTANCES)
def test_reaches_exact_robust_value(n, p, seed):
    D, P = finite_instance(n, p, seed)
    exact = solve_robust(D, P)
    value, lam_star = exact.value, exact.lam
    res = _fit(D, P)
    q = tabular_q(res.gate_state["logits"].numpy(), P)
    assert abs(res.value - value) < 0.02
    assert np.abs(res.lam - lam_star).sum() < 0.1
    assert abs(res.z - 1) < 0.01
    # The reported per-domain KLs are those of the fitted gated model, recomputed in numpy.
    np.testing.assert_allclose(res.kl, kl(D, q), atol=1e-10)
    np.testing.assert_allclose(res.z, q.sum(), atol=1e-12)
    assert res.z_estimator == "importance" and res.z_unbiased


def test_training_curves_recorded_and_settle():
    D, P = finite_instance(20, 3, 1)
    lam_star = solve_robust(D, P).lam
    res = _fit(D, P, log_every=10)
    h = res.history
    assert h["lam"].shape == (100, 3) and h["nll"].shape == (100, 3) and h["adversary_loss"].shape == (100, 3)
    for key in ("step", "mu", "z", "z_ema", "loss"):
        assert h[key].shape == (100,)
    np.testing.assert_array_equal(h["step"], np.arange(10, 1001, 10))
    np.testing.assert_allclose(h["lam"].sum(axis=1), 1, atol=1e-12)
    # The last logged tenth: Z pinned at one, lam at lam*, mu at its limit.
    tail = slice(90, None)
    assert np.abs(h["z"][tail] - 1).max() < 0.01
    assert np.abs(h["lam"][tail] - lam_star).sum(axis=1).max() < 0.1
    assert np.ptp(h["mu"][tail]) < 0.05


def _entropy_gap_instance():
    """Two domains with very different entropies and experts of comparable quality."""
    n = 16
    rng = np.random.default_rng(5)
    low = np.full(n, 1e-3)
    low[:3] = [0.6, 0.25, 0.15]
    high = np.ones(n) + 0.3 * rng.random(n)
    D = np.vstack([low / low.sum(), high / high.sum()])
    P = 0.8 * D + 0.2 * D[::-1]
    return D, P


def test_raw_nll_adversary_chases_the_high_entropy_domain():
    D, P = _entropy_gap_instance()
    H = entropies(D)
    assert H[1] > H[0] + 1.5
    exact = solve_robust(D, P)
    value, lam_star = exact.value, exact.lam
    res_kl = _fit(D, P, adversary="kl")
    res_nll = _fit(D, P, adversary="nll")
    assert np.abs(res_kl.lam - lam_star).sum() < 0.1 and abs(res_kl.value - value) < 0.02
    # Group DRO on raw NLL puts (nearly) all weight on the high-entropy domain ...
    assert res_nll.lam[1] > 0.95 > lam_star[1] + 0.2
    # ... and solves the cross-entropy game, whose KL-worst case is worse than the robust value.
    assert res_nll.value > value + 0.02
    offsets = -H  # raw NLL = KL + H: the cross-entropy game is the KL game with offsets -H
    _, lam_ce, _ = excess_game_reference(D, P, offsets)
    assert np.abs(res_nll.lam - lam_ce).sum() < 0.1


def test_excess_adversary_solves_the_game_shifted_by_expert_errors():
    D, P = finite_instance(20, 3, 1)
    eps = kl(D, P)
    value, lam_ref, _ = excess_game_reference(D, P, eps)
    res = _fit(D, P, adversary="excess")
    assert np.abs(res.lam - lam_ref).sum() < 0.1
    assert abs((res.kl - eps).max() - value) < 0.02
    # The logged adversary losses are KL_k - eps_k (full batch: exact).
    np.testing.assert_allclose(res.history["adversary_loss"][-1], res.history["nll"][-1] - entropies(D) - eps,
                               atol=1e-10)


def test_lambda_bounds_match_the_restricted_game():
    D, P = finite_instance(20, 3, 1)
    lo, hi = np.array([0.0, 0.5, 0.0]), np.array([1.0, 1.0, 0.2])
    exact = solve_robust(D, P, prior=PriorSet(3, lower=lo, upper=hi))
    value, lam_ref = exact.value, exact.lam
    res = _fit(D, P, prior=PriorSet(3, lower=lo, upper=hi))
    assert np.all(res.lam >= lo - 1e-12) and np.all(res.lam <= hi + 1e-12)
    assert np.abs(res.lam - lam_ref).sum() < 0.1
    assert abs(float(res.lam @ res.kl) - value) < 0.02
    with pytest.raises(InfeasibleLambdaError, match="lower"):
        _fit(D, P, prior=PriorSet(3, lower=[0.6, 0.6, 0.0], upper=[1, 1, 1]), steps=1)
    with pytest.raises(InvalidOptionError, match="PriorSet"):
        _fit(D, P, prior=(lo, hi), steps=1)  # a bare (lower, upper) pair is refused


def test_projection_is_the_kl_projection_onto_the_capped_simplex():
    from scipy.optimize import minimize

    rng = np.random.default_rng(0)
    for _ in range(5):
        v = rng.dirichlet(np.ones(4))
        lo = np.array([0.05, 0.0, 0.3, 0.0])
        hi = np.array([0.2, 1.0, 1.0, 0.25])
        lam = kl_project_capped_simplex(torch.tensor(v), torch.tensor(lo), torch.tensor(hi)).numpy()
        ref = minimize(lambda x: np.sum(x * np.log(x / v)), x0=np.clip(np.full(4, 0.25), lo + 1e-9, hi),
                       bounds=list(zip(np.maximum(lo, 1e-12), hi)), constraints=[{"type": "eq", "fun": lambda x: x.sum() - 1}],
                       method="SLSQP", options={"ftol": 1e-14, "maxiter": 500})
        np.testing.assert_allclose(lam.sum(), 1, atol=1e-12)
        np.testing.assert_allclose(lam, ref.x, atol=1e-6)


def test_stochastic_minibatches_get_close():
    D, P = finite_instance(30, 3, 2)
    exact = solve_robust(D, P)
    value, lam_star = exact.value, exact.lam
    # Minibatches of 16 of 30 weighted outcomes per set: the population objective in
    # expectation only; the cosine schedule anneals the gate's noise (seeds 3 and 4 measured
    # 0.028 / 0.005 nats, 0.02 / 0.07 in L1, Z within 0.008).
    res = _fit(D, P, batch_size=16, steps=3000, lr_schedule="cosine", seed=3)
    assert abs(res.value - value) < 0.04
    assert np.abs(res.lam - lam_star).sum() < 0.15
    assert abs(res.z - 1) < 0.02


def test_determinism_under_a_seed():
    D, P = finite_instance(20, 3, 1)
    a = _fit(D, P, batch_size=8, steps=200, seed=7)
    b = _fit(D, P, batch_size=8, steps=200, seed=7)
    c = _fit(D, P, batch_size=8, steps=200, seed=8)
    assert torch.equal(a.gate_state["logits"], b.gate_state["logits"])
    np.testing.assert_array_equal(a.history["lam"], b.history["lam"])
    assert not torch.equal(a.gate_state["logits"], c.gate_state["logits"])


class _Interrupt(Exception):
    pass


def test_resume_from_checkpoint_reaches_the_same_result(tmp_path):
    D, P = finite_instance(20, 3, 1)
    kw = dict(batch_size=8, steps=300, seed=4, checkpoint_every=50, lr_schedule="cosine")
    full = _fit(D, P, **kw)

    def stop(step, record):
        if step == 170:
            raise _Interrupt

    path = tmp_path / "fit.pt"
    with pytest.raises(_Interrupt):
        _fit(D, P, checkpoint=path, callback=stop, **kw)
    assert torch.load(path, weights_only=False)["step"] == 150
    resumed = _fit(D, P, checkpoint=path, **kw)
    assert torch.equal(full.gate_state["logits"], resumed.gate_state["logits"])
    np.testing.assert_array_equal(full.lam, resumed.lam)
    np.testing.assert_array_equal(full.history["lam"], resumed.history["lam"])
    np.testing.assert_array_equal(full.history["mu"], resumed.history["mu"])
    assert full.mu == resumed.mu and full.z_ema == resumed.z_ema
    with pytest.raises(InvalidOptionError, match="other settings"):
        _fit(D, P, checkpoint=path, **dict(kw, lr=0.1))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA not available")
def test_cuda_matches_cpu():
    D, P = finite_instance(20, 3, 1)
    domains, experts = enumerated_sets(D, P)
    kw = dict(entropies=entropies(D), batch_size=8, steps=300, seed=2)
    cpu = fit_robust_gate(TabularGate(20, 3), domains, experts, device="cpu", **kw)
    gpu = fit_robust_gate(TabularGate(20, 3), domains, experts, device="cuda", **kw)
    assert gpu.device.startswith("cuda")
    np.testing.assert_allclose(gpu.lam, cpu.lam, atol=1e-8)
    np.testing.assert_allclose(gpu.gate_state["logits"].numpy(), cpu.gate_state["logits"].numpy(), atol=1e-7)
    np.testing.assert_allclose(gpu.kl, cpu.kl, atol=1e-8)


def test_data_shortcut_is_labelled_and_warned():
    D, P = finite_instance(12, 2, 0)
    domains, _ = enumerated_sets(D, P)
    with pytest.warns(BiasedEstimatorWarning, match="biased"):
        res = fit_robust_gate(TabularGate(12, 2), domains, None, entropies=entropies(D), steps=5, batch_size=None)
    assert res.z_estimator == "data-shortcut" and not res.z_unbiased and res.z_check is None


def test_fit_with_the_data_shortcut_misses_the_robust_value():
    """Experts differ from their domains: the shortcut constrains the wrong mass and the fit
    lands 0.08 nats above the exact robust value (measured), where the unbiased one is exact."""
    D, P = finite_instance(20, 3, 1)
    value = solve_robust(D, P).value
    domains, _ = enumerated_sets(D, P)
    with pytest.warns(BiasedEstimatorWarning):
        res = fit_robust_gate(TabularGate(20, 3), domains, None, entropies=entropies(D), steps=1000, batch_size=None)
    assert res.z == pytest.approx(1, abs=1e-3)  # the constraint it enforces holds ...
    assert res.value > value + 0.05  # ... but it is not Z = 1 of the gated model's optimum


def test_bad_options():
    D, P = finite_instance(12, 2, 0)
    domains, experts = enumerated_sets(D, P)
    gate = TabularGate(12, 2)
    with pytest.raises(InvalidOptionError, match="entropies"):
        fit_robust_gate(gate, domains, experts, adversary="kl")
    with pytest.raises(InvalidOptionError, match="adversary"):
        fit_robust_gate(gate, domains, experts, adversary="dro")
    with pytest.raises(InvalidOptionError, match="needs samples drawn from every expert"):
        fit_robust_gate(gate, domains, None, adversary="nll", z_estimator="importance")
    with pytest.raises(ShapeMismatchError, match="entropies"):
        fit_robust_gate(gate, domains, experts, entropies=[1.0, 2.0, 3.0])
    with pytest.raises(ShapeMismatchError, match="one per expert"):
        fit_robust_gate(gate, domains[:1], experts, adversary="nll")
    with pytest.raises(InvalidOptionError, match="lr_schedule"):
        fit_robust_gate(gate, domains, experts, adversary="nll", lr_schedule="step")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        with pytest.raises(InvalidOptionError, match="CUDA") if not torch.cuda.is_available() else pytest.raises(
                InvalidOptionError, match="choose"):
            fit_robust_gate(gate, domains, experts, adversary="nll", device="cuda" if not torch.cuda.is_available()
                            else "mps")


@settings(max_examples=40, deadline=None)
@given(st.integers(2, 6), st.integers(0, 10_000))
def test_projection_properties(p, seed):
    """Feasible, idempotent, and of the form clip(c v, lo, hi) (the KKT conditions)."""
    rng = np.random.default_rng(seed)
    v = rng.dirichlet(np.ones(p) * 0.5) + 1e-12
    lo = rng.uniform(0, 1 / p, size=p) * rng.integers(0, 2, size=p)
    hi = np.maximum(lo, rng.uniform(1 / p, 1, size=p))
    lam = kl_project_capped_simplex(torch.tensor(v), torch.tensor(lo), torch.tensor(hi)).numpy()
    assert abs(lam.sum() - 1) < 1e-9 and np.all(lam >= lo - 1e-15) and np.all(lam <= hi + 1e-15)
    free = (lam > lo + 1e-9) & (lam < hi - 1e-9)
    if free.sum() > 1:
        ratio = lam[free] / v[free]
        assert np.ptp(ratio) < 1e-6 * ratio.max()
    again = kl_project_capped_simplex(torch.tensor(lam), torch.tensor(lo), torch.tensor(hi)).numpy()
    np.testing.assert_allclose(again, lam, atol=1e-9)
