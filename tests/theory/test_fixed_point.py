"""Algorithm 1 and the best-response iteration: certified against the cvxpy reference."""

import numpy as np
import pytest
from hypothesis import given, settings

from theory.cvx import solve_cvxpy
from theory.errors import InvalidOptionError
from theory.fixed_point import solve_fixed_point
from theory.gates import gated_model, pointwise_hull
from theory.prior import PriorSet
from tests.theory.instances import instances, make_instance


@settings(max_examples=12, deadline=None)
@given(instances(n_max=20, p_max=3))
def test_certificate_brackets_the_exact_value(instance):
    _, D, P = instance
    ref = solve_cvxpy(D, P)
    res = solve_fixed_point(D, P, max_iter=300, record_every=10, tol=1e-7)
    # lower <= optimum <= upper, with the exact optimum known to the cvxpy gap.
    assert res.lower <= ref.value + ref.gap + 1e-10
    assert res.upper >= ref.lower - 1e-10
    assert abs(res.value - ref.value) <= res.gap + ref.gap + 1e-10
    lo, hi = pointwise_hull(P)
    assert (res.q >= lo).all() and (res.q <= hi).all() and abs(res.q.sum() - 1) <= 1e-12
    assert np.allclose(gated_model(res.gate, P), res.q, atol=1e-12)


def test_gradient_method_reaches_tolerance():
    D, P = make_instance("overlapping", 100, 4, 1)
    ref = solve_cvxpy(D, P)
    res = solve_fixed_point(D, P, max_iter=2000, tol=1e-6, record_every=5)
    assert res.status == "optimal" and res.gap <= 1e-6
    assert abs(res.value - ref.value) <= 1e-6
    assert np.allclose(res.lam, ref.lam, atol=1e-2)
    h = res.history
    assert len(h["iteration"]) == len(h["gap"]) == len(h["lam"]) == len(h["best_gap"])
    assert h["iteration"][-1] == res.iterations
    # The best certified gap never increases.
    assert (np.diff(h["best_gap"]) <= 1e-15).all()


def test_prior_set():
    D, P = make_instance("overlapping", 60, 3, 2)
    prior = PriorSet(3, lower=[0.1, 0.1, 0.1], upper=[0.5, 0.5, 0.5])
    ref = solve_cvxpy(D, P, prior=prior)
    gaps = []
    for iterations in (500, 4000):
        res = solve_fixed_point(D, P, prior=prior, max_iter=iterations, tol=1e-6, record_every=5)
        assert prior.contains(res.lam)
        assert res.lower <= ref.value + 1e-8 and res.upper >= ref.value - 1e-8
        gaps.append(res.gap)
    # Slow instance (measured gap 1.5e-2 at T=1000, 1.6e-4 at T=4000): more steps, smaller gap.
    assert gaps[1] < gaps[0] / 10 and gaps[1] <= 1e-3


def test_polytope_prior_projection():
    D, P = make_instance("overlapping", 30, 3, 3)
    prior = PriorSet(3, A=[[1.0, -1.0, 0.0]], b=[0.0])
    ref = solve_cvxpy(D, P, prior=prior)
    res = solve_fixed_point(D, P, prior=prior, max_iter=200, record_every=20)
    assert all(prior.contains(lam, tol=1e-7) for lam in res.history["lam"])
    assert res.lower <= ref.value + 1e-8 <= res.upper + 2e-8


def test_too_few_iterations_say_not_converged():
    D, P = make_instance("overlapping", 50, 3, 4)
    res = solve_fixed_point(D, P, max_iter=5, tol=1e-12)
    assert res.status == "not_converged" and res.iterations == 5
    with pytest.warns(RuntimeWarning, match="not_converged"):
        res.warn_if_not_converged()


def test_best_response_iteration_cycles_on_disjoint_domains():
    # Kakutani needs the full correspondence; the pure best-response map jumps between
    # vertices: a least-favourable lam* with two active domains is never reached.
    D, P = make_instance("disjoint", 12, 3, 5)
    res = solve_fixed_point(D, P, method="best-response", max_iter=100)
    assert res.info["cycle_length"] >= 2
    assert res.status == "not_converged" and res.gap > 1e-3
    ref = solve_cvxpy(D, P)
    assert res.lower <= ref.value + 1e-8 <= res.upper + 2e-8


def test_best_response_fixed_point_is_a_saddle():
    # lam* is a vertex here, so the pure best responses meet at once.
    D = np.array([[0.5, 0.5, 0.0], [0.2, 0.3, 0.5]])
    P = np.array([[0.1, 0.1, 0.8], [0.2, 0.3, 0.5]])
    res = solve_fixed_point(D, P, method="best-response", max_iter=50, tol=1e-12)
    # Stopped by the certificate (cycle_length 0) or by the repeated vertex (1).
    assert res.info["cycle_length"] in (0, 1) and res.iterations <= 3
    assert res.gap <= 1e-12 and res.status == "optimal"
    assert np.allclose(res.lam, solve_cvxpy(D, P).lam, atol=1e-6)


def test_seed_reproducible_and_options_checked():
    D, P = make_instance("overlapping", 30, 3, 6)
    a = solve_fixed_point(D, P, max_iter=50, seed=3)
    b = solve_fixed_point(D, P, max_iter=50, seed=3)
    assert a.value == b.value and np.array_equal(a.lam, b.lam)
    with pytest.raises(InvalidOptionError, match="unknown fixed-point method 'newton'"):
        solve_fixed_point(D, P, method="newton")
