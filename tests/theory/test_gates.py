"""G1: every point of the hull cut by sum q = 1 is realised by a gate; static gates are in G1."""

import cvxpy as cp
import numpy as np
from hypothesis import given, settings, strategies as st

from theory.gates import constant_gate, gate_from_q, gated_model, in_G1, partition_gate, pointwise_hull
from theory.projection import project_capped_simplex
from tests.theory.instances import instances

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
    # Clarabel stops ~1e-6 away on degenerate instances, so compare objectives, not points.
    assert ((q - y) ** 2).sum() <= ((x.value - y) ** 2).sum() + 1e-9
    assert np.allclose(q, x.value, atol=1e-4)
