"""Each claim function on hand-checkable cases (closed-form answers)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.bounds import expert_errors, static_barrier, static_weights
from theory.claims import distillation as dist
from theory.claims.algorithm import fitted_slope
from theory.claims.fixed import check_jsd_identity, check_prop2, check_thm14, experts_within_domains
from theory.claims.generalisation import check_thm9, random_partition
from theory.claims.instances import REGIMES, make_instance, random_weights
from theory.claims.monolithic import ExponentialFamily, check_thm6, check_thm7, kl_to_log_model, mixture_mle
from theory.claims.record import EQUAL, LOWER, OBSERVATION, UPPER, Check
from theory.claims.robust import (
    box_priors,
    check_least_favorable,
    check_thm3,
    check_thm3_ensemble,
    check_thm3_regimes,
    check_thm4_5,
)
from theory.claims.support import COUNTEREXAMPLE_D, COUNTEREXAMPLE_P, check_lemma1, leaky_support_instance
from theory.divergences import jsd, kl
from theory.gates import constant_gate, gate_mass, require_nonempty_G1
from theory.errors import EmptyGateSpaceError

FAST = settings(max_examples=15, deadline=None)


def by_part(checks):
    out = {}
    for c in checks:
        out.setdefault(c.part, []).append(c)
    return out


def test_check_slack_conventions():
    assert Check("a", UPPER, 2.0, 1.5).slack == pytest.approx(0.5)
    assert Check("a", LOWER, 2.0, 1.5).slack == pytest.approx(-0.5)
    assert Check("a", EQUAL, 2.0, 1.5).slack == pytest.approx(-0.5)
    assert Check("a", LOWER, 2.0, 1.5).violated
    assert not Check("a", OBSERVATION, 0.0, 5.0).violated
    assert not Check("a", UPPER, 1.0, 1.0 + 5e-8).violated
    with pytest.raises(ValueError, match="kind"):
        Check("a", "sideways", 0.0, 0.0)


@pytest.mark.parametrize("regime", REGIMES)
def test_instances_are_valid(regime):
    inst = make_instance(regime, 3, 9, 0.4, np.random.default_rng(0))
    np.testing.assert_allclose(inst.D.sum(axis=1), 1.0)
    np.testing.assert_allclose(inst.P.sum(axis=1), 1.0)
    assert np.isfinite(expert_errors(inst.D, inst.P)).all()
    if regime == "disjoint":
        assert experts_within_domains(inst)
    if regime == "disjoint-leaky":
        assert not experts_within_domains(inst)


def test_prop2_equality_for_disjoint_experts():
    """Disjoint experts: KL(D_lam || P_lam) = sum lam_k eps_k exactly (no cross terms)."""
    inst = make_instance("disjoint", 3, 9, 0.4, np.random.default_rng(1))
    checks = check_prop2(inst, random_weights(3, np.random.default_rng(2), 4))
    assert all(abs(c.slack) < 1e-12 for c in checks)


def test_jsd_identity_on_disjoint_domains():
    """Disjoint domains: JSD_lam = H(lam)."""
    inst = make_instance("disjoint", 2, 4, 0.4, np.random.default_rng(3))
    checks = by_part(check_jsd_identity(inst, np.array([[0.5, 0.5]]), np.random.default_rng(4)))
    assert checks["JSD_lam <= H(lam)"][0].slack == pytest.approx(0.0, abs=1e-12)
    assert checks["identity"][0].slack == pytest.approx(0.0, abs=1e-12)


def test_thm14_disjoint_experts_reach_the_barrier():
    """Disjoint domains and experts: best static value log sum exp(eps), at weights softmax(eps)."""
    inst = make_instance("disjoint", 3, 9, 0.5, np.random.default_rng(5))
    checks = by_part(check_thm14(inst))
    eps = expert_errors(inst.D, inst.P)
    barrier = checks["best static worst-case KL >= log sum exp(eps)"][0]
    assert barrier.truth == pytest.approx(static_barrier(eps), abs=1e-7)
    np.testing.assert_allclose(barrier.quantities["best_static_weights"], static_weights(eps), atol=1e-5)
    assert not any(c.violated for cs in checks.values() for c in cs)


def test_thm14_fails_with_identical_experts_on_disjoint_domains():
    """The hand-checked counterexample: one shared expert, so every static gate gives max eps < LSE(eps)."""
    D = np.array([[0.5, 0.5, 0.0, 0.0], [0.0, 0.0, 0.5, 0.5]])
    P = np.tile([0.4, 0.4, 0.1, 0.1], (2, 1))
    inst = make_instance("disjoint", 2, 4, 0.5, np.random.default_rng(0))
    inst.D, inst.P = D, P
    checks = by_part(check_thm14(inst))
    c = checks["best static worst-case KL >= log sum exp(eps)"][0]
    eps = expert_errors(D, P)
    assert c.truth == pytest.approx(eps.max(), abs=1e-7)
    assert c.violated and c.meets_assumption is False


def test_thm3_holds_and_is_tight_for_identical_experts():
    inst = make_instance("identical-experts", 3, 6, 0.5, np.random.default_rng(6))
    checks = by_part(check_thm3(inst, np.eye(3)))
    assert not any(c.violated for c in checks["KL(D_lam||pi_g*) <= Thm 3 bound"])
    # at the vertex of the worst domain the bound max eps - 0 is attained
    assert max(c.slack for c in checks["KL(D_lam||pi_g*) <= Thm 3 bound"]) > -1e-6
    assert min(abs(c.slack) for c in checks["KL(D_lam||pi_g*) <= Thm 3 bound"]) < 1e-6


def test_thm3_regimes_disjoint_value_is_log_p_for_broad_experts():
    """Disjoint domains with pi_k >= D_k/p: the robust value is exactly log p."""
    inst = make_instance("disjoint", 3, 9, 0.3, np.random.default_rng(7), unequal=False)
    checks = by_part(check_thm3_regimes(inst, np.eye(3)))
    c = checks["disjoint domains, pi_k >= D_k/p: robust value <= log p (as summarised)"][0]
    assert c.truth == pytest.approx(np.log(3), abs=1e-7)
    assert c.meets_assumption and not c.violated


def test_thm3_ensemble_hand_checked():
    """Identical experts pi on two domains: the robust gate is pi, the worst case is max eps,
    which exceeds sum sigma_k eps_k when the errors differ; the derivation is attained at lam*."""
    D = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6]])
    P = np.tile([0.3, 0.4, 0.3], (2, 1))
    inst = make_instance("identical-experts", 2, 3, 0.5, np.random.default_rng(0))
    inst.D, inst.P = D, P
    eps = expert_errors(D, P)
    checks = by_part(check_thm3_ensemble(inst, np.eye(2)))
    paper = checks["reading 1, identical experts: KL(D_lam||pi_g*) <= sum sigma_k eps_k"]
    derivation = checks["identical experts: KL(D_lam||pi_g*) <= sum lam*_k eps_k - JSD_lam (Thm 3 specialised)"]
    worst = int(np.argmax(eps))
    assert paper[worst].truth == pytest.approx(eps.max(), abs=1e-7)
    assert paper[worst].bound == pytest.approx(static_weights(eps) @ eps)
    assert paper[worst].violated and paper[worst].meets_assumption
    assert not any(c.violated for c in derivation)
    assert derivation[worst].slack == pytest.approx(0.0, abs=1e-7)


def test_least_favorable_support_and_optimality():
    inst = make_instance("random", 3, 8, 0.5, np.random.default_rng(8))
    family = ExponentialFamily.random(inst.n, 2, np.random.default_rng(9))
    checks = check_least_favorable(inst, random_weights(3, np.random.default_rng(10), 3), family)
    assert not any(c.violated for c in checks)
    assert checks[-1].kind == OBSERVATION


def test_thm4_5_value_drop_and_lipschitz():
    inst = make_instance("overlapping", 3, 8, 0.5, np.random.default_rng(11))
    checks = check_thm4_5(inst, box_priors(3, np.random.default_rng(12), (0.3, 0.9)))
    assert not any(c.violated for c in checks)
    assert all(-1e-6 <= c.quantities["ratio"] <= c.quantities["lipschitz_from_solution"] + 1e-6 for c in checks)
    # the a-priori constant dominates the one read off the restricted solution
    assert all(c.quantities["lipschitz_from_solution"] <= c.quantities["lipschitz_a_priori"] + 1e-9
               for c in checks)


def test_exponential_family_matches_moments():
    rng = np.random.default_rng(13)
    fam = ExponentialFamily.random(10, 3, rng)
    target = rng.dirichlet(np.ones(10))
    model = np.exp(fam.fit(target))
    np.testing.assert_allclose(model.sum(), 1.0)
    np.testing.assert_allclose(model @ fam.features, target @ fam.features, atol=1e-6)


def test_exponential_family_keeps_full_support_on_disjoint_targets():
    """A far-off target drives some log-probabilities below the float64 range of exp."""
    fam = ExponentialFamily(np.linspace(-50, 50, 12)[:, None])
    target = np.zeros(12)
    target[-2:] = 0.5
    log_model = fam.fit(target)
    assert np.isfinite(log_model).all()
    assert kl_to_log_model(np.full(12, 1 / 12), log_model) > 0


def test_mixture_mle_disjoint_components():
    """Components on disjoint supports: the MLE weights are the target's masses on them."""
    comps = np.array([[0.5, 0.5, 0.0], [0.0, 0.0, 1.0]])
    w, value, cert = mixture_mle(np.array([0.3, 0.3, 0.4]), comps)
    np.testing.assert_allclose(w[0], [0.6, 0.4], atol=1e-9)
    assert value[0] == pytest.approx(0.0, abs=1e-9)
    assert cert[0] <= 1e-10


def test_thm6_monolithic_barrier_holds():
    inst = make_instance("disjoint", 2, 6, 0.3, np.random.default_rng(14))
    checks = check_thm6(inst, np.array([[0.5, 0.5]]), ExponentialFamily.random(6, 2, np.random.default_rng(15)))
    assert not any(c.violated for c in checks)


def test_thm7_perfect_experts_lose_nothing():
    inst = make_instance("perfect", 3, 6, 0.3, np.random.default_rng(16))
    checks = check_thm7(inst, random_weights(3, np.random.default_rng(17), 2), np.random.default_rng(18))
    assert not any(c.violated for c in checks)
    assert all(c.meets_assumption for c in checks if c.meets_assumption is not None)


def test_thm7_refit_differs_from_P_lam_for_imperfect_experts():
    inst = make_instance("random", 2, 6, 0.8, np.random.default_rng(19))
    checks = by_part(check_thm7(inst, np.array([[0.5, 0.5]]), np.random.default_rng(20)))
    c = checks["refit on D_lam = sum lam_k pi_k"][0]
    assert c.violated and c.meets_assumption is False
    assert not checks["best gate <= refit mixture of experts"][0].violated


def test_lemma1_counterexample():
    checks = by_part(check_lemma1(COUNTEREXAMPLE_D, COUNTEREXAMPLE_P))
    on_support = checks["G1 with the gate on the data support is non-empty"][0]
    assert on_support.truth == pytest.approx(0.9) and on_support.violated
    assert not checks["G1 with the gate on all outcomes is non-empty"][0].violated
    assert not checks["G1 after renormalising experts on the support is non-empty"][0].violated
    assert not checks["require_nonempty_G1 detects the empty case"][0].violated
    with pytest.raises(EmptyGateSpaceError, match="support"):
        require_nonempty_G1(COUNTEREXAMPLE_P, support=[True, False])
    # the gate on the whole space (g = 1 on the single expert) has mass one
    assert gate_mass(constant_gate([1.0], 2), COUNTEREXAMPLE_P) == pytest.approx(1.0)


@FAST
@given(st.integers(1, 3), st.integers(2, 8), st.floats(0.05, 0.9), st.integers(0, 2**31))
def test_lemma1_renormalised_experts_always_have_nonempty_G1(p, n, leak, seed):
    D, P = leaky_support_instance(p, n, leak, np.random.default_rng(seed), renormalise=True)
    assert not any(c.violated for c in check_lemma1(D, P))


def test_fitted_slope_recovers_power_law():
    T = np.logspace(1, 4, 20)
    assert fitted_slope(T, 3.0 / np.sqrt(T)) == pytest.approx(-0.5)


@pytest.fixture(scope="module")
def bigram():
    return dist.random_bigram_instance(2, 2, 3, 0.3, np.random.default_rng(21))


def test_bayes_router_reproduces_static_gate(bigram):
    """A static gate: pi_g is a routed model, and the posterior router reproduces it exactly."""
    gate = constant_gate([0.3, 0.7], 8)
    q = np.einsum("nk,kn->n", gate, bigram.P)
    np.testing.assert_allclose(dist.routed_model(bigram, dist.bayes_router(bigram, gate)), q, atol=1e-14)


def test_thm18_static_gate_inequality_is_strict(bigram):
    gate = constant_gate([0.3, 0.7], 8)
    checks = by_part(dist.check_thm18(bigram, gate, np.random.default_rng(22), static=True,
                                      noise_scales=(0.0, 1.0)))
    upper = checks["sequences: KL(pi_g||r_gamma) <= summed router KL"]
    assert not any(c.violated for c in upper)
    assert upper[0].truth == pytest.approx(0.0, abs=1e-12)
    assert upper[1].truth < upper[1].bound - 1e-3  # strict: only "<=" holds
    assert checks["sequences: KL(pi_g||r_gamma) = summed router KL"][1].violated


def test_best_router_is_optimal_among_routers(bigram):
    """The per-prefix mixture MLE is at least as good as the Bayes and perturbed routers, for
    the static gate and for the exact robust (input-dependent) gate."""
    rng = np.random.default_rng(23)
    for gate, _ in dist.thm18_gates(bigram, rng):
        q = np.einsum("nk,kn->n", gate, bigram.P)
        routers, cert = dist.best_router(bigram, q)
        best = kl(q, dist.routed_model(bigram, routers))
        star = dist.bayes_router(bigram, gate)
        for router in (star, dist.perturbed_router(star, 0.5, rng)):
            assert best <= kl(q, dist.routed_model(bigram, router)) + cert + 1e-12


def test_thm9_gap_against_bound():
    inst = make_instance("overlapping", 3, 10, 0.3, np.random.default_rng(23))
    cells = random_partition(10, 3, np.random.default_rng(24))
    learned, worst = check_thm9(inst, 200, cells, np.random.default_rng(25), draws=50)
    assert not learned.violated and not worst.violated
    assert np.all(np.asarray(worst.quantities["rademacher"]) > 0)


@FAST
@given(st.sampled_from(REGIMES), st.sampled_from([(2, 3), (3, 5), (3, 8)]), st.floats(0.05, 1.0),
       st.integers(0, 2**31))
def test_thm3_bound_property(regime, size, quality, seed):
    inst = make_instance(regime, *size, quality, np.random.default_rng(seed))
    checks = check_thm3(inst, random_weights(inst.p, np.random.default_rng(seed + 1), 2))
    assert not any(c.violated for c in checks)


@FAST
@given(st.sampled_from(REGIMES), st.integers(0, 2**31))
def test_thm6_jsd_floor_for_any_model(regime, seed):
    """sum_k lam_k KL(D_k || pi) >= JSD_lam for an arbitrary full-support model pi."""
    rng = np.random.default_rng(seed)
    inst = make_instance(regime, 3, 6, 0.4, rng)
    model = rng.dirichlet(np.ones(6))
    lam = rng.dirichlet(np.ones(3))
    assert lam @ kl(inst.D, model) >= jsd(lam, inst.D) - 1e-12


@FAST
@given(st.integers(0, 2**31), st.floats(0.05, 2.0))
def test_thm18_static_gate_upper_bound_property(seed, scale):
    rng = np.random.default_rng(seed)
    inst = dist.random_bigram_instance(2, 2, 3, 0.3, rng)
    gate = constant_gate(rng.dirichlet(np.ones(2)), 8)
    checks = by_part(dist.check_thm18(inst, gate, rng, static=True, noise_scales=(scale,)))
    assert not checks["sequences: KL(pi_g||r_gamma) <= summed router KL"][0].violated
