"""Property and hand-checked tests of the bound formulas (theory.bounds)."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from theory.bounds import (
    algorithm1_rate,
    disjoint_regime_bound,
    expert_constants,
    expert_errors,
    fixed_mixture_bound,
    generalisation_bound,
    hausdorff_to_simplex,
    identical_regime_bound,
    partition_rademacher,
    prior_lipschitz_bound,
    robust_bound,
    sigma_conditional_entropy,
    static_barrier,
    static_weights,
)
from theory.claims.instances import make_instance
from theory.divergences import kl, mixture
from theory.prior import PriorSet

FAST = settings(max_examples=40, deadline=None)

regimes = st.sampled_from(["random", "disjoint", "disjoint-leaky", "identical-experts", "identical-domains",
                           "overlapping", "perfect"])
sizes = st.sampled_from([(2, 3), (2, 5), (3, 6), (4, 9)])


def instance(regime, size, quality, seed):
    p, n = size
    return make_instance(regime, p, n, quality, np.random.default_rng(seed))


@FAST
@given(regimes, sizes, st.floats(0.01, 1.0), st.integers(0, 2**31), st.integers(0, 2**31))
def test_prop2_bound_dominates_constant_gate(regime, size, quality, seed, lam_seed):
    inst = instance(regime, size, quality, seed)
    lam = np.random.default_rng(lam_seed).dirichlet(np.ones(inst.p))
    eps = expert_errors(inst.D, inst.P)
    assert kl(mixture(lam, inst.D), mixture(lam, inst.P)) <= fixed_mixture_bound(lam, eps) + 1e-12


@FAST
@given(sizes, st.floats(0.01, 1.0), st.integers(0, 2**31), st.integers(0, 2**31))
def test_static_barrier_disjoint_experts(size, quality, seed, w_seed):
    """Disjoint experts: KL(D_k || P_w) = eps_k - log w_k, so max_k >= LSE(eps), equality at softmax(eps)."""
    inst = instance("disjoint", size, quality, seed)
    eps = expert_errors(inst.D, inst.P)
    sigma = static_weights(eps)
    np.testing.assert_allclose(kl(inst.D, mixture(sigma, inst.P)), static_barrier(eps), atol=1e-10)
    w = np.random.default_rng(w_seed).dirichlet(np.ones(inst.p))
    assert kl(inst.D, mixture(w, inst.P)).max() >= static_barrier(eps) - 1e-10


def test_static_barrier_hand_values():
    eps = np.array([0.0, np.log(3.0)])
    assert static_barrier(eps) == pytest.approx(np.log(4.0))
    np.testing.assert_allclose(static_weights(eps), [0.25, 0.75])


@FAST
@given(regimes, sizes, st.floats(0.01, 1.0), st.integers(0, 2**31), st.integers(0, 2**31))
def test_sigma_conditional_entropy_is_nonnegative(regime, size, quality, seed, lam_seed):
    inst = instance(regime, size, quality, seed)
    lam = np.random.default_rng(lam_seed).dirichlet(np.ones(inst.p))
    sigma = static_weights(expert_errors(inst.D, inst.P))
    assert sigma_conditional_entropy(inst.D, inst.P, lam, sigma) >= -1e-12


@FAST
@given(sizes, st.floats(0.01, 1.0), st.integers(0, 2**31), st.integers(0, 2**31))
def test_regime_bounds_are_special_cases_of_thm3(size, quality, seed, lam_seed):
    rng = np.random.default_rng(lam_seed)
    lam, lam_star = rng.dirichlet(np.ones(size[0]), size=2)
    disjoint = instance("disjoint", size, quality, seed)
    eps = expert_errors(disjoint.D, disjoint.P)
    assert robust_bound(disjoint.D, disjoint.P, lam, lam_star) == pytest.approx(disjoint_regime_bound(eps, lam),
                                                                                abs=1e-10)
    same = instance("identical-experts", size, quality, seed)
    eps = expert_errors(same.D, same.P)
    assert robust_bound(same.D, same.P, lam, lam_star) == pytest.approx(
        identical_regime_bound(eps, lam_star, lam, same.D), abs=1e-10)


@FAST
@given(st.integers(2, 5), st.floats(0.0, 0.99), st.integers(0, 2**31))
def test_hausdorff_of_lower_box(p, shrink, seed):
    """Lambda = {lam >= lo}: the nearest point to e_k is lo + (1 - s) e_k, at L1 distance 2 (s - lo_k)."""
    lo = shrink * np.random.default_rng(seed).dirichlet(np.ones(p))
    expected = 2 * (lo.sum() - lo.min())
    assert hausdorff_to_simplex(PriorSet(p, lower=lo)) == pytest.approx(expected, abs=1e-6)  # HiGHS feasibility tol


def test_hausdorff_of_simplex_is_zero():
    assert hausdorff_to_simplex(PriorSet(3)) == pytest.approx(0.0, abs=1e-12)


@FAST
@given(st.integers(2, 6), st.integers(0, 2**31))
def test_lipschitz_constant_bounds_linear_change(p, seed):
    rng = np.random.default_rng(seed)
    c = rng.exponential(size=p)
    lam, mu = rng.dirichlet(np.ones(p), size=2)
    assert abs((lam - mu) @ c) <= prior_lipschitz_bound(c, np.abs(lam - mu).sum()) + 1e-12


def test_partition_rademacher_hand_values():
    rng = np.random.default_rng(0)
    # one point per cell, p = 2: E max(s1, s2) = 1/2 for independent signs
    singletons = partition_rademacher(np.arange(50), 50, 2, 2000, rng)
    assert singletons == pytest.approx(0.5, abs=0.01)
    # one cell, p = 1: E[sum of m signs] / m = 0
    assert partition_rademacher(np.zeros(50, dtype=int), 1, 1, 2000, rng) == pytest.approx(0.0, abs=0.01)


def test_rademacher_grows_with_cells():
    rng = np.random.default_rng(1)
    cells = rng.integers(0, 64, size=200)
    values = [partition_rademacher(cells % c, c, 3, 500, np.random.default_rng(2)) for c in (1, 4, 16, 64)]
    assert np.all(np.diff(values) > 0)


def test_generalisation_bound_formula():
    bound = generalisation_bound([0.1], [50], M=2.0, C=1.0, p=2, delta=0.1)
    expected = 2 * np.sqrt(2) * np.exp(2.0) * 0.1 + 2.0 * np.sqrt(np.log(20) / 100)
    assert bound[0] == pytest.approx(expected)


def test_expert_constants():
    P = np.array([[0.5, 0.5], [0.25, 0.75]])
    M, C = expert_constants(P)
    assert M == pytest.approx(np.log(4))
    assert C == pytest.approx(np.hypot(0.5, 0.75))


def test_algorithm1_rate():
    np.testing.assert_allclose(algorithm1_rate(4, [1, 4]), [np.sqrt(np.log(4)), np.sqrt(np.log(4) / 4)])
