"""Projected Newton steps on a polytope: the step QP, its polishing on a face, the line search.

Both the dual ascent over Lambda (:mod:`theory.dual`) and the restricted best response
over gate weights (:func:`theory.best_response.fit_gate_weights`) take steps of the
same kind on a polytope ``X = {x : E x = e, x >= lo, x <= hi, G x <= h}``:

1. the quadratic model ``min_x 1/2 x' M x + c' x`` over ``X`` is solved by an
   interior-point method (:class:`PolytopeQP`, Clarabel's native API);
2. its solution is trusted only for the face of ``X`` it picks: near the optimum the
   model's decrease (``~ gap^2``) is far below the interior-point accuracy, so the step
   itself is the exact Newton step on that face (:func:`face_step` for a general
   polytope, :func:`face_step_simplices` for a product of simplices with one extra
   row);
3. a backtracking (Armijo) search along the step (:func:`backtrack`), with the
   Levenberg-Marquardt damping of the model adapted to the step taken
   (:func:`damping`).
"""

from __future__ import annotations

import numpy as np

#: Relative rounding of an objective that is a sum of many terms: steps whose gain is
#: below it are judged by the certificate at the new point, not by the gain.
ROUNDING = 4 * np.finfo(float).eps
#: Armijo's sufficient-decrease fraction of the model's predicted change.
ARMIJO = 1e-4
#: Components of a QP solution within this distance of a bound are taken as on it.
ACTIVE = 1e-9


class PolytopeQP:
    """``min_x 1/2 x' M x + c' x`` over ``{x : E x = e, x >= lo, x_i <= hi_i (i capped), G x <= h}``.

    The constraint matrix and the cones are built once; each :meth:`solve` is one
    Clarabel solve at 1e-12 feasibility and gap tolerances (its defaults, 1e-8, would
    limit the certificates the callers build on its steps).

    Parameters
    ----------
    E : sparse or array (m_eq, n)
    e : array (m_eq,)
    lo : array (n,)
    hi : array (n,), optional
        Upper bounds; only the coordinates in ``capped`` get a row.
    capped : array of bool (n,), optional
    G, h : optional
        Extra inequality rows ``G x <= h``.
    """

    def __init__(self, E, e, lo, hi=None, capped=None, G=None, h=None):
        import clarabel  # imported on use: theory's start-up stays cheap
        from scipy import sparse

        n = lo.shape[0]
        rows = [E if sparse.issparse(E) else sparse.csc_matrix(E), -sparse.eye(n, format="csc")]
        rhs = [np.asarray(e, dtype=np.float64), -lo]
        if capped is not None and capped.any():
            rows.append(sparse.eye(n, format="csc")[np.flatnonzero(capped)])
            rhs.append(hi[capped])
        if G is not None:
            rows.append(sparse.csc_matrix(G))
            rhs.append(h)
        self.A = sparse.vstack(rows, format="csc")
        self.b = np.concatenate(rhs)
        n_eq = rows[0].shape[0]
        self.cones = [clarabel.ZeroConeT(n_eq), clarabel.NonnegativeConeT(self.A.shape[0] - n_eq)]
        self.settings = clarabel.DefaultSettings()
        self.settings.verbose = False
        self.settings.tol_feas = 1e-12
        self.settings.tol_gap_abs = self.settings.tol_gap_rel = 1e-12
        self._clarabel, self._sparse = clarabel, sparse

    def solve(self, M, c) -> np.ndarray:
        """The QP's solution ``x`` (feasible to about 1e-12; callers repair the rest)."""
        P = self._sparse.triu(M, format="csc")
        return np.asarray(self._clarabel.DefaultSolver(P, c, self.A, self.b, self.cones, self.settings).solve().x)


def face_step(x, lam, g, M, lo, hi, A=None, b=None) -> np.ndarray | None:
    """Exact Newton step ``max g.d - 1/2 d' M d`` from ``lam`` on the face of Lambda that ``x`` lies on.

    Lambda is ``{lam : sum lam = 1, lo <= lam <= hi, A lam <= b}``. The face is read off
    the QP solution ``x``: bounds within :data:`ACTIVE` of it and tight polytope rows.
    On it the step is fixed on the active bounds and, on the free coordinates, a
    particular solution of the face's equality rows plus the Newton step in their null
    space (a small dense solve). None when the step leaves Lambda.
    """
    from scipy.linalg import null_space

    p = lam.shape[0]
    at_lo = x <= lo + ACTIVE
    at_hi = (x >= hi - ACTIVE) & ~at_lo
    fixed = at_lo | at_hi
    d = np.zeros(p)
    d[at_lo] = lo[at_lo] - lam[at_lo]
    d[at_hi] = hi[at_hi] - lam[at_hi]
    free = ~fixed
    eq_rows = [np.ones((1, p))]
    eq_rhs = [np.array([1.0 - lam.sum()])]
    if A is not None:
        tight = A @ x >= b - ACTIVE
        eq_rows.append(A[tight])
        eq_rhs.append(b[tight] - A[tight] @ lam)
    E = np.vstack(eq_rows)
    rhs = np.concatenate(eq_rhs) - E[:, fixed] @ d[fixed]
    Ef = E[:, free]
    d_free = np.linalg.pinv(Ef) @ rhs
    Z = null_space(Ef) if free.any() else np.zeros((0, 0))
    if Z.size:
        Mf = M[np.ix_(free, free)]
        grad = g[free] - M[np.ix_(free, fixed)] @ d[fixed] - Mf @ d_free
        d_free = d_free + Z @ np.linalg.lstsq(Z.T @ Mf @ Z, Z.T @ grad, rcond=None)[0]
    d[free] = d_free
    y = lam + d
    if (y < lo - 1e-15).any() or (y > hi + 1e-15).any():
        return None
    if A is not None and (A @ y > b + 1e-12).any():
        return None
    return d


def face_step_simplices(G, blocks, W, S, masses, mass_constrained: bool) -> np.ndarray | None:
    """Exact Newton step ``min <G, d> + 1/2 d' H d`` from ``W`` on the face that ``S`` picks.

    The polytope is a product of simplices, one row of ``W`` (C x p) each, cut by the
    mass row ``sum_ck W_ck masses_ck = 1`` when ``mass_constrained``; ``H`` is block
    diagonal with one (p x p) block per row. The face is the zero pattern of the QP
    solution ``S`` (entries within :data:`ACTIVE` of zero). Each row's sum constraint is
    eliminated exactly (the last free weight absorbs the others), so the constraints hold
    to the rounding of ``|d|`` rather than of the O(1) multipliers; the mass row is then
    a scalar Schur complement over the per-row reduced systems (a dense solve over all
    C p weights would cost ``(C p)^3``). None when the step leaves the polytope or the
    curvature is not finite.
    """
    C, p = G.shape
    active = S <= ACTIVE
    d = np.where(active, -W, 0.0)
    parts = []
    for c in range(C):
        free = np.flatnonzero(~active[c])
        if free.size == 0:
            return None
        pivot, rest = free[-1], free[:-1]
        d[c, pivot] -= d[c].sum()
        Z = np.vstack([np.eye(rest.size), -np.ones((1, rest.size))])
        H = blocks[c][np.ix_(free, free)]
        K = Z.T @ H @ Z
        # The gradient of the model at d[c] (fixed entries and pivot moved): it includes
        # the coupling H[free, active] d[active] of the weights the face sets to zero.
        g = Z.T @ (G[c, free] + blocks[c][free] @ d[c])
        m = Z.T @ masses[c, free]
        if not (np.isfinite(K).all() and np.isfinite(g).all()):
            # Curvature v / q^2 overflows where q underflows (experts e^-700 apart on one
            # outcome): no Newton step on this face; the caller falls back to the QP's step.
            return None
        solve = np.linalg.pinv(K, rcond=1e-13, hermitian=True) if rest.size else np.zeros((0, 0))
        parts.append((free, Z, solve @ g, solve @ m, m))
    beta = 0.0
    if mass_constrained:
        shortfall = 1.0 - float((masses * (W + d)).sum())
        denom = sum(float(m @ b) for _, _, _, b, m in parts)
        if denom > 0:
            beta = -(shortfall + sum(float(m @ a) for _, _, a, _, m in parts)) / denom
    for c, (free, Z, a, b, _) in enumerate(parts):
        d[c, free] -= Z @ (a + beta * b)
    below = W + d < 0
    if (W + d < -1e-15).any():
        return None
    # Weights that the step takes below zero by rounding land on zero exactly, so that
    # the line search's W + step d (and the model q_W) stays non-negative for step <= 1.
    d[below] = -W[below]
    return d


def backtrack(trial, accept, *, min_step: float):
    """Backtracking search: ``trial(t)`` for ``t = 1, 1/2, 1/4, ...`` while ``t > min_step``.

    Returns ``(candidate, t)`` for the first candidate that ``accept(candidate, t)``
    takes, or ``(None, t)`` with the first step not tried. The Armijo rule with
    fraction :data:`ARMIJO` (plus the caller's rounding allowance) goes into ``accept``.
    """
    step = 1.0
    while step > min_step:
        candidate = trial(step)
        if accept(candidate, step):
            return candidate, step
        step *= 0.5
    return None, step


def damping(mu: float, step: float, *, floor: float = 0.0, cap: float = np.inf) -> float:
    """Levenberg-Marquardt damping after a step: a tenth after a full step, ten times otherwise."""
    return max(mu / 10, floor) if step == 1.0 else min(mu * 10, cap)


def bfgs_update(B, s, y) -> np.ndarray:
    """Damped (Powell) BFGS update of ``B ~ -Hessian`` of a concave function.

    ``s`` is the step and ``y`` the change of the gradient; with ``-y`` the curvature
    pair is that of the convex negative. Damping keeps ``B`` positive definite when the
    pair shows too little curvature.
    """
    y = -y
    if not np.all(np.isfinite(y)):
        return B
    Bs = B @ s
    sBs = float(s @ Bs)
    if sBs <= 0:
        return B
    sy = float(s @ y)
    if sy < 0.2 * sBs:
        theta = 0.8 * sBs / (sBs - sy)
        y = theta * y + (1 - theta) * Bs
        sy = float(s @ y)
    return B - np.outer(Bs, Bs) / sBs + np.outer(y, y) / sy
