"""Blahut-Arimoto against closed forms, and perfect experts: robust value = channel capacity."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from theory.capacity import blahut_arimoto
from theory.cvx import solve_cvxpy
from theory.divergences import entropy


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3])
def test_binary_symmetric_channel(eps):
    W = np.array([[1 - eps, eps], [eps, 1 - eps]])
    res = blahut_arimoto(W)
    assert res.status == "optimal" and res.gap <= 1e-12
    assert np.isclose(res.capacity, np.log(2) - entropy([eps, 1 - eps]), atol=1e-12)
    assert np.allclose(res.input, 0.5, atol=1e-6)


def test_bracket_and_not_converged_status():
    W = np.random.default_rng(3).dirichlet(np.ones(6), size=4)
    short = blahut_arimoto(W, max_iter=2)
    full = blahut_arimoto(W)
    assert short.status == "not_converged" and short.iterations == 2
    assert short.lower <= full.capacity + 1e-12 <= short.upper + 2e-12


@settings(max_examples=15, deadline=None)
@given(st.integers(2, 4), st.integers(2, 25), st.integers(0, 2**32 - 1))
def test_perfect_experts_value_is_capacity(p, n, seed):
    # pi_k = D_k: min_q max_k KL(D_k || q) is Gallager's minimax form of the capacity, and
    # its optimal q = r* D lies in the pointwise hull of the experts.
    D = np.random.default_rng(seed).dirichlet(np.full(n, 0.8), size=p)
    cap = blahut_arimoto(D)
    res = solve_cvxpy(D, D)
    assert abs(res.value - cap.capacity) <= 1e-7
    # The output distribution r* D is unique, so the robust model equals it.
    assert np.allclose(res.q, cap.output, atol=1e-4)


def test_perfect_experts_least_favourable_mixture_is_capacity_input():
    # Affinely independent rows: the capacity-achieving input is unique.
    D = np.array([[0.7, 0.2, 0.1], [0.1, 0.8, 0.1], [0.2, 0.2, 0.6]])
    cap = blahut_arimoto(D)
    res = solve_cvxpy(D, D)
    assert abs(res.value - cap.capacity) <= 1e-8
    assert np.allclose(res.lam, cap.input, atol=1e-5)
