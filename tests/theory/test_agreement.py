"""Independent solvers agree: cvxpy/Clarabel, the dual (water-filling) solver, Algorithm 1."""

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings

from theory.cvx import solve_cvxpy
from theory.prior import PriorSet
from theory.solve import solve_robust
from tests.theory.instances import instances, make_instance
from tests.theory.make_fixtures import CASES, build

#: cvxpy vs dual on values: Clarabel's certified gap is <= 1e-7 on these instances and the
#: dual certifies 1e-9, so the two may differ by the sum.
AGREE = 2e-7
FIXTURES = np.load(Path(__file__).with_name("data") / "cvxpy_reference.npz")


@settings(max_examples=25, deadline=None)
@given(instances())
def test_cvxpy_and_dual_agree(instance):
    kind, D, P = instance
    ref = solve_cvxpy(D, P)
    dual = solve_robust(D, P, solver="dual", tol=1e-9)
    assert dual.status == "optimal" and dual.gap <= 1e-9
    assert abs(ref.value - dual.value) <= max(AGREE, ref.gap + dual.gap)
    # Both certificates bracket the same optimum.
    assert dual.lower <= ref.upper + 1e-10 and ref.lower <= dual.upper + 1e-10
    # lam* is supported on the domains attaining the max KL of the robust model.
    assert dual.kl[dual.lam > 1e-6].min() >= dual.value - 1e-6


@settings(max_examples=10, deadline=None)
@given(instances(kinds=("overlapping", "disjoint"), n_max=25))
def test_cvxpy_and_dual_agree_on_restricted_families(instance):
    _, D, P = instance
    cells = np.arange(D.shape[1]) % 3
    for family, c in (("constant", None), ("partition", cells)):
        ref = solve_cvxpy(D, P, family=family, cells=c)
        dual = solve_robust(D, P, solver="dual", family=family, cells=c)
        assert abs(ref.value - dual.value) <= max(1e-6, ref.gap + dual.gap)


@pytest.mark.parametrize(
    "prior",
    [PriorSet(3, lower=[0.25, 0.25, 0.0]), PriorSet(3, upper=[0.3, 0.6, 0.6]), PriorSet(3, A=[[1.0, -1.0, 0.0]], b=[0.0])],
    ids=["lower", "upper", "polytope"],
)
def test_prior_sets_agree(prior):
    D, P = make_instance("overlapping", 80, 3, 21)
    ref = solve_cvxpy(D, P, prior=prior)
    dual = solve_robust(D, P, solver="dual", prior=prior)
    assert abs(ref.value - dual.value) <= AGREE
    assert prior.contains(dual.lam, tol=1e-9)


@pytest.mark.parametrize("name", sorted(CASES))
def test_dual_matches_stored_reference(name):
    # Regenerate with: python -m tests.theory.make_fixtures
    D, P, family, cells, prior = build(name)
    dual = solve_robust(D, P, solver="dual", family=family, cells=cells, prior=prior)
    ref_value, ref_gap = float(FIXTURES[f"{name}/value"]), float(FIXTURES[f"{name}/gap"])
    assert abs(dual.value - ref_value) <= max(AGREE, ref_gap + dual.gap)


def test_three_solvers_on_one_instance():
    D, P = make_instance("overlapping", 60, 4, 22)
    ref = solve_robust(D, P, solver="cvxpy")
    dual = solve_robust(D, P, solver="dual")
    fp = solve_robust(D, P, solver="fixed-point", tol=1e-6, max_iter=3000, record_every=5)
    assert abs(ref.value - dual.value) <= AGREE
    # Algorithm 1 is certified to its own gap.
    assert fp.lower - 1e-10 <= dual.value <= fp.upper + 1e-10
    assert fp.gap <= 1e-5
