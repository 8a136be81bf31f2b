"""Certified dual solver for the robust gate: maximise the concave dual over Lambda.

The robust problem ``min_{q in family} max_{lam in Lambda} sum_k lam_k KL(D_k || q)``
has the concave dual ``phi(lam) = min_q sum_k lam_k KL(D_k || q)``, whose gradient
is the vector ``KL(D_k || q*(lam))`` at the best response ``q*(lam)``. Every point
gives a certificate: ``phi(lam) <= value <= max_{lam' in Lambda} lam' . KL(D || q)``.

On the whole simplex the inner maximum equals ``max_k KL(D_k || q)`` and the value is
the robust KL ``min_q max_lam KL(D_lam || q)`` of DESIGN 2 (the linearised and the
original game share their max over the simplex). With a smaller prior set Lambda the
solver returns the value of the *linearised* game
``max_{lam in Lambda} sum_k lam_k KL(D_k || q)``, which upper-bounds
``max_{lam in Lambda} KL(D_lam || q)`` (by ``JSD_lam >= 0``) and equals it only when
Lambda is the whole simplex.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import clarabel
import numpy as np
from scipy import sparse
from scipy.linalg import null_space
from threadpoolctl import threadpool_limits

from theory.best_response import family_cells, fit_gate_weights, water_fill_with_totals
from theory.errors import InvalidOptionError
from theory.gates import MEMBERSHIP_TOL, constant_gate, gate_from_q, partition_gate, pointwise_hull, require_nonempty_G1
from theory.options import as_prior, check_family
from theory.prior import PriorSet
from theory.result import NOT_CONVERGED, OPTIMAL, SolverResult
from theory.validation import as_instance

#: Outcomes per block in passes over the (p x n) arrays, so temporaries stay O(chunk p).
CHUNK = 1 << 15
#: Steps whose gain is below the rounding of phi are accepted on the model's word;
#: the certificate at the new point is recomputed, so nothing unverified is reported.
_ROUNDING = 4 * np.finfo(float).eps
#: Stop when the certified gap has not shrunk over this many steps (rounding floor).
_STALL = 3


@dataclass
class _Point:
    """One evaluation of the dual at ``lam``: certified lower bound and its best response."""

    lam: np.ndarray
    lower: float
    kl: np.ndarray
    q: np.ndarray
    hessian: np.ndarray | None = None
    state: dict = field(default_factory=dict)


def _neg_entropies(D) -> np.ndarray:
    """``-H(D_k) = sum_x D_k log D_k`` for every row, over blocks of outcomes (0 log 0 = 0)."""
    out = np.zeros(D.shape[0])
    tiny = np.finfo(float).tiny
    for a in range(0, D.shape[1], CHUNK):
        Dc = D[:, a : a + CHUNK]
        # D log max(D, tiny) is exactly 0 where D = 0 and D log D elsewhere.
        out += (Dc * np.log(np.maximum(Dc, tiny))).sum(axis=1)
    return out


def _kl_rows(D, q, neg_ent) -> np.ndarray:
    """``KL(D_k || q)`` for every row (``+inf`` where ``q`` misses D_k's support)."""
    zero = q <= 0
    kl = neg_ent - D @ np.log(q, out=np.zeros_like(q), where=~zero)
    if zero.any():
        kl[(D[:, zero] > 0).any(axis=1)] = np.inf
    return kl


class _FullFamily:
    """Dual oracle for the full gate space: water-filling best response, exact Hessian."""

    def __init__(self, D, P):
        self.D, self.P = D, P
        self.lo, self.hi = pointwise_hull(P)
        self.neg_ent = _neg_entropies(D)
        self.sums = (float(self.lo.sum()), float(self.hi.sum()))
        if self.sums[0] > 1 + MEMBERSHIP_TOL or self.sums[1] < 1 - MEMBERSHIP_TOL:
            require_nonempty_G1(P)  # raises EmptyGateSpaceError with the remedy
        self.top = {}
        self.level = None

    def __call__(self, lam) -> _Point:
        v = lam @ self.D
        support = tuple(lam > 0)
        if support not in self.top:
            # S(inf) of the water-filling depends on lam only through its support.
            self.top[support] = float(np.where(v > 0, self.hi, self.lo).sum())
        totals = (*self.sums, float(lam.sum()), self.top[support])
        q, nu = water_fill_with_totals(v, self.lo, self.hi, totals, t0=self.level)
        if 0 < nu < np.inf:
            self.level = 1.0 / nu
        kl, gram, s = self._moments(v, q)
        lower = float(lam @ np.where(lam > 0, kl, 0.0))
        # The Hessian of phi (DESIGN 2.1 water-filling, F = unclipped outcomes):
        #   -[sum_F D_k D_j / D_lam - (sum_F D_k)(sum_F D_j) / sum_F D_lam].
        mass_free = float(lam @ s)
        hessian = -(gram - np.outer(s, s) / mass_free) if mass_free > 0 else -gram
        return _Point(lam=lam, lower=lower, kl=kl, q=q, hessian=hessian)

    def _moments(self, v, q):
        """One blocked pass over D: ``KL(D_k || q)``, ``sum_F D_k D_j / v`` and ``sum_F D_k``.

        Blocks keep every temporary at O(CHUNK p) and in cache.
        """
        D = self.D
        p, n = D.shape
        gram = np.zeros((p, p))
        dots = np.zeros((p, 2))
        missed = np.zeros(p, dtype=bool)
        tiny = np.finfo(float).tiny
        for a in range(0, n, CHUNK):
            Dc = D[:, a : a + CHUNK]
            vc, qc = v[a : a + CHUNK], q[a : a + CHUNK]
            free = (qc > self.lo[a : a + CHUNK]) & (qc < self.hi[a : a + CHUNK]) & (vc > 0)
            # log(max(q, tiny)) is finite; rows with mass where q = 0 are set to inf below.
            dots[:, 0] += Dc @ np.log(np.maximum(qc, tiny))
            dots[:, 1] += Dc @ free.astype(np.float64)
            gram += (Dc * (free / np.maximum(vc, tiny))) @ Dc.T
            zero = qc <= 0
            if zero.any():
                missed |= (Dc[:, zero] > 0).any(axis=1)
        kl = self.neg_ent - dots[:, 0]
        kl[missed] = np.inf
        return kl, gram, dots[:, 1]

    def gate(self, point: _Point) -> np.ndarray:
        """A gate realising the best response ``q`` (:func:`theory.gates.gate_from_q`)."""
        return gate_from_q(point.q, self.P)


class _RestrictedFamily:
    """Dual oracle for constant or partition gates: certified projected-Newton best response."""

    def __init__(self, D, P, labels, n_cells):
        self.D = D
        self.P = P
        self.labels = labels
        self.n_cells = n_cells
        self.neg_ent = _neg_entropies(D)
        self.W = None

    def __call__(self, lam) -> _Point:
        fit = fit_gate_weights(lam @ self.D, self.P, self.labels, self.n_cells, W0=self.W)
        kl = _kl_rows(self.D, fit.q, self.neg_ent)
        active = lam > 0
        # phi(lam) >= lam . KL(D || q_W) - (Frank-Wolfe gap of the inner problem).
        lower = float(lam[active] @ kl[active]) - max(fit.fw_gap, 0.0)
        return _Point(lam=lam, lower=lower, kl=kl, q=fit.q, state={"W": fit.W, "inner_gap": fit.fw_gap})

    def accept(self, point: _Point) -> None:
        self.W = point.state["W"]

    def gate(self, point: _Point) -> np.ndarray:
        W = point.state["W"]
        if self.n_cells == 1:
            return constant_gate(W[0], self.D.shape[1])
        return partition_gate(W, self.labels)


class _StepQP:
    """Newton-type step over Lambda: ``max g.d - 1/2 d' M d`` s.t. ``lam + d in Lambda``.

    Solved with Clarabel's native API (sparse matrices and cones, no modelling layer).
    """

    def __init__(self, prior: PriorSet):
        p = prior.p
        self.lo, self.hi = prior.bounds()
        rows = [sparse.csc_matrix(np.ones((1, p))), -sparse.eye(p, format="csc")]
        rhs = [np.ones(1), -self.lo]
        upper = self.hi < 1
        if upper.any():
            rows.append(sparse.eye(p, format="csc")[np.flatnonzero(upper)])
            rhs.append(self.hi[upper])
        if prior.A is not None:
            rows.append(sparse.csc_matrix(prior.A))
            rhs.append(prior.b)
        self.A = sparse.vstack(rows, format="csc")
        self.b = np.concatenate(rhs)
        self.cones = [clarabel.ZeroConeT(1), clarabel.NonnegativeConeT(self.A.shape[0] - 1)]
        self.settings = clarabel.DefaultSettings()
        self.settings.verbose = False
        self.settings.tol_feas = 1e-12
        self.settings.tol_gap_abs = self.settings.tol_gap_rel = 1e-12
        self.A_poly, self.b_poly = prior.A, prior.b

    def __call__(self, lam, g, M) -> list[np.ndarray]:
        """Candidate steps ``d``: the polished Newton step on the QP's face, then the QP's."""
        lin = -(M @ lam + g)
        solver = clarabel.DefaultSolver(sparse.triu(M, format="csc"), lin, self.A, self.b, self.cones, self.settings)
        x = self._into_prior(np.asarray(solver.solve().x))
        polished = self._polish(lam, g, M, x)
        return [d for d in (polished, x - lam) if d is not None]

    def _polish(self, lam, g, M, x) -> np.ndarray | None:
        """Exact Newton step on the face of Lambda that the QP solution ``x`` lies on.

        An interior-point solution is accurate to ~1e-12 in lam, which limits the
        certificate near the optimum; the face (active bounds and polytope rows) is
        what the QP identifies reliably, and the step on it is a small null-space solve.
        None when the step leaves Lambda.
        """
        p = lam.shape[0]
        at_lo = x <= self.lo + 1e-9
        at_hi = (x >= self.hi - 1e-9) & ~at_lo
        fixed = at_lo | at_hi
        d = np.zeros(p)
        d[at_lo] = self.lo[at_lo] - lam[at_lo]
        d[at_hi] = self.hi[at_hi] - lam[at_hi]
        free = ~fixed
        eq_rows = [np.ones((1, p))]
        eq_rhs = [np.array([1.0 - lam.sum()])]
        if self.A_poly is not None:
            tight = self.A_poly @ x >= self.b_poly - 1e-9
            eq_rows.append(self.A_poly[tight])
            eq_rhs.append(self.b_poly[tight] - self.A_poly[tight] @ lam)
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
        if (y < self.lo - 1e-15).any() or (y > self.hi + 1e-15).any():
            return None
        if self.A_poly is not None and (self.A_poly @ y > self.b_poly + 1e-12).any():
            return None
        return d

    def _into_prior(self, x) -> np.ndarray:
        """Remove the QP's feasibility error: clip to the bounds, restore the unit sum.

        Keeps every iterate inside Lambda so that ``phi(lam)`` stays a valid lower bound.
        (Polytope rows are met to Clarabel's 1e-12 feasibility tolerance.)
        """
        x = np.clip(x, self.lo, self.hi)
        excess = x.sum() - 1.0
        room = (x - self.lo) if excess > 0 else (self.hi - x)
        if excess != 0 and room.sum() > 0:
            x = x - excess * room / room.sum()
        return x


def _finite_gradient(kl) -> np.ndarray:
    """Replace infinite KLs (domains the model misses) by a dominant finite gradient.

    An infinite partial derivative only says that raising that weight raises phi
    steeply; a large finite stand-in keeps the step QP well posed, and the line search
    keeps the step honest.
    """
    finite = np.isfinite(kl)
    if finite.all():
        return kl
    top = float(kl[finite].max()) if finite.any() else 0.0
    return np.where(finite, kl, top + 1e3 * (1.0 + abs(top)))


def solve_dual(
    D,
    P,
    *,
    prior: PriorSet | None = None,
    family: str = "full",
    cells=None,
    tol: float = 1e-9,
    max_iter: int = 100,
    validate: bool = True,
) -> SolverResult:
    """Solve ``min_{q in family} max_{lam in Lambda} sum_k lam_k KL(D_k || q)`` by its dual.

    Maximises the concave dual ``phi(lam) = min_q sum_k lam_k KL(D_k || q)`` over the
    prior set Lambda. Each step solves the QP ``max g.d - 1/2 d' (mu I - H) d`` over
    ``lam + d in Lambda`` (Clarabel), with ``g = KL(D_k || q*(lam))`` the gradient,
    followed by a backtracking line search on phi and a Levenberg-Marquardt ``mu``
    adapted to the step's success. ``H`` is the exact Hessian of phi for the full family
    (from the water-filling's clipping pattern) and a damped BFGS model for the
    restricted families.

    Certificate at every evaluated point: ``lower = phi(lam)`` (for the restricted
    families minus the certified suboptimality of the inner best response) and
    ``upper = max_{lam' in Lambda} lam' . KL(D || q)``; the solver keeps the best of each
    and stops when ``upper - lower <= tol``.

    With a prior set smaller than the simplex the game solved is the linearised one,
    ``max_{lam in Lambda} sum_k lam_k KL(D_k || q)``; it coincides with
    ``max_{lam in Lambda} KL(D_lam || q)`` only on the whole simplex.

    Parameters
    ----------
    D, P : array (p, n)
        Domains and experts.
    prior : PriorSet, optional
        Lambda; None means the whole simplex.
    family : {"full", "constant", "partition"}
    cells : array (n,) of int, optional
        The partition for ``family="partition"``.
    tol : float
        Target certified gap in nats.
    max_iter : int
        Maximum number of steps on lam.
    validate : bool
        Check the inputs (distributions, shapes, coverage). Skipping saves passes over
        the data for inputs already validated.

    Returns
    -------
    SolverResult
        ``value = upper`` (the objective of the returned ``q``), ``lam`` the iterate with
        the best lower bound, ``status`` ``"optimal"`` when ``gap <= tol``, otherwise
        ``"not_converged"`` with a :class:`~theory.result.ToleranceWarning`.
    """
    start = time.perf_counter()
    # The passes over the data are many small BLAS calls on cache-sized blocks; with a
    # multi-threaded BLAS every call pays a thread hand-off, which costs more than it
    # saves (3x slower measured at n = 1e5, p = 32 on two busy cores).
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve_dual(D, P, prior, family, cells, tol, max_iter, validate, start)


def _solve_dual(D, P, prior, family, cells, tol, max_iter, validate, start) -> SolverResult:
    D, P = as_instance(D, P, check=validate)
    if not tol > 0:
        raise InvalidOptionError(f"tol must be positive, got {tol!r}")
    p, n = D.shape
    check_family(family, cells, n)
    prior = as_prior(prior, p)
    if family == "full":
        oracle = _FullFamily(D, P)
    else:
        labels, n_cells = family_cells(family, cells, n)
        oracle = _RestrictedFamily(D, P, labels, n_cells)

    qp = _StepQP(prior)
    point = oracle(prior.feasible_point())
    evaluations = 1
    best_low, best_up, up_value = point, point, prior.max_linear(point.kl)
    history = {"lower": [], "upper": [], "gap": [], "step": []}
    quasi_newton = point.hessian is None
    if quasi_newton:
        B = np.eye(p) * max(1.0, float(np.abs(_finite_gradient(point.kl)).max()))
    mu = 1e-8
    iterations = 0
    while up_value - best_low.lower > tol and p > 1 and iterations < max_iter:
        iterations += 1
        g = _finite_gradient(point.kl)
        H = -B if quasi_newton else point.hessian
        M = -H + mu * max(1.0, float(np.trace(-H)) / p) * np.eye(p)
        accepted, step = None, 0.0
        for d in qp(point.lam, g, M):
            slope = float(g @ d)
            step = 1.0
            while slope > -_ROUNDING * abs(point.lower) and step > 1e-10:
                trial = oracle(point.lam + step * d)
                evaluations += 1
                # Every evaluated point certifies: keep the best lower and upper bounds.
                if trial.lower > best_low.lower:
                    best_low = trial
                trial_up = prior.max_linear(trial.kl)
                better_upper = trial_up < up_value
                if better_upper:
                    best_up, up_value = trial, trial_up
                # Near the optimum phi gains O(step^2) (below its rounding at large n)
                # while the upper bound gains O(step): either progress is accepted.
                armijo = trial.lower >= point.lower + 1e-4 * step * max(slope, 0.0) - _ROUNDING * abs(point.lower)
                if armijo or better_upper:
                    accepted = trial
                    break
                step *= 0.5
            if accepted is not None:
                break
        history["lower"].append(best_low.lower)
        history["upper"].append(up_value)
        history["gap"].append(up_value - best_low.lower)
        history["step"].append(step if accepted is not None else 0.0)
        stalled = len(history["gap"]) > _STALL and history["gap"][-1] >= history["gap"][-1 - _STALL]
        if accepted is None or stalled:
            # No ascent at working precision: the certificate is the final word.
            break
        if quasi_newton:
            B = _bfgs_update(B, accepted.lam - point.lam, accepted.kl - point.kl)
            oracle.accept(accepted)
        mu = max(mu / 10, 1e-14) if step == 1.0 else min(mu * 10, 1e6)
        point = accepted

    gap = up_value - best_low.lower
    result = SolverResult(
        q=best_up.q,
        gate=oracle.gate(best_up),
        value=up_value,
        lam=best_low.lam,
        gap=gap,
        lower=best_low.lower,
        upper=up_value,
        kl=best_up.kl,
        iterations=iterations,
        seconds=time.perf_counter() - start,
        status=OPTIMAL if gap <= tol else NOT_CONVERGED,
        solver="dual",
        tol=tol,
        history=history,
        info={"family": family, "hessian": "bfgs" if quasi_newton else "exact", "evaluations": evaluations},
    )
    return result.warn_if_not_converged()


def _bfgs_update(B, s, y) -> np.ndarray:
    """Damped (Powell) BFGS update of ``B ~ -Hessian`` of the concave phi.

    ``s`` is the step in lam and ``y`` the change of the gradient; with ``-y`` the
    curvature pair is that of the convex ``-phi``. Damping keeps ``B`` positive definite
    when the pair shows too little curvature.
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
