"""The cvxpy/Clarabel reference: invariants of its solutions and its certificate."""

import numpy as np
import pytest
from hypothesis import given, settings

from theory.cvx import solve_cvxpy
from theory.divergences import kl, mixture
from theory.gates import gated_model, in_G1, pointwise_hull
from theory.prior import PriorSet
from theory.solve import solve_fixed_mixture
from tests.theory.instances import instances, make_instance

#: Certified gap that Clarabel reaches on these small instances (its interior-point
#: duals leave ~1e-8 weight on domains below the max; measured up to 2e-8).
CVX_GAP = 1e-7
#: With near-identical experts (hull widths ~1e-9) Clarabel's duals are less accurate
#: (measured gaps up to 5.9e-8 at n <= 500, p <= 5).
CVX_GAP_DEGENERATE = 3e-7


def check_invariants(res, D, P, prior=None, gap_tol=CVX_GAP):
    lo, hi = pointwise_hull(P)
    assert (res.q >= lo - 1e-15).all() and (res.q <= hi + 1e-15).all()
    assert abs(res.q.sum() - 1) <= 1e-12
    assert np.allclose(gated_model(res.gate, P), res.q, atol=1e-9)
    assert in_G1(res.gate, P, tol=1e-8)
    assert np.allclose(res.kl, kl(D, res.q), rtol=0, atol=0)
    prior = prior or PriorSet(D.shape[0])
    assert prior.contains(res.lam, tol=1e-9)
    # Certificate sandwich (lower from the exact dual function, upper = recomputed value).
    assert res.lower <= res.upper + 1e-10 and res.value == res.upper
    assert res.gap <= gap_tol
    # lam* only weighs domains attaining the worst case (complementary slackness).
    if prior.is_simplex:
        assert res.kl[res.lam > 1e-5].min() >= res.value - 1e-6


@settings(max_examples=25, deadline=None)
@given(instances())
def test_full_family_invariants(instance):
    kind, D, P = instance
    res = solve_cvxpy(D, P)
    # Clarabel reports reduced accuracy on some near-degenerate instances; the certificate
    # still has to hold.
    assert res.solver == "cvxpy" and res.status in ("optimal", "inaccurate")
    check_invariants(res, D, P, gap_tol=CVX_GAP if kind in ("overlapping", "disjoint") else CVX_GAP_DEGENERATE)
    assert np.isclose(res.value, res.kl.max(), rtol=0, atol=1e-15)


@settings(max_examples=15, deadline=None)
@given(instances(kinds=("overlapping", "disjoint")))
def test_families_are_nested(instance):
    # full contains every partition gate; a partition gate contains the constant gates.
    _, D, P = instance
    cells = np.arange(D.shape[1]) % 3
    full = solve_cvxpy(D, P).value
    part = solve_cvxpy(D, P, family="partition", cells=cells)
    const = solve_cvxpy(D, P, family="constant")
    assert full <= part.value + CVX_GAP and part.value <= const.value + CVX_GAP
    # One cell is the constant family, singleton cells the full family.
    one_cell = solve_cvxpy(D, P, family="partition", cells=np.zeros(D.shape[1], int))
    singletons = solve_cvxpy(D, P, family="partition", cells=np.arange(D.shape[1]))
    assert abs(one_cell.value - const.value) <= CVX_GAP
    assert abs(singletons.value - full) <= CVX_GAP
    # The lower bound uses the restricted best response, itself an iterative solve.
    for res in (part, const):
        assert res.lower <= res.upper + 1e-7 and res.gap <= 1e-6


@pytest.mark.parametrize(
    "prior",
    [
        PriorSet(3, lower=[0.2, 0.2, 0.2]),
        PriorSet(3, upper=[0.5, 0.5, 0.3]),
        PriorSet(3, A=[[1.0, -1.0, 0.0]], b=[0.0]),
    ],
    ids=["lower", "upper", "polytope"],
)
def test_prior_sets(prior):
    D, P = make_instance("overlapping", 60, 3, 5)
    full = solve_cvxpy(D, P)
    res = solve_cvxpy(D, P, prior=prior)
    check_invariants(res, D, P, prior)
    # Lambda is a subset of the simplex, so the adversary gets less.
    assert res.value <= full.value + CVX_GAP
    assert np.isclose(res.value, prior.max_linear(res.kl), rtol=0, atol=1e-15)


def test_prior_containing_lam_star_changes_nothing():
    D, P = make_instance("overlapping", 60, 3, 6)
    full = solve_cvxpy(D, P)
    around = PriorSet(3, lower=np.maximum(full.lam - 0.05, 0), upper=np.minimum(full.lam + 0.05, 1))
    res = solve_cvxpy(D, P, prior=around)
    assert abs(res.value - full.value) <= CVX_GAP
    assert np.allclose(res.lam, full.lam, atol=1e-4)


@settings(max_examples=20, deadline=None)
@given(instances())
def test_fixed_mixture_agrees_with_water_fill(instance):
    _, D, P = instance
    lam = np.random.default_rng(D.shape[1]).dirichlet(np.ones(D.shape[0]))
    ref = solve_cvxpy(D, P, mixture=lam)
    wf = solve_fixed_mixture(D, P, lam)
    # The water-fill is exact; Clarabel is within 1.5e-8 relative (measured, near-degenerate).
    assert wf.value - 1e-12 <= ref.value <= wf.value + 1e-7 * max(1.0, wf.value)
    assert abs(wf.gap) <= 1e-12
    assert np.isclose(ref.value, kl(mixture(lam, D), ref.q), rtol=0, atol=0)


def test_constant_family_fixed_mixture():
    D, P = make_instance("overlapping", 40, 3, 7)
    lam = np.array([0.5, 0.3, 0.2])
    ref = solve_cvxpy(D, P, mixture=lam, family="constant")
    wf = solve_fixed_mixture(D, P, lam, family="constant")
    assert abs(ref.value - wf.value) <= 1e-6 + wf.gap
    assert ref.lower <= ref.upper + 1e-9


def test_duality_lam_star_is_least_favourable():
    # phi(lam*) is the largest value of the dual function: perturbed lam do worse.
    from theory.certificate import dual_function

    D, P = make_instance("overlapping", 80, 4, 8)
    res = solve_cvxpy(D, P)
    rng = np.random.default_rng(0)
    for _ in range(10):
        other = 0.9 * res.lam + 0.1 * rng.dirichlet(np.ones(4))
        assert dual_function(D, P, other)[0] <= res.lower + 1e-10


FIXTURES = np.load(__import__("pathlib").Path(__file__).with_name("data") / "cvxpy_reference.npz")


def test_fixtures_regenerate_small_case():
    # The stored references are reproducible: re-solve the cheapest one.
    from tests.theory.make_fixtures import build

    D, P, family, cells, prior = build("disjoint_full")
    res = solve_cvxpy(D, P, family=family, cells=cells, prior=prior)
    assert abs(res.value - FIXTURES["disjoint_full/value"]) <= 1e-9
