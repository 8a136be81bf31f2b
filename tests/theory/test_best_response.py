"""Water-filling and best responses: KKT conditions, brentq, and cvxpy/Clarabel agreement."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import brentq

from theory.best_response import best_response, family_cells, fit_gate_weights, water_fill
from theory.cvx import solve_cvxpy
from theory.divergences import kl
from theory.errors import EmptyGateSpaceError, InvalidOptionError
from theory.gates import pointwise_hull

FAST = settings(max_examples=40, deadline=None)
CVX = settings(max_examples=12, deadline=None)


@st.composite
def bounded_targets(draw, max_n=40):
    """A target with some zeros, and bounds 0 <= lo <= hi with sum lo < mass < sum hi."""
    n = draw(st.integers(2, max_n))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    target = rng.gamma(0.7, size=n) * (rng.random(n) > draw(st.sampled_from([0.0, 0.3])))
    if target.sum() == 0:
        target[0] = 1.0
    lo = rng.random(n) * rng.random(n)
    hi = lo + rng.random(n) * 2
    mass = float(lo.sum() + draw(st.floats(0.05, 0.95)) * (hi.sum() - lo.sum()))
    return target, lo, hi, mass


def assert_kkt(q, nu, target, lo, hi, mass):
    """q = target/nu on the free set, q = lo where target/nu <= lo, q = hi where >= hi."""
    assert q.sum() == pytest.approx(mass, abs=1e-12)
    assert np.all(q >= lo - 1e-15) and np.all(q <= hi + 1e-15)
    if nu == 0.0:
        return
    ideal = target / nu
    free = (q > lo) & (q < hi)
    np.testing.assert_allclose(q[free], ideal[free], rtol=1e-12, atol=1e-15)
    at_lo = (q <= lo) & ~free
    at_hi = (q >= hi) & ~free & ~at_lo
    assert np.all(ideal[at_lo] <= lo[at_lo] * (1 + 1e-12) + 1e-15)
    assert np.all(ideal[at_hi] >= hi[at_hi] * (1 - 1e-12) - 1e-15)


@FAST
@given(bounded_targets())
def test_water_fill_kkt_and_brentq(case):
    target, lo, hi, mass = case
    q, nu = water_fill(target, lo, hi, mass)
    assert_kkt(q, nu, target, lo, hi, mass)
    if nu > 0:
        # Independent root: S(t) = sum clip(t target, lo, hi) = mass, bracketed.
        t_hi = 1.0
        while np.clip(t_hi * target, lo, hi).sum() < mass:
            t_hi *= 2
        t = brentq(lambda s: np.clip(s * target, lo, hi).sum() - mass, 0.0, t_hi, xtol=1e-15, rtol=1e-15)
        np.testing.assert_allclose(q, np.clip(t * target, lo, hi), rtol=1e-9, atol=1e-12)


@FAST
@given(bounded_targets(), st.floats(0.1, 10.0))
def test_water_fill_warm_start_gives_the_same_solution(case, factor):
    target, lo, hi, mass = case
    q, nu = water_fill(target, lo, hi, mass)
    if nu > 0:
        q2, nu2 = water_fill(target, lo, hi, mass, t0=factor / nu)
        np.testing.assert_allclose(q2, q, rtol=1e-12, atol=1e-15)


def test_water_fill_is_unclipped_normalisation_inside_wide_bounds():
    target = np.array([1.0, 2.0, 3.0, 0.0])
    q, nu = water_fill(target, np.zeros(4), np.ones(4))
    np.testing.assert_allclose(q, target / 6)
    assert nu == pytest.approx(6.0)


def test_water_fill_all_target_mass_clipped_fills_zero_target_outcomes():
    # The target's support can hold at most 0.3; the rest goes to zero-target outcomes.
    target = np.array([0.5, 0.5, 0.0, 0.0])
    lo = np.array([0.0, 0.0, 0.1, 0.0])
    hi = np.array([0.1, 0.2, 0.5, 0.6])
    q, nu = water_fill(target, lo, hi)
    assert nu == 0.0
    np.testing.assert_allclose(q[:2], hi[:2])
    assert q.sum() == pytest.approx(1.0)
    assert np.all(q >= lo) and np.all(q <= hi)


def test_water_fill_single_feasible_point():
    lo = np.array([0.25, 0.75])
    q, nu = water_fill(np.array([1.0, 1.0]), lo, np.ones(2))
    np.testing.assert_array_equal(q, lo)
    assert nu == np.inf


@pytest.mark.parametrize(
    "lo, hi, match",
    [(np.array([0.6, 0.6]), np.ones(2), "lower bounds"), (np.zeros(2), np.array([0.3, 0.3]), "upper bounds")],
)
def test_water_fill_infeasible_bounds(lo, hi, match):
    with pytest.raises(EmptyGateSpaceError, match=match):
        water_fill(np.ones(2), lo, hi)


@st.composite
def instances(draw, max_p=3, max_n=10):
    p = draw(st.integers(1, max_p))
    n = draw(st.integers(2, max_n))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    D = rng.dirichlet(np.full(n, 0.6), size=p)
    P = rng.dirichlet(np.full(n, 0.6), size=p)
    P = 0.5 * P + 0.5 * D
    lam = rng.dirichlet(np.ones(p))
    cells = rng.integers(0, max(1, n // 3), size=n)
    return D, P, lam, cells


@CVX
@given(instances(), st.sampled_from(["full", "constant", "partition"]))
def test_best_response_matches_cvxpy(case, family):
    D, P, lam, cells = case
    q = best_response(D, P, lam, family=family, cells=cells)
    obj_ref = solve_cvxpy(D, P, mixture=lam, family=family, cells=cells if family == "partition" else None).value
    obj = kl(lam @ D, q)
    # Ours is exact (full) or certified to 1e-12 (restricted): never worse than Clarabel
    # beyond Clarabel's own accuracy, and the same value.
    assert obj <= obj_ref + 1e-8
    assert obj == pytest.approx(obj_ref, abs=1e-6)
    assert q.sum() == pytest.approx(1.0, abs=1e-12)
    if family == "full":
        lo, hi = pointwise_hull(P)
        assert np.all(q >= lo - 1e-15) and np.all(q <= hi + 1e-15)


@CVX
@given(instances(max_p=4, max_n=30), st.sampled_from(["constant", "partition"]))
def test_restricted_fit_is_certified_and_feasible(case, family):
    D, P, lam, cells = case
    labels, C = family_cells(family, cells, D.shape[1])
    fit = fit_gate_weights(lam @ D, P, labels, C)
    # Certified to the tolerance 1e-12 or, when the Newton iteration stalls first, to the
    # Frank-Wolfe gap's rounding floor (~1e-11 relative to the objective).
    assert fit.fw_gap <= 1e-10 * max(1.0, abs(fit.objective))
    assert np.all(fit.W >= 0)
    np.testing.assert_allclose(fit.W.sum(axis=1), 1.0, atol=1e-14)
    assert fit.q.sum() == pytest.approx(1.0, abs=1e-12)


def test_best_response_to_a_vertex_with_identical_experts_is_the_expert():
    rng = np.random.default_rng(0)
    D = rng.dirichlet(np.ones(6), size=2)
    P = np.vstack([D[0], D[0]])
    np.testing.assert_allclose(best_response(D, P, [0.3, 0.7]), D[0], atol=1e-15)


def test_best_response_rejects_unknown_family_and_missing_cells():
    D = np.full((2, 3), 1 / 3)
    with pytest.raises(InvalidOptionError, match="unknown gate family 'tree'"):
        best_response(D, D, [0.5, 0.5], family="tree")
    with pytest.raises(InvalidOptionError, match="needs cells"):
        best_response(D, D, [0.5, 0.5], family="partition")


def _stalled_constant_instance():
    """Cached text windows of four genres under four byte-level experts, as the constant-gate
    excess game (``modular.evaluate.excess_instance``: 100 windows per domain, experts up to
    e^50 apart on single windows). ``D_k`` is uniform on domain k's block of outcomes."""
    from pathlib import Path

    with np.load(Path(__file__).parent / "data" / "stalled_constant_instance.npz", allow_pickle=False) as f:
        P, counts = f["P"], f["counts"]
    D = np.zeros_like(P)
    start = 0
    for k, c in enumerate(counts):
        D[k, start:start + c] = 1.0 / c
        start += c
    return D, P


def test_constant_family_certifies_where_a_warm_start_at_a_zero_weight_stalled():
    """The dual ascent warm-starts each inner fit at the previous gate weights; one with a weight
    at exactly zero, where the new lam gives that domain mass, left q tiny there, the Hessian
    v / q^2 at 1e40, and the inner fit with a Frank-Wolfe gap of 1e20: the ascent stopped at a
    certified gap of 0.136 nats (status not_converged). Pulled into the interior, it certifies."""
    import sys

    from theory import solve_robust

    D, P = _stalled_constant_instance()
    res = solve_robust(D, P, family="constant")
    assert res.status == "optimal" and res.gap <= 1e-9
    # Every domain the least-favourable mixture weights attains the robust value (the saddle point).
    active = res.lam > 1e-6
    np.testing.assert_allclose(res.kl[active], res.value, atol=1e-7)
    # The false variant: the warm start as it was (no interior share) stalls on this instance.
    module = sys.modules["theory.best_response"]
    saved = module._INTERIOR
    module._INTERIOR = 0.0
    try:
        with pytest.warns(Warning):
            stalled = solve_robust(D, P, family="constant")
    finally:
        module._INTERIOR = saved
    assert stalled.status != "optimal" and stalled.gap > 0.1
