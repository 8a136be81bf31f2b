"""G1: every point of the hull cut by sum q = 1 is realised by a gate; static gates are in G1."""

import cvxpy as cp
import numpy as np
from hypothesis import given, settings, strategies as st

from theory.dual import solve_dual
from theory.gates import _CHUNK, constant_gate, gate_from_q, gated_model, in_G1, partition_gate, pointwise_hull
from theory.simplex import project_capped_simplex
from tests.theory.instances import instances, make_instance

SETTINGS = settings(max_examples=40, deadline=None)


@SETTINGS
@given(instances(), st.integers(0, 2**32 - 1))
def test_gate_from_q_reproduces_hull_points(instance, seed):
    _, _, P = instance
    lo, hi = pointwise_hull(P)
    y = np.random.default_rng(seed).uniform(-1, 1, P.shape[1]) / P.shape[1]
    q = project_capped_simplex(y, lo, hi)
    assert (q >= lo).all() and (q <= hi).all() and np.isclose(q.sum(), 1.0, atol=1e-12)
    gate = gate_from_q(q, P)
    assert np.allclose(gated_model(gate, P), q, atol=1e-13)
    assert in_G1(gate, P)


def reference_gate_from_q(q, P):
    """The gate of DESIGN 2.1 written out directly: (q - l)/(u - l) on the (first)
    arg-max expert, the rest on the (first) arg-min expert."""
    p, n = P.shape
    kmin, kmax = P.argmin(axis=0), P.argmax(axis=0)
    lo, hi = P[kmin, np.arange(n)], P[kmax, np.arange(n)]
    t = np.zeros(n)
    wide = hi > lo
    t[wide] = np.clip((q[wide] - lo[wide]) / (hi[wide] - lo[wide]), 0.0, 1.0)
    gate = np.zeros((n, p))
    gate[np.arange(n), kmin] = 1.0 - t
    gate[np.arange(n), kmax] += t
    return gate


@settings(max_examples=30, deadline=None)
@given(st.integers(1, 5), st.integers(1, 3 * _CHUNK), st.integers(0, 2**32 - 1))
def test_gate_from_q_matches_the_direct_construction(p, n, seed):
    # Rounded entries make ties between experts (and equal-expert outcomes) common, and
    # n up to three blocks exercises the blockwise pass; q overshoots the hull a little
    # to check the clipping.
    rng = np.random.default_rng(seed)
    P = np.round(rng.random((p, n)), 1) + 0.05
    P /= P.sum(axis=1, keepdims=True)
    lo, hi = pointwise_hull(P)
    q = lo + rng.uniform(-0.1, 1.1, n) * (hi - lo)
    np.testing.assert_array_equal(gate_from_q(q, P), reference_gate_from_q(q, P))


def test_dual_solver_returns_the_gate_of_its_q():
    D, P = make_instance("overlapping", 2 * _CHUNK + 5, 4, 3)
    res = solve_dual(D, P)
    np.testing.assert_array_equal(res.gate, gate_from_q(res.q, P))
    assert in_G1(res.gate, P)


@SETTINGS
@given(instances(), st.integers(0, 2**32 - 1))
def test_static_and_partition_gates_in_G1(instance, seed):
    _, _, P = instance
    p, n = P.shape
    rng = np.random.default_rng(seed)
    assert in_G1(constant_gate(rng.dirichlet(np.ones(p)), n), P)
    # A partition gate need not have mass one, but its rows are in the simplex.
    gate = partition_gate(rng.dirichlet(np.ones(p), size=3), rng.integers(0, 3, n))
    assert np.allclose(gate.sum(axis=1), 1.0)


@settings(max_examples=25, deadline=None)
@given(st.integers(2, 30), st.integers(0, 2**32 - 1))
def test_projection_matches_quadratic_program(n, seed):
    rng = np.random.default_rng(seed)
    P = rng.dirichlet(np.ones(n), size=3)
    lo, hi = pointwise_hull(P)
    y = rng.normal(size=n) / n
    x = cp.Variable(n)
    cp.Problem(cp.Minimize(cp.sum_squares(x - y)), [x >= lo, x <= hi, cp.sum(x) == 1]).solve(solver="CLARABEL")
    q = project_capped_simplex(y, lo, hi)
    assert (q >= lo).all() and (q <= hi).all() and np.isclose(q.sum(), 1.0, atol=1e-12)
    # Clarabel stops ~1e-6 away on degenerate instances, so compare objectives, not points;
    # its point can also break the bounds by ~1e-9, which lowers its objective by as much.
    assert ((q - y) ** 2).sum() <= ((x.value - y) ** 2).sum() + 1e-8
    assert np.allclose(q, x.value, atol=1e-4)
