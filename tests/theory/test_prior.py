"""Prior sets Lambda: linear maximisation, membership, and the projections used by the solvers."""

import numpy as np
from hypothesis import given, settings, strategies as st
from scipy.optimize import linprog

from theory.prior import PriorSet
from theory.prior import PriorProjector, nearest_in_prior

SETTINGS = settings(max_examples=30, deadline=None)


@st.composite
def box_priors(draw):
    p = draw(st.integers(2, 5))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    centre = rng.dirichlet(np.ones(p))
    lower = np.maximum(centre - rng.uniform(0, 0.3, p), 0)
    upper = np.minimum(centre + rng.uniform(0, 0.3, p), 1)
    return PriorSet(p, lower=lower, upper=upper), rng


@SETTINGS
@given(box_priors())
def test_greedy_argmax_matches_linear_program(case):
    prior, rng = case
    c = rng.normal(size=prior.p)
    lo, hi = prior.bounds()
    ref = linprog(-c, A_eq=np.ones((1, prior.p)), b_eq=[1.0], bounds=list(zip(lo, hi)), method="highs")
    lam = prior.argmax_linear(c)
    assert prior.contains(lam)
    assert np.isclose(lam @ c, -ref.fun, atol=1e-12)
    assert prior.contains(prior.feasible_point())


@SETTINGS
@given(box_priors())
def test_kl_projection_is_optimal(case):
    # KKT conditions of min KL(lam || y) over the box-capped simplex: lam = clip(s y, lo, hi)
    # for one scalar s (Clarabel is only ~1e-5 accurate on this exponential-cone problem).
    prior, rng = case
    y = rng.dirichlet(np.ones(prior.p))
    lam = PriorProjector(prior)(y)
    assert prior.contains(lam, tol=1e-12)
    lo, hi = prior.bounds()
    inside = (lam > lo + 1e-12) & (lam < hi - 1e-12)
    ratio = lam / y
    if inside.any():
        s = ratio[inside].mean()
        assert np.allclose(ratio[inside], s, rtol=1e-10)
        assert (s * y[lam <= lo + 1e-12] <= lo[lam <= lo + 1e-12] * (1 + 1e-10)).all()
        assert (s * y[lam >= hi - 1e-12] >= hi[lam >= hi - 1e-12] * (1 - 1e-10)).all()
    # Any other point of Lambda is further away in KL.
    other = nearest_in_prior(prior, rng.dirichlet(np.ones(prior.p)))
    kl = lambda a: float(np.sum(a * np.log(np.maximum(a, 1e-300) / y)))  # noqa: E731
    assert kl(lam) <= kl(other) + 1e-12


def test_polytope_projection_and_nearest_point():
    prior = PriorSet(3, A=[[1.0, -1.0, 0.0]], b=[0.0])
    y = np.array([0.7, 0.2, 0.1])
    lam = PriorProjector(prior)(y)
    assert prior.contains(lam, tol=1e-8)
    # lam_0 <= lam_1 binds: the projection equalises the two.
    assert np.isclose(lam[0], lam[1], atol=1e-7)
    mu = nearest_in_prior(prior, y)
    assert prior.contains(mu, tol=1e-8) and np.allclose(mu, [0.45, 0.45, 0.1], atol=1e-6)
    assert nearest_in_prior(prior, [0.2, 0.3, 0.5]) is not None


def test_max_linear_with_polytope():
    prior = PriorSet(3, A=[[1.0, -1.0, 0.0]], b=[0.0])
    # Maximise lam_0: with lam_0 <= lam_1 the best is (1/2, 1/2, 0).
    assert np.isclose(prior.max_linear([1.0, 0.0, 0.0]), 0.5, atol=1e-10)
