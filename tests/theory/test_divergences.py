"""KL, entropy and the Jensen-Shannon identity of DESIGN 2, as property tests."""

import numpy as np
from hypothesis import given, settings, strategies as st

from theory.divergences import cross_entropy, entropy, jsd, kl, mixture

SETTINGS = settings(max_examples=60, deadline=None)


@st.composite
def rows(draw, p_max=4, n_max=12, sparse=True):
    seed = draw(st.integers(0, 2**32 - 1))
    p, n = draw(st.integers(1, p_max)), draw(st.integers(1, n_max))
    rng = np.random.default_rng(seed)
    a = rng.dirichlet(np.full(n, 0.5), size=p)
    if sparse and n > 1:
        a = np.where(rng.random((p, n)) < 0.3, 0.0, a)
        a[:, 0] += 1e-3
        a /= a.sum(axis=1, keepdims=True)
    return a


@SETTINGS
@given(rows(), st.integers(0, 2**32 - 1))
def test_kl_nonnegative_and_zero_iff_equal(a, seed):
    b = np.random.default_rng(seed).dirichlet(np.ones(a.shape[1]))
    assert (kl(a, b) >= -1e-15).all()
    assert np.allclose(kl(a, a), 0.0, atol=1e-15)
    differ = np.abs(a - b).max(axis=1) > 1e-6
    assert (kl(a, b)[differ] > 0).all()


def test_kl_infinite_off_support_and_zero_log_zero():
    assert kl([0.5, 0.5], [1.0, 0.0]) == np.inf
    assert kl([1.0, 0.0], [0.5, 0.5]) == np.log(2)
    assert entropy([1.0, 0.0]) == 0.0
    assert np.isclose(cross_entropy([0.5, 0.5], [0.5, 0.5]), np.log(2), rtol=1e-15)


@SETTINGS
@given(rows(sparse=False), st.integers(0, 2**32 - 1))
def test_jsd_identity_and_bounds(D, seed):
    rng = np.random.default_rng(seed)
    p, n = D.shape
    lam = rng.dirichlet(np.ones(p))
    pi = rng.dirichlet(np.ones(n))
    J = jsd(lam, D)
    # KL(D_lam || pi) = sum_k lam_k KL(D_k || pi) - JSD_lam  (DESIGN 2, exact).
    assert np.isclose(kl(mixture(lam, D), pi), lam @ kl(D, pi) - J, rtol=1e-10, atol=1e-12)
    assert -1e-15 <= J <= entropy(lam) + 1e-12


def test_jsd_reaches_entropy_for_disjoint_domains():
    D = np.eye(3)
    lam = np.array([0.2, 0.3, 0.5])
    assert np.isclose(jsd(lam, D), entropy(lam), rtol=1e-14)
    assert jsd(lam, np.ones((3, 4)) / 4) == 0.0
