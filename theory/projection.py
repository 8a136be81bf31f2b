"""Projections onto the feasible sets of the robust game: the hull of the experts and Lambda."""

from __future__ import annotations

import numpy as np
from scipy.optimize import brentq

from theory.errors import EmptyGateSpaceError
from theory.prior import PriorSet


def project_capped_simplex(y, lo, hi, mass: float = 1.0) -> np.ndarray:
    """Euclidean projection onto ``{q : lo <= q <= hi, sum q = mass}``.

    Solves ``min_q ||q - y||_2^2`` over a box cut by a hyperplane. The KKT conditions
    give ``q = clip(y - tau, lo, hi)`` with the scalar ``tau`` chosen so that the sum is
    ``mass``; the sum is non-increasing in ``tau``, so ``tau`` is a bracketed root.

    Parameters
    ----------
    y, lo, hi : array_like (n,)
        Point to project and the box; ``sum lo <= mass <= sum hi`` is required.
    mass : float

    Returns
    -------
    ndarray (n,)
    """
    y = np.asarray(y, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if lo.sum() > mass * (1 + 1e-12) or hi.sum() < mass * (1 - 1e-12):
        raise EmptyGateSpaceError(
            f"no point of the box sums to {mass:g}: sum of lower bounds {lo.sum():.6g}, "
            f"sum of upper bounds {hi.sum():.6g}"
        )

    def excess(tau):
        return np.clip(y - tau, lo, hi).sum() - mass

    # At tau_lo every coordinate sits at its upper bound, at tau_hi at its lower bound.
    tau_lo, tau_hi = float(np.min(y - hi)), float(np.max(y - lo))
    if excess(tau_lo) <= 0:
        tau = tau_lo
    elif excess(tau_hi) >= 0:
        tau = tau_hi
    else:
        tau = brentq(excess, tau_lo, tau_hi, xtol=1e-300, rtol=4 * np.finfo(float).eps, maxiter=500)
    return np.clip(y - tau, lo, hi)


class PriorProjector:
    """KL (Bregman) projection onto a prior set Lambda: ``argmin_{lam in Lambda} KL(lam || y)``.

    This is the projection step of exponentiated gradient restricted to Lambda. Without
    a polytope it is closed form up to a scalar: ``lam = clip(s y, lower, upper)`` with
    ``sum lam = 1`` (a water-fill, :func:`theory.best_response.water_fill`); with a
    polytope ``A lam <= b`` it is a small convex program compiled once with cvxpy.
    """

    def __init__(self, prior: PriorSet):
        self.prior = prior
        self.lo, self.hi = prior.bounds()
        self._problem = None
        if prior.A is not None:
            import cvxpy as cp  # only polytope priors need the modelling layer

            p = prior.p
            self._lam = cp.Variable(p)
            self._log_y = cp.Parameter(p)
            # KL(lam || y) = -H(lam) - lam . log y, affine in the parameter log y (DPP).
            objective = cp.Minimize(-cp.sum(cp.entr(self._lam)) - self._log_y @ self._lam)
            constraints = [
                cp.sum(self._lam) == 1,
                self._lam >= self.lo,
                self._lam <= self.hi,
                prior.A @ self._lam <= prior.b,
            ]
            self._problem = cp.Problem(objective, constraints)

    def __call__(self, y) -> np.ndarray:
        y = np.asarray(y, dtype=np.float64)
        if self.prior.is_simplex:
            return y / y.sum()
        if self._problem is None:
            from theory.simplex import water_fill

            return water_fill(y / y.sum(), self.lo, self.hi)[0]
        self._log_y.value = np.log(np.maximum(y / y.sum(), np.finfo(float).tiny))
        self._problem.solve(solver="CLARABEL")
        lam = np.clip(self._lam.value, self.lo, self.hi)
        return lam / lam.sum()


def nearest_in_prior(prior: PriorSet, lam, tol: float = 1e-9) -> np.ndarray:
    """``lam`` itself when it lies in Lambda (within ``tol``), else its Euclidean projection.

    Solves ``min_{mu in Lambda} ||mu - lam||_2^2``: closed form without a polytope
    (:func:`project_capped_simplex`), a small quadratic program with one.
    """
    lam = np.asarray(lam, dtype=np.float64)
    if prior.contains(lam, tol):
        return lam
    lo, hi = prior.bounds()
    if prior.A is None:
        return project_capped_simplex(lam, lo, hi)
    import cvxpy as cp  # only polytope priors need the modelling layer

    mu = cp.Variable(prior.p)
    cons = [cp.sum(mu) == 1, mu >= lo, mu <= hi, prior.A @ mu <= prior.b]
    cp.Problem(cp.Minimize(cp.sum_squares(mu - lam)), cons).solve(solver="CLARABEL")
    return np.clip(mu.value, lo, hi)
