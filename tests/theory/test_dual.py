"""The certified dual solver: agreement with Clarabel, certificates, invariants, degenerate cases."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import minimize_scalar

from tests.theory.data.make_dual_references import as_prior
from theory.cvx import solve_cvxpy
from theory.divergences import entropy, jsd, kl
from theory.dual import _FullFamily, solve_dual
from theory.errors import InvalidOptionError, ShapeMismatchError
from theory.gates import gated_model, in_G1
from theory.prior import PriorSet
from theory.result import ConvergenceWarning
from tests.theory.instances import make_instance

REFERENCES = np.load(Path(__file__).parent / "data" / "dual_references.npz")
CASES = sorted({key.split("/")[0] for key in REFERENCES.files})
#: Clarabel's own accuracy on these problems is a few 1e-9 nats (its q is recomputed in numpy).
CLARABEL_TOL = 5e-8


def reference(name):
    get = lambda key: REFERENCES[f"{name}/{key}"]  # noqa: E731
    cells = get("cells")
    prior = as_prior(get("lo"), get("hi"), get("A"), get("b"))
    return get("D"), get("P"), str(get("family")), (cells if cells.size else None), prior, float(get("value")), get("lam")


def assert_certified(res, tol):
    assert res.status == "optimal"
    assert res.lower <= res.upper + 1e-12
    assert res.gap <= tol
    assert res.value == res.upper


@pytest.mark.parametrize("name", CASES)
def test_matches_stored_clarabel_reference(name):
    D, P, family, cells, prior, value, lam_ref = reference(name)
    res = solve_dual(D, P, family=family, cells=cells, prior=prior)
    assert_certified(res, 1e-9)
    # Sandwich: lower <= true value <= upper, and Clarabel's value is within its accuracy.
    assert res.lower <= value + CLARABEL_TOL
    assert value <= res.upper + CLARABEL_TOL
    np.testing.assert_allclose(res.lam, lam_ref, atol=1e-5)
    lam_prior = prior if prior is not None else PriorSet(D.shape[0])
    assert lam_prior.contains(res.lam, tol=1e-10)
    # The returned q and gate belong to the family and the KLs are recomputed ones.
    assert in_G1(res.gate, P)
    np.testing.assert_allclose(gated_model(res.gate, P), res.q, atol=1e-14)
    np.testing.assert_allclose(res.kl, kl(D, res.q), rtol=1e-10, atol=1e-13)
    assert res.value == pytest.approx(lam_prior.max_linear(kl(D, res.q)), abs=1e-12)


@pytest.mark.parametrize("name", [c for c in CASES if "box" not in c and "polytope" not in c])
def test_least_favourable_mixture_is_supported_on_the_worst_domains(name):
    D, P, family, cells, prior, _, _ = reference(name)
    res = solve_dual(D, P, family=family, cells=cells)
    support = res.lam > 1e-6
    assert np.all(res.kl[support] >= res.kl.max() - 1e-6)
    assert res.kl.max() == pytest.approx(res.value, abs=1e-12)


@st.composite
def small_instances(draw):
    p = draw(st.integers(1, 3))
    n = draw(st.integers(2, 8))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    kind = draw(st.sampled_from(["overlapping", "disjoint", "identical", "near-identical"]))
    if kind == "disjoint" and n >= p:
        D = np.zeros((p, n))
        for k, block in enumerate(np.array_split(np.arange(n), p)):
            D[k, block] = rng.dirichlet(np.ones(block.size))
        P = 0.7 * D + 0.3 * rng.dirichlet(np.ones(n), size=p)
    elif kind == "identical":
        D = np.repeat(rng.dirichlet(np.ones(n))[None], p, axis=0)
        P = np.repeat(rng.dirichlet(np.ones(n))[None], p, axis=0)
    else:
        D = rng.dirichlet(np.ones(n), size=p)
        P = rng.dirichlet(np.ones(n), size=p)
        P = 0.5 * P + 0.5 * D if kind == "overlapping" else 0.999 * D[[0]] + 0.001 * P
    return D, P


@settings(max_examples=15, deadline=None)
@given(small_instances())
def test_agrees_with_clarabel_on_random_small_instances(case):
    D, P = case
    res = solve_dual(D, P)
    value = solve_cvxpy(D, P).value
    assert_certified(res, 1e-9)
    assert res.value == pytest.approx(value, abs=CLARABEL_TOL)


def test_hessian_matches_finite_differences_of_the_gradient():
    rng = np.random.default_rng(7)
    p, n = 4, 400
    D = rng.dirichlet(np.ones(n), size=p)
    P = 0.5 * D + 0.5 * rng.dirichlet(np.ones(n), size=p)
    oracle = _FullFamily.of_experts(D, P)
    lam = rng.dirichlet(np.ones(p) * 3)
    point = oracle(lam)
    h = 1e-6
    for d in (np.array([1.0, -1.0, 0.0, 0.0]), np.array([0.5, 0.5, -0.3, -0.7])):
        fd = (oracle(lam + h * d).kl - oracle(lam - h * d).kl) / (2 * h)
        np.testing.assert_allclose(point.hessian @ d, fd, rtol=1e-4, atol=1e-6)
    # phi is concave: the Hessian is negative semidefinite.
    assert np.linalg.eigvalsh(point.hessian).max() <= 1e-10


def test_gradient_is_the_kl_vector():
    rng = np.random.default_rng(8)
    p, n = 3, 50
    D = rng.dirichlet(np.ones(n), size=p)
    P = 0.5 * D + 0.5 * rng.dirichlet(np.ones(n), size=p)
    oracle = _FullFamily.of_experts(D, P)
    lam, d, h = np.array([0.2, 0.3, 0.5]), np.array([1.0, -0.4, -0.6]), 1e-6
    fd = (oracle(lam + h * d).lower - oracle(lam - h * d).lower) / (2 * h)
    assert fd == pytest.approx(oracle(lam).kl @ d, rel=1e-7)


def test_perfect_experts_give_the_channel_capacity():
    # Two-input channel: capacity = max_a JSD_(a, 1-a)(D), found by a bounded scalar search.
    rng = np.random.default_rng(3)
    D = rng.dirichlet(np.ones(12), size=2)
    res = solve_dual(D, D)
    best = minimize_scalar(lambda a: -jsd([a, 1 - a], D), bounds=(0, 1), method="bounded", options={"xatol": 1e-12})
    assert res.value == pytest.approx(-best.fun, abs=1e-9)
    assert res.lam[0] == pytest.approx(best.x, abs=1e-5)


def test_disjoint_domains_with_perfect_experts_value_log_p():
    p = 4
    D = np.kron(np.eye(p), np.full((1, 3), 1 / 3))
    res = solve_dual(D, D)
    assert res.value == pytest.approx(np.log(p), abs=1e-10)
    np.testing.assert_allclose(res.lam, np.full(p, 1 / p), atol=1e-8)


def test_identical_experts_and_domains():
    rng = np.random.default_rng(4)
    D = np.repeat(rng.dirichlet(np.ones(9))[None], 3, axis=0)
    P = np.repeat(rng.dirichlet(np.ones(9))[None], 3, axis=0)
    res = solve_dual(D, P)
    assert_certified(res, 1e-9)
    assert res.value == pytest.approx(kl(D[0], P[0]), abs=1e-12)


def test_single_domain_is_the_expert_kl():
    rng = np.random.default_rng(5)
    D, P = rng.dirichlet(np.ones(7), size=1), rng.dirichlet(np.ones(7), size=1)
    res = solve_dual(D, P)
    assert_certified(res, 1e-12)
    assert res.value == pytest.approx(kl(D[0], P[0]), abs=1e-12)
    assert res.lam.tolist() == [1.0]


def test_least_favourable_mixture_at_a_vertex():
    # Identical experts fix q = P; the domain farthest from P is the unique worst one.
    rng = np.random.default_rng(6)
    P1 = rng.dirichlet(np.ones(10))
    D = np.vstack([rng.dirichlet(np.ones(10) * 0.2), 0.9 * P1 + 0.1 * rng.dirichlet(np.ones(10))])
    P = np.vstack([P1, P1])
    res = solve_dual(D, P)
    assert_certified(res, 1e-9)
    np.testing.assert_allclose(res.lam, [1.0, 0.0], atol=1e-12)
    assert res.value == pytest.approx(kl(D[0], P1), abs=1e-12)


def test_prior_set_lowers_the_value_and_is_respected():
    rng = np.random.default_rng(9)
    D = rng.dirichlet(np.ones(40), size=3)
    P = 0.5 * D + 0.5 * rng.dirichlet(np.ones(40), size=3)
    free = solve_dual(D, P)
    box = PriorSet(3, lower=np.full(3, 0.3), upper=np.full(3, 0.4))
    boxed = solve_dual(D, P, prior=box)
    assert_certified(boxed, 1e-9)
    assert boxed.value <= free.value + 1e-12
    assert box.contains(boxed.lam, tol=1e-12)


def test_not_converged_when_iterations_run_out():
    rng = np.random.default_rng(10)
    D = rng.dirichlet(np.ones(50), size=5)
    P = 0.5 * D + 0.5 * rng.dirichlet(np.ones(50), size=5)
    with pytest.warns(ConvergenceWarning, match="not_converged"):
        res = solve_dual(D, P, max_iter=1, tol=1e-14)
    assert res.status == "not_converged"
    assert res.gap > 1e-14
    assert res.lower <= res.upper


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        (dict(family="tree"), InvalidOptionError, "unknown gate family"),
        (dict(family="constant", cells=[0, 1, 0, 1]), InvalidOptionError, "cells were given"),
        (dict(tol=0.0), InvalidOptionError, "tol must be positive"),
        (dict(prior=PriorSet(3)), ShapeMismatchError, "p=3"),
        (dict(prior=[0.5, 0.5]), InvalidOptionError, "PriorSet"),
    ],
)
def test_bad_options_are_refused(kwargs, error, match):
    D = np.full((2, 4), 0.25)
    with pytest.raises(error, match=match):
        solve_dual(D, D, **kwargs)


def _offset_game_by_cvxpy(D, P, offsets):
    """``min_q max_k (KL(D_k || q) - offsets_k)`` over the hull cut by ``sum q = 1``: an epigraph program."""
    import cvxpy as cp

    q, t = cp.Variable(D.shape[1]), cp.Variable()
    cons = [cp.sum(cp.rel_entr(D[k], q)) - offsets[k] <= t for k in range(D.shape[0])]
    prob = cp.Problem(cp.Minimize(t), cons + [q >= P.min(0), q <= P.max(0), cp.sum(q) == 1])
    prob.solve(solver="CLARABEL")
    assert prob.status in ("optimal", "optimal_inaccurate")
    return float(prob.value)


@pytest.mark.parametrize("kind,sign", [("overlapping", 1.0), ("overlapping", -1.0), ("disjoint", 1.0)])
def test_offset_game_matches_its_epigraph_program(kind, sign):
    # The excess game (offsets = expert errors) and the cross-entropy game (offsets = -H).
    D, P = make_instance(kind, 30, 3, 2)
    offsets = kl(D, P) if sign > 0 else -entropy(D)
    res = solve_dual(D, P, offsets=offsets, tol=1e-10)
    assert res.status == "optimal" and res.gap <= 1e-10
    np.testing.assert_allclose(res.kl, kl(D, res.q), rtol=0, atol=1e-12)
    assert abs(res.value - float((res.kl - offsets).max())) <= 1e-12
    assert abs(res.value - _offset_game_by_cvxpy(D, P, offsets)) <= 1e-6
    # A false variant: the game without offsets has another value.
    assert abs(solve_dual(D, P, tol=1e-10).value - res.value) > 1e-3


def test_offsets_checked():
    D, P = make_instance("overlapping", 10, 3, 0)
    with pytest.raises(InvalidOptionError, match="finite"):
        solve_dual(D, P, offsets=[0.0, np.inf, 0.0])
    with pytest.raises(ShapeMismatchError):
        solve_dual(D, P, offsets=[0.0, 0.0])
    with pytest.raises(InvalidOptionError, match="full"):
        solve_dual(D, P, family="constant", offsets=[0.0, 0.0, 0.0])
