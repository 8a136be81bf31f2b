"""The projected-Newton pieces shared by the dual and the restricted best response.

Each piece is checked against an independent solver (cvxpy/Clarabel through the
modelling layer, or scipy's SLSQP) on small QPs over the simplex and over a product of
simplices cut by a mass row, the two polytopes the suite steps on.
"""

import cvxpy as cp
import numpy as np
import pytest
from scipy import sparse
from scipy.optimize import minimize

from theory.best_response import cell_masses, mass_is_constrained, repair_gate_weights
from theory.newton import PolytopeQP, backtrack, bfgs_update, damping, face_step, face_step_simplices
from theory.simplex import restore_mass


def _spd(rng, n):
    A = rng.standard_normal((n, n))
    return A @ A.T + 0.1 * np.eye(n)


def _cvxpy_qp(M, c, lo, hi, A=None, b=None):
    x = cp.Variable(M.shape[0])
    cons = [cp.sum(x) == 1, x >= lo, x <= hi]
    if A is not None:
        cons.append(A @ x <= b)
    cp.Problem(cp.Minimize(0.5 * cp.quad_form(x, cp.psd_wrap(M)) + c @ x), cons).solve(solver="CLARABEL")
    return x.value


@pytest.mark.parametrize("seed", range(4))
def test_step_qp_on_the_simplex_matches_slsqp(seed):
    rng = np.random.default_rng(seed)
    p = 5
    M, c = _spd(rng, p), rng.standard_normal(p)
    lo, hi = np.full(p, 0.05), np.full(p, 0.5)
    x = PolytopeQP(np.ones((1, p)), np.ones(1), lo, hi, hi < 1).solve(M, c)
    ref = minimize(lambda y: 0.5 * y @ M @ y + c @ y, np.full(p, 0.2), jac=lambda y: M @ y + c, method="SLSQP",
                   bounds=list(zip(lo, hi)), constraints=[{"type": "eq", "fun": lambda y: y.sum() - 1}],
                   options={"ftol": 1e-15, "maxiter": 500})
    assert np.abs(x - ref.x).max() < 1e-6
    assert abs(x.sum() - 1) < 1e-10 and (x >= lo - 1e-10).all() and (x <= hi + 1e-10).all()


@pytest.mark.parametrize("seed", range(4))
def test_face_step_lands_on_the_optimum_of_a_quadratic(seed):
    # For a quadratic the Newton step on the optimum's face is exact: from any feasible
    # lam0, lam0 + d is the maximiser of g0.(lam - lam0) - 1/2 (lam - lam0)' M (lam - lam0),
    # to rounding (the interior-point QP alone is accurate to ~1e-9 only).
    rng = np.random.default_rng(10 + seed)
    p = 6
    M, g0 = _spd(rng, p), 3 * rng.standard_normal(p)
    lo, hi = np.full(p, 0.02), np.full(p, 0.45)
    A, b = (np.eye(p)[:1] - np.eye(p)[1:2]), np.zeros(1)  # lam_0 <= lam_1
    lam0 = restore_mass(np.full(p, 1.0 / p), lo, hi)
    qp = PolytopeQP(np.ones((1, p)), np.ones(1), lo, hi, hi < 1, A, b)
    x = restore_mass(qp.solve(M, -(M @ lam0 + g0)), lo, hi)
    d = face_step(x, lam0, g0, M, lo, hi, A, b)
    ref = _cvxpy_qp(M, -(M @ lam0 + g0), lo, hi, A, b)
    assert d is not None
    assert np.abs(lam0 + d - ref).max() < 1e-7
    # KKT on the face to rounding: the gradient of the model at lam0 + d is constant
    # over the free coordinates (the multiplier of sum lam = 1) when no polytope row is tight.
    y = lam0 + d
    assert abs(y.sum() - 1) < 1e-14
    free = (y > lo + 1e-9) & (y < hi - 1e-9)
    if not (A @ y >= b - 1e-9).any() and free.sum() > 1:
        grad = g0 - M @ d
        assert np.ptp(grad[free]) < 1e-10


@pytest.mark.parametrize("seed", range(3))
def test_face_step_on_a_product_of_simplices_matches_cvxpy(seed):
    # min <G, W - W0> + 1/2 sum_c (W_c - W0_c)' H_c (W_c - W0_c) over rows in the simplex
    # and sum_ck W_ck m_ck = 1: the polytope of the restricted best response.
    rng = np.random.default_rng(20 + seed)
    C, p, n = 3, 4, 24
    P = rng.dirichlet(np.ones(n), size=p)
    labels = np.arange(n) % C
    masses = cell_masses(P, labels, C)
    assert mass_is_constrained(masses)
    blocks = [_spd(rng, p) for _ in range(C)]
    G = rng.standard_normal((C, p))
    W0 = repair_gate_weights(rng.dirichlet(np.ones(p), size=C), masses)
    E = sparse.vstack([sparse.kron(sparse.eye(C), np.ones((1, p))), sparse.csr_matrix(masses.reshape(1, -1))])
    qp = PolytopeQP(E, np.ones(C + 1), np.zeros(C * p))
    H = sparse.block_diag(blocks, format="csc")
    S = repair_gate_weights(qp.solve(H, G.ravel() - H @ W0.ravel()).reshape(C, p), masses)
    d = face_step_simplices(G, blocks, W0, S, masses, True)
    W = cp.Variable((C, p), nonneg=True)
    obj = cp.sum(cp.multiply(G, W - W0)) + 0.5 * sum(cp.quad_form(W[c] - W0[c], blocks[c]) for c in range(C))
    cp.Problem(cp.Minimize(obj), [cp.sum(W, axis=1) == 1, cp.sum(cp.multiply(masses, W)) == 1]).solve(solver="CLARABEL")
    assert d is not None
    assert np.abs(W0 + d - W.value).max() < 1e-6
    assert np.abs((W0 + d).sum(axis=1) - 1).max() < 1e-14
    assert abs(float((masses * (W0 + d)).sum()) - 1) < 1e-14


def test_repair_gate_weights_restores_rows_and_mass():
    rng = np.random.default_rng(3)
    P = rng.dirichlet(np.ones(30), size=3)
    labels = np.arange(30) % 5
    masses = cell_masses(P, labels, 5)
    # A constant gate has mass one (sum_c m_c = 1 for every expert); perturb it by a
    # solver's feasibility error.
    W = np.tile(rng.dirichlet(np.ones(3)), (5, 1)) + 1e-9 * rng.standard_normal((5, 3))
    assert abs(float((W * masses).sum()) - 1) > 1e-12
    R = repair_gate_weights(W, masses)
    assert (R >= 0).all() and np.abs(R.sum(axis=1) - 1).max() < 1e-15
    assert abs(float((R * masses).sum()) - 1) < 1e-15
    # A move of the size of the defect, not a new gate.
    assert np.abs(R - W).max() < 1e-6
    # Experts that agree on every cell's mass: only the rows are repaired.
    same = np.tile(masses[:, :1], (1, 3))
    assert not mass_is_constrained(same)
    np.testing.assert_allclose(repair_gate_weights(W, same), np.clip(W, 0, None) / np.clip(W, 0, None).sum(1, keepdims=True))


def test_repair_gate_weights_turns_a_row_without_positive_entries_into_a_feasible_row():
    # Seen once in a real-world profiling run: "invalid value encountered in divide" on W /= row sums.
    rng = np.random.default_rng(4)
    masses = cell_masses(rng.dirichlet(np.ones(30), size=3), np.arange(30) % 5, 5)
    W = np.tile(rng.dirichlet(np.ones(3)), (5, 1))
    W[2] = -1e-9
    with np.errstate(invalid="raise"):
        R = repair_gate_weights(W, masses)
    assert np.isfinite(R).all() and (R >= 0).all() and np.abs(R.sum(axis=1) - 1).max() < 1e-15
    assert abs(float((R * masses).sum()) - 1) < 1e-12
    # The old rule (clip, then divide by the row sums) gives NaN on that row: the check can fail.
    clipped = np.clip(W, 0, None)
    with np.errstate(invalid="ignore"):
        assert np.isnan(clipped / clipped.sum(axis=1, keepdims=True)).any()


def test_backtracking_halves_until_accepted():
    tried = []
    found, step = backtrack(lambda t: tried.append(t) or t, lambda cand, t: cand <= 0.125, min_step=1e-3)
    assert (found, step) == (0.125, 0.125) and tried == [1.0, 0.5, 0.25, 0.125]
    found, step = backtrack(lambda t: t, lambda cand, t: False, min_step=0.2)
    assert found is None and step == 0.125
    assert damping(1e-3, 1.0) == 1e-4 and damping(1e-3, 0.5) == 1e-2
    assert damping(1e-14, 1.0, floor=1e-14) == 1e-14 and damping(1e6, 0.5, cap=1e6) == 1e6


def test_bfgs_update_satisfies_the_secant_equation():
    rng = np.random.default_rng(5)
    B = np.eye(4)
    s, y = rng.standard_normal(4), rng.standard_normal(4)
    y = -(2.0 * s + 0.1 * y)  # gradient change of a concave function along s
    B1 = bfgs_update(B, s, y)
    np.testing.assert_allclose(B1 @ s, -y, atol=1e-12)
    assert np.linalg.eigvalsh(B1).min() > 0


def test_face_step_is_none_when_the_curvature_overflows():
    # Curvature v / q^2 is infinite where q underflows: no Newton step (the caller takes the QP's).
    G = np.array([[-0.01, -0.02, -0.005]])
    W = np.array([[0.2, 0.5, 0.3]])
    blocks = [np.array([[np.inf, 1.0, 0.0], [1.0, 2.0, 0.0], [0.0, 0.0, 1.0]])]
    masses = np.ones((1, 3))
    assert face_step_simplices(G, blocks, W, W, masses, False) is None
    finite = [np.diag([1.0, 2.0, 1.0])]
    assert face_step_simplices(G, finite, W, W, masses, False) is not None
