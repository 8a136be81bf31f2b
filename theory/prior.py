"""Prior sets Lambda for the mixture weights (simplex, box and polytope) and the projections onto them."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.errors import InfeasibleLambdaError, InvalidOptionError, ShapeMismatchError
from theory.simplex import project_capped_simplex, restore_mass, water_fill


@dataclass(frozen=True)
class PriorSet:
    """``Lambda = {lam in simplex : lower <= lam <= upper, A lam <= b}``.

    The default (no bounds, no polytope) is the whole simplex.
    """

    p: int
    lower: np.ndarray | None = None
    upper: np.ndarray | None = None
    A: np.ndarray | None = None
    b: np.ndarray | None = None

    def __post_init__(self):
        p = self.p
        for name in ("lower", "upper"):
            v = getattr(self, name)
            if v is not None:
                v = np.asarray(v, dtype=np.float64)
                if v.shape != (p,):
                    raise ShapeMismatchError(f"lambda {name} bounds must have length p={p}, got shape {v.shape}")
                if np.isnan(v).any():
                    # Every comparison with NaN is False: a NaN bound would pass every check.
                    k = int(np.flatnonzero(np.isnan(v))[0])
                    raise InvalidOptionError(f"lambda {name} bound for domain {k} is NaN")
                object.__setattr__(self, name, v)
        if (self.A is None) != (self.b is None):
            raise ShapeMismatchError("a polytope prior needs both A and b")
        if self.A is not None:
            A = np.atleast_2d(np.asarray(self.A, dtype=np.float64))
            b = np.atleast_1d(np.asarray(self.b, dtype=np.float64))
            if A.shape[1] != p or A.shape[0] != b.shape[0]:
                raise ShapeMismatchError(f"polytope A must be (m x p={p}) and b of length m; got A {A.shape}, b {b.shape}")
            if not (np.isfinite(A).all() and not np.isnan(b).any()):
                raise InvalidOptionError("the polytope A lam <= b has NaN or infinite coefficients")
            object.__setattr__(self, "A", A)
            object.__setattr__(self, "b", b)
        lo, hi = self.bounds()
        if (lo > hi + 1e-12).any():
            k = int(np.flatnonzero(lo > hi + 1e-12)[0])
            raise InfeasibleLambdaError(f"lambda bounds for domain {k}: lower {lo[k]:g} > upper {hi[k]:g}")
        if lo.sum() > 1 + 1e-12 or hi.sum() < 1 - 1e-12:
            raise InfeasibleLambdaError(
                f"lambda bounds are infeasible: sum of lower bounds {lo.sum():g}, sum of upper bounds {hi.sum():g}; "
                "the simplex needs lower sum <= 1 <= upper sum"
            )
        if self.A is not None:
            res = self._lp(np.zeros(p))
            if res.status == 2:
                raise InfeasibleLambdaError("the polytope A lam <= b does not meet the simplex within the bounds")

    @property
    def is_simplex(self) -> bool:
        lo, hi = self.bounds()
        return self.A is None and not (lo > 0).any() and not (hi < 1).any()

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        lo = np.zeros(self.p) if self.lower is None else np.maximum(self.lower, 0.0)
        hi = np.ones(self.p) if self.upper is None else np.minimum(self.upper, 1.0)
        return lo, hi

    def _lp(self, c):
        # Imported here: scipy.optimize costs ~0.3 s, and only polytope priors need an LP.
        from scipy.optimize import linprog

        lo, hi = self.bounds()
        return linprog(
            -np.asarray(c, dtype=np.float64),
            A_ub=self.A,
            b_ub=self.b,
            A_eq=np.ones((1, self.p)),
            b_eq=[1.0],
            bounds=list(zip(lo, hi)),
            method="highs",
            # HiGHS's default feasibility tolerance (1e-7) would blur certificates at 1e-9 nats.
            options={"primal_feasibility_tolerance": 1e-10, "dual_feasibility_tolerance": 1e-10},
        )

    def argmax_linear(self, c) -> np.ndarray:
        """A maximiser of ``lam . c`` over Lambda (an LP; greedy when there is no polytope)."""
        c = np.asarray(c, dtype=np.float64)
        if self.A is None:
            lo, hi = self.bounds()
            lam = lo.copy()
            room = 1.0 - lam.sum()
            for k in np.argsort(-c, kind="stable"):
                step = min(hi[k] - lam[k], room)
                lam[k] += step
                room -= step
                if room <= 0:
                    break
            return lam
        res = self._lp(np.where(np.isfinite(c), c, np.finfo(float).max / 1e6))
        if res.status != 0:
            raise InfeasibleLambdaError(f"linear maximisation over Lambda failed: {res.message}")
        return np.clip(res.x, 0.0, 1.0)

    def max_linear(self, c) -> float:
        """``max_{lam in Lambda} lam . c`` (the worst linearised loss for per-domain losses c)."""
        c = np.asarray(c, dtype=np.float64)
        lam = self.argmax_linear(c)
        active = lam > 0
        return float(lam[active] @ c[active])

    def contains(self, lam, tol: float = 1e-9) -> bool:
        lam = np.asarray(lam, dtype=np.float64)
        lo, hi = self.bounds()
        ok = abs(lam.sum() - 1) <= tol and (lam >= lo - tol).all() and (lam <= hi + tol).all()
        if ok and self.A is not None:
            ok = bool((self.A @ lam <= self.b + tol).all())
        return bool(ok)

    def feasible_point(self) -> np.ndarray:
        """A point of Lambda near its centre (uniform when the uniform vector is feasible)."""
        uniform = np.full(self.p, 1.0 / self.p)
        if self.contains(uniform):
            return uniform
        if self.A is None:
            lo, hi = self.bounds()
            # From the lower bounds towards the upper bounds by a common fraction.
            return restore_mass(lo, lo, hi)
        pts = [self.argmax_linear(e) for e in np.vstack([np.eye(self.p), -np.eye(self.p)])]
        return np.mean(pts, axis=0)

    def reach(self, lam, d) -> float:
        """``min(1, max{t : lam + t d in Lambda})`` for a direction ``d`` summing to zero."""
        lo, hi = self.bounds()
        t = 1.0
        down, up = d < 0, d > 0
        if down.any():
            t = min(t, float(((lam - lo)[down] / -d[down]).min()))
        if up.any():
            t = min(t, float(((hi - lam)[up] / d[up]).min()))
        if self.A is not None:
            rate = self.A @ d
            rising = rate > 0
            if rising.any():
                t = min(t, float(((self.b - self.A @ lam)[rising] / rate[rising]).min()))
        return max(t, 0.0)

    def interior_to_extra_constraints(self, lam) -> bool:
        """Whether ``lam`` meets the bounds and polytope rows (beyond the simplex) strictly."""
        lo, hi = self.bounds()
        if ((lo > 0) & (lam <= lo)).any() or ((hi < 1) & (lam >= hi)).any():
            return False
        return self.A is None or bool((self.A @ lam < self.b).all())


class PriorProjector:
    """KL (Bregman) projection onto a prior set Lambda: ``argmin_{lam in Lambda} KL(lam || y)``.

    This is the projection step of exponentiated gradient restricted to Lambda. Without
    a polytope it is closed form up to a scalar: ``lam = clip(s y, lower, upper)`` with
    ``sum lam = 1`` (a water-fill, :func:`theory.simplex.water_fill`); with a
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
            return water_fill(y / y.sum(), self.lo, self.hi)[0]
        self._log_y.value = np.log(np.maximum(y / y.sum(), np.finfo(float).tiny))
        self._problem.solve(solver="CLARABEL")
        lam = np.clip(self._lam.value, self.lo, self.hi)
        return lam / lam.sum()


def nearest_in_prior(prior: PriorSet, lam, tol: float = 1e-9) -> np.ndarray:
    """``lam`` itself when it lies in Lambda (within ``tol``), else its Euclidean projection.

    Solves ``min_{mu in Lambda} ||mu - lam||_2^2``: closed form without a polytope
    (:func:`theory.simplex.project_capped_simplex`), a small quadratic program with one.
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
