"""Independent cvxpy/Clarabel reference for the robust and best-response problems (tests only).

The epigraph formulation of DESIGN 2.3: gate variables ``g`` (n x p) >= 0 with rows
summing to one (restricted families: one row per cell), ``q = sum_k g[:, k] P_k``,
``sum q = 1``, ``sum_x rel_entr(D_k, q) <= t`` for every k (and the prior set's dual
form for Lambda), minimise ``t``.
"""

from __future__ import annotations

import cvxpy as cp
import numpy as np
import scipy.sparse as sp
from scipy.special import rel_entr

from theory.prior import PriorSet


def _model(P, cells):
    p, n = P.shape
    labels = np.zeros(n, dtype=int) if cells is None else np.unique(np.asarray(cells), return_inverse=True)[1]
    C = int(labels.max()) + 1
    W = cp.Variable((C, p), nonneg=True)
    # q(x) = sum_k W[cell(x), k] P_k(x), built as a sparse linear map of vec(W).
    rows = np.repeat(np.arange(n), p)
    cols = (labels[:, None] * p + np.arange(p)[None, :]).ravel()
    M = sp.csr_matrix((P.T.ravel(), (rows, cols)), shape=(n, C * p))
    q = M @ cp.vec(W, order="C")
    return W, q, [cp.sum(W, axis=1) == 1, cp.sum(q) == 1]


def robust_reference(D, P, *, cells=None, family="full", prior: PriorSet | None = None):
    """Robust value, q and lam* from Clarabel (``family`` "full" uses one cell per outcome).

    Returns (value recomputed in numpy as max over Lambda of lam . KL(D || q), q, lam*,
    Clarabel's own objective).
    """
    D = np.asarray(D, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    p, n = D.shape
    if family == "full":
        cells = np.arange(n)
    elif family == "constant":
        cells = None
    W, q, cons = _model(P, cells)
    kls = cp.hstack([cp.sum(cp.rel_entr(D[k], q)) for k in range(p)])
    if prior is None or prior.is_simplex:
        t = cp.Variable()
        epi = [kls <= t]
        prob = cp.Problem(cp.Minimize(t), cons + epi)
    else:
        # max_{lam in Lambda} lam . kls by LP duality: min over multipliers of the
        # simplex, bound and polytope constraints.
        lo, hi = prior.bounds()
        a = cp.Variable()
        u = cp.Variable(p, nonneg=True)
        w = cp.Variable(p, nonneg=True)
        obj = a + hi @ u - lo @ w
        stat = a + u - w
        if prior.A is not None:
            z = cp.Variable(prior.A.shape[0], nonneg=True)
            obj = obj + prior.b @ z
            stat = stat + prior.A.T @ z
        epi = [kls <= stat]
        prob = cp.Problem(cp.Minimize(obj), cons + epi)
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal", prob.status
    qv = np.asarray(q.value)
    lam = np.asarray(epi[0].dual_value).ravel()
    lam = np.clip(lam, 0, None)
    lam /= lam.sum()
    kl = rel_entr(D, np.clip(qv, 1e-300, None)).sum(axis=1)
    value = PriorSet(p).max_linear(kl) if prior is None else prior.max_linear(kl)
    return float(value), qv, lam, float(prob.value)


def best_response_reference(D, P, lam, *, family="full", cells=None):
    """``argmin_q KL(D_lam || q)`` over the family, and its objective, from Clarabel."""
    D = np.asarray(D, dtype=np.float64)
    P = np.asarray(P, dtype=np.float64)
    v = np.asarray(lam) @ D
    n = D.shape[1]
    if family == "full":
        cells = np.arange(n)
    elif family == "constant":
        cells = None
    W, q, cons = _model(P, cells)
    on = v > 0
    prob = cp.Problem(cp.Minimize(cp.sum(cp.rel_entr(v[on], q[on]))), cons)
    prob.solve(solver="CLARABEL")
    assert prob.status == "optimal", prob.status
    return np.asarray(q.value), float(prob.value)
