"""Regression: the restricted best response must not stop on a transient Frank-Wolfe stall.

On this instance (found by hypothesis) the Frank-Wolfe gap grows over the first Newton
steps; an early stall rule once stopped the constant-family best response 0.023 nats
above the optimum, so the dual lower bound exceeded cvxpy's feasible upper bound.
"""

import numpy as np

from theory import best_response, kl, solve_cvxpy, solve_dual

D = np.array(
    [
        [9.15157480e-02, 1.81131240e-01, 8.20053767e-02, 6.52496252e-02, 2.22282390e-01, 1.29005059e-01, 2.28810561e-01],
        [1.64404083e-02, 5.65165690e-04, 7.01724848e-02, 5.74071791e-02, 7.06344510e-01, 7.41345625e-02, 7.49356897e-02],
        [2.39078572e-02, 1.87869041e-01, 1.62161617e-01, 2.22368552e-01, 2.41473175e-01, 1.11991844e-01, 5.02279144e-02],
        [7.28372362e-03, 2.99606387e-01, 4.53344993e-01, 5.30054844e-02, 8.50267552e-02, 3.08245379e-02, 7.09081187e-02],
    ]
)
P = np.array(
    [
        [1.38795578e-02, 7.61155396e-02, 4.27672954e-02, 2.80668688e-01, 1.39593758e-01, 1.75196445e-01, 2.71778716e-01],
        [2.03195293e-01, 8.74310111e-02, 5.64163337e-02, 1.69809984e-01, 8.70439167e-03, 4.73981552e-01, 4.61434597e-04],
        [5.16181516e-01, 7.67073821e-03, 2.27323878e-01, 4.43467082e-02, 1.48434173e-01, 1.76071537e-02, 3.84358321e-02],
        [1.30142569e-03, 7.89777029e-02, 1.16106656e-01, 1.34877250e-01, 1.92612302e-01, 2.78444174e-02, 4.48280246e-01],
    ]
)
D /= D.sum(axis=1, keepdims=True)
P /= P.sum(axis=1, keepdims=True)


def test_constant_best_response_reaches_the_cvxpy_optimum():
    ref = solve_cvxpy(D, P, family="constant")
    q = best_response(D, P, ref.lam, family="constant")
    assert ref.lam @ kl(D, q) <= ref.lam @ kl(D, ref.q) + 1e-9


def test_constant_dual_certifies_the_cvxpy_value():
    ref = solve_cvxpy(D, P, family="constant")
    res = solve_dual(D, P, family="constant")
    assert res.status == "optimal"
    assert res.lower - 1e-9 <= ref.value <= res.upper + 1e-7
