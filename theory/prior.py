"""Prior sets Lambda for the mixture weights: simplex intersected with a box and a polytope."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.errors import InfeasibleLambdaError, InvalidOptionError, ShapeMismatchError


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
            # Move from the lower bounds towards the upper bounds by a common fraction.
            t = (1 - lo.sum()) / max((hi - lo).sum(), 1e-300)
            return lo + t * (hi - lo)
        pts = [self.argmax_linear(e) for e in np.vstack([np.eye(self.p), -np.eye(self.p)])]
        return np.mean(pts, axis=0)
