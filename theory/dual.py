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

from typing import Callable

import numpy as np
from scipy.linalg import blas
from scipy.special import rel_entr
from threadpoolctl import threadpool_limits

from theory.best_response import family_cells, fit_gate_weights
from theory.blocks import BLOCK, block, is_mapped, release, spans
from theory.gates import MEMBERSHIP_TOL, constant_gate, gate_from_q, partition_gate, require_nonempty_G1
from theory.newton import ARMIJO, ROUNDING, PolytopeQP, backtrack, bfgs_update, damping, face_step
from theory.options import as_prior, check_family, check_offsets, check_tol
from theory.prior import PriorSet
from theory.result import Certificate, SolverResult
from theory.simplex import BlockBuffers, WaterLevel, restore_mass, top_mass, water_level, write_block, write_model
from theory.validation import as_instance, scan_instance

#: Stop when the certified gap has not shrunk over this many steps (rounding floor).
_STALL = 3
#: Mass left over by a water-fill with ``nu = 0`` above which its best response is not
#: unique (a kink of phi); below it every member of the best-response set agrees to rounding.
_KINK_SLACK = 1e-13
#: From this many domains on, the p x p moments dominate the passes: the Gram matrix is
#: a symmetric rank-k update (half the flops of a product) and BLAS may use every core.
LARGE_P = 64
#: ``log`` of the smallest positive double: ``log(max(x, SMALLEST))`` is exact for every
#: ``x > 0``, subnormals included (``log(max(x, tiny))`` is not: it bounds KLs wrongly).
SMALLEST = np.nextafter(0.0, 1.0)


@dataclass
class _Point:
    """One evaluation of the dual at ``lam``: certified lower bound and its best response.

    ``q`` is the best response as an array, or None for the full family, whose model is
    written on request from ``level`` (:class:`theory.simplex.WaterLevel`) and ``lam``
    (:meth:`_FullFamily.model`): at large n every kept model would be another n floats.
    """

    lam: np.ndarray
    lower: float
    kl: np.ndarray
    q: np.ndarray | None
    hessian: np.ndarray | None = None
    state: dict = field(default_factory=dict)
    level: WaterLevel | None = None


def _neg_entropies(D) -> np.ndarray:
    """``-H(D_k) = sum_x D_k log D_k`` for every row, over blocks of outcomes (0 log 0 = 0)."""
    out = np.zeros(D.shape[0])
    for a, b in spans(D.shape[1]):
        Dc = block(D, a, b)
        out += (Dc * np.log(np.maximum(Dc, SMALLEST))).sum(axis=1)
    return out


def _kl_rows(D, q, neg_ent) -> np.ndarray:
    """``KL(D_k || q)`` for every row (``+inf`` where ``q`` misses D_k's support)."""
    zero = q <= 0
    kl = neg_ent - D @ np.log(np.maximum(q, SMALLEST))
    if zero.any():
        kl[(D[:, zero] > 0).any(axis=1)] = np.inf
    return kl


def _gram_update(gram, Dc, weight) -> None:
    """``gram += Dc diag(weight) Dc'`` (``weight >= 0``); a rank-k update for large p."""
    if Dc.shape[0] >= LARGE_P:
        A = Dc * np.sqrt(weight)
        # Upper triangle only; mirrored once at the end of the pass.
        gram += blas.dsyrk(1.0, A)
    else:
        gram += (Dc * weight) @ Dc.T


def _mirror(gram, p) -> np.ndarray:
    if p >= LARGE_P:
        return np.triu(gram) + np.triu(gram, 1).T
    return gram


class _FullFamily:
    """Dual oracle for the full gate space: water-filling best response, exact Hessian.

    Solves the general core ``min_r max_{lam in Lambda} lam . (c + K(r))`` with
    ``K_k(r) = sum_x D_k log(D_k / r)`` over ``lo <= r <= hi``, ``sum r = mass``: the
    robust problem itself (``c = 0``, mass one) and, at a degenerate best response, the
    smaller problem that picks the certifying member of the best-response set
    (:func:`_kink_subproblem`), whose rows need not sum to one.

    Memory: the hull ``lo, hi`` and one buffer for ``D_lam`` (3 n floats); every pass
    over ``D`` goes block by block (memory-mapped inputs included), and the models of
    evaluated points are rewritten from their water level rather than kept.
    """

    def __init__(self, D, lo, hi, *, mass: float = 1.0, offsets=None, neg_ent=None, row_mass=None):
        self.D = D
        self.lo, self.hi = lo, hi
        self.mass = mass
        self.offsets = np.zeros(D.shape[0]) if offsets is None else offsets
        self.neg_ent = _neg_entropies(D) if neg_ent is None else neg_ent
        self.row_mass = D.sum(axis=1) if row_mass is None else row_mass
        self.sums = (float(self.lo.sum()), float(self.hi.sum()))
        self.top = {}
        self.t_warm = None
        self.v = np.empty(D.shape[1])
        self.v_lam = None

    @classmethod
    def of_scan(cls, scan) -> "_FullFamily":
        """The robust problem itself (from :func:`theory.validation.scan_instance`); its experts give the gate."""
        oracle = cls(scan.D, scan.lo, scan.hi, neg_ent=scan.neg_ent, row_mass=scan.row_mass)
        oracle.P = scan.P
        if oracle.sums[0] > 1 + MEMBERSHIP_TOL or oracle.sums[1] < 1 - MEMBERSHIP_TOL:
            require_nonempty_G1(np.vstack([scan.lo, scan.hi]))  # raises EmptyGateSpaceError with the remedy
        return oracle

    @classmethod
    def of_experts(cls, D, P) -> "_FullFamily":
        """The robust problem for validated float64 arrays ``D``, ``P``."""
        return cls.of_scan(scan_instance(D, P, check=False))

    def _mix(self, lam) -> np.ndarray:
        """``D_lam = lam @ D`` into the oracle's buffer (one pass over D)."""
        D, v = self.D, self.v
        if isinstance(D, np.ndarray) and D.dtype == np.float64 and D.flags.c_contiguous and not is_mapped(D):
            np.dot(lam, D, out=v)
        else:
            for a, b in spans(D.shape[1]):
                np.dot(lam, block(D, a, b), out=v[a:b])
                release(D, a, b)
        self.v_lam = lam.copy()
        return v

    def __call__(self, lam) -> _Point:
        v = self._mix(lam)
        support = tuple(lam > 0)
        if support not in self.top:
            # S(inf) of the water-filling depends on lam only through its support.
            self.top[support] = top_mass(v, self.lo, self.hi)
        top = self.top[support]
        totals = (*self.sums, float(lam @ self.row_mass), top)
        level = water_level(v, self.lo, self.hi, totals, self.mass, t0=self.t_warm)
        nu = level.nu
        if 0 < nu < np.inf:
            self.t_warm = 1.0 / nu
        kl, gram, s = self._moments(v, level)
        lower = float(lam @ np.where(lam > 0, kl, 0.0))
        # The Hessian of phi (DESIGN 2.1 water-filling, F = unclipped outcomes):
        #   -[sum_F D_k D_j / D_lam - (sum_F D_k)(sum_F D_j) / sum_F D_lam].
        mass_free = float(lam @ s)
        hessian = -(gram - np.outer(s, s) / mass_free) if mass_free > 0 else -gram
        # nu = 0 with mass left over: the support of D_lam sits at hi and the rest of the
        # mass may go anywhere off it, so the best response (and the gradient) is not unique.
        kink = nu == 0.0 and self.mass - top > _KINK_SLACK * max(self.mass, 1.0)
        state = {"kink": kink, "passes": level.passes}
        if kink:
            state["support"] = v > 0
        return _Point(lam=lam, lower=lower, kl=kl, q=None, hessian=hessian, state=state, level=level)

    def model(self, point: _Point, out=None) -> np.ndarray:
        """The best response ``q`` of ``point`` (written from its level; a new array unless ``out``)."""
        if point.q is not None:
            return point.q
        v = self.v if (self.v_lam is not None and np.array_equal(self.v_lam, point.lam)) else self._mix(point.lam)
        out = np.empty_like(v) if out is None else out
        write_model(out, v, self.lo, self.hi, point.level)
        if out is v:
            self.v_lam = None
        return out

    def kl_of(self, q) -> np.ndarray:
        """``c_k + K_k(q)`` for every row, at a model ``q`` of this problem."""
        return self.offsets + _kl_rows(np.asarray(self.D, dtype=np.float64), q, self.neg_ent)

    def _moments(self, v, level):
        """One blocked pass over D: ``KL(D_k || q)``, ``sum_F D_k D_j / v`` and ``sum_F D_k``.

        The model ``q`` is written block by block from the level and never stored; blocks
        keep every temporary at O(BLOCK p) and in cache.
        """
        D = self.D
        p, n = D.shape
        gram = np.zeros((p, p))
        dots = np.zeros((p, 2))
        missed = np.zeros(p, dtype=bool)
        qbuf = np.empty(min(BLOCK, n))
        wbuf = np.empty(min(BLOCK, n))
        free = np.empty(min(BLOCK, n), dtype=bool)
        below = np.empty(min(BLOCK, n), dtype=bool)
        buffers = BlockBuffers(n)
        for a, b in spans(n):
            m = b - a
            Dc = block(D, a, b)
            vc, lc, hc = v[a:b], self.lo[a:b], self.hi[a:b]
            qc = write_block(qbuf[:m], vc, lc, hc, level, buffers)
            fc, bc, wc = free[:m], below[:m], wbuf[:m]
            np.greater(qc, lc, out=fc)
            np.less(qc, hc, out=bc)
            fc &= bc
            np.greater(vc, 0.0, out=bc)
            fc &= bc
            # log(max(q, SMALLEST)) is exact for q > 0; rows with mass where q = 0 are set to inf below.
            np.maximum(qc, SMALLEST, out=wc)
            np.log(wc, out=wc)
            dots[:, 0] += Dc @ wc
            np.copyto(wc, fc)
            dots[:, 1] += Dc @ wc
            np.divide(fc, np.maximum(vc, np.finfo(float).tiny), out=wc)
            _gram_update(gram, Dc, wc)
            zero = qc <= 0
            if zero.any():
                missed |= (Dc[:, zero] > 0).any(axis=1)
            release(D, a, b)
        kl = self.offsets + self.neg_ent - dots[:, 0]
        kl[missed] = np.inf
        return kl, _mirror(gram, p), dots[:, 1]

    def gate(self, point: _Point, q) -> Callable[[], np.ndarray]:
        """A gate realising the best response ``q``, built on request (:func:`theory.gates.gate_from_q`)."""
        P = self.P
        return lambda: gate_from_q(q, P)


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

    def model(self, point: _Point, out=None) -> np.ndarray:
        return point.q

    def gate(self, point: _Point, q) -> np.ndarray:
        W = point.state["W"]
        if self.n_cells == 1:
            return constant_gate(W[0], self.D.shape[1])
        return partition_gate(W, self.labels)


class _StepQP:
    """Newton-type step over Lambda: ``max g.d - 1/2 d' M d`` s.t. ``lam + d in Lambda``."""

    def __init__(self, prior: PriorSet):
        p = prior.p
        self.lo, self.hi = prior.bounds()
        self.A_poly, self.b_poly = prior.A, prior.b
        self.qp = PolytopeQP(np.ones((1, p)), np.ones(1), self.lo, self.hi, self.hi < 1, prior.A, prior.b)

    def __call__(self, lam, g, M) -> list[np.ndarray]:
        """Candidate steps ``d``: the polished Newton step on the QP's face, then the QP's.

        The QP's solution is moved into Lambda (:func:`theory.simplex.restore_mass`) so
        that ``phi(lam)`` stays a valid lower bound at every iterate (polytope rows are
        met to Clarabel's 1e-12 feasibility tolerance).
        """
        x = restore_mass(self.qp.solve(M, -(M @ lam + g)), self.lo, self.hi)
        polished = face_step(x, lam, g, M, self.lo, self.hi, self.A_poly, self.b_poly)
        return [d for d in (polished, x - lam) if d is not None]


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
    offsets=None,
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

    Kinks: where ``D_lam`` misses outcomes and even ``q = hi`` on its support leaves
    mass over (e.g. disjoint domains, leaking experts, ``lam*`` on a face), the best
    response is a set and phi is not differentiable. There the model that certifies
    (and, if ``lam`` is not optimal, the steepest ascent) comes from the robust problem
    over that set, solved by the same method (:func:`_resolve_kink`);
    ``info["kinks"]`` counts them.

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
    offsets : array (p,), optional
        Play the game shifted by per-domain constants,
        ``min_q max_{lam in Lambda} sum_k lam_k (KL(D_k || q) - offsets_k)`` (full family
        only): the excess over each domain's own expert (``offsets = KL(D_k || P_k)``)
        or the cross-entropy game (``offsets = -H(D_k)``). ``value``, ``lower`` and
        ``upper`` are then those of the shifted game; ``kl`` stays ``KL(D_k || q)``.

    Returns
    -------
    SolverResult
        ``value = upper`` (the objective of the returned ``q``), ``lam`` the iterate with
        the best lower bound, ``status`` ``"optimal"`` when ``gap <= tol``, otherwise
        ``"not_converged"`` with a :class:`~theory.result.ConvergenceWarning`.
    """
    start = time.perf_counter()
    p = np.shape(D)[0] if np.ndim(D) == 2 else 1
    # The passes over the data are many small BLAS calls on cache-sized blocks; with a
    # multi-threaded BLAS every call pays a thread hand-off, which costs more than it
    # saves (3x slower measured at n = 1e5, p = 32 on two busy cores). From LARGE_P
    # domains on, the p x p Gram updates are large enough to share between cores.
    with threadpool_limits(limits=1 if p < LARGE_P else None, user_api="blas"):
        return _solve_dual(D, P, prior, family, cells, tol, max_iter, validate, offsets, start)


def _solve_dual(D, P, prior, family, cells, tol, max_iter, validate, offsets, start) -> SolverResult:
    tol = check_tol(tol)
    if family == "full":
        scan = scan_instance(D, P, check=validate)
        D, P = scan.D, scan.P
    else:
        D, P = as_instance(D, P, check=validate)
    p, n = D.shape
    check_family(family, cells, n)
    prior = as_prior(prior, p)
    offsets = check_offsets(offsets, p, family)
    if family == "full":
        oracle = _FullFamily.of_scan(scan)
        oracle.offsets = -offsets
    else:
        labels, n_cells = family_cells(family, cells, n)
        oracle = _RestrictedFamily(D, P, labels, n_cells)

    run = _ascend(oracle, prior, tol, max_iter)
    # The returned model is written into the oracle's D_lam buffer (no new n-array).
    q = oracle.model(run.best_up, out=getattr(oracle, "v", None))
    return SolverResult.certified(
        Certificate.of(run.best_low.lower, run.up_value, tol),
        q=q,
        gate=oracle.gate(run.best_up, q),
        value=run.up_value,
        lam=run.best_low.lam,
        kl=run.best_up.kl + offsets,
        iterations=run.iterations,
        seconds=time.perf_counter() - start,
        solver="dual",
        tol=tol,
        history=run.history,
        info={
            "family": family,
            "hessian": "exact" if family == "full" else "bfgs",
            "evaluations": run.evaluations,
            "kinks": run.kinks,
        },
    )


@dataclass
class _Ascent:
    """Progress of one maximisation of phi over Lambda: the best certified bounds so far."""

    best_low: _Point
    best_up: _Point
    up_value: float
    evaluations: int = 1
    iterations: int = 0
    kinks: int = 0
    history: dict = field(default_factory=lambda: {"lower": [], "upper": [], "gap": [], "step": []})

    @property
    def gap(self) -> float:
        return self.up_value - self.best_low.lower

    def offer(self, point: _Point, prior: PriorSet) -> bool:
        """Keep ``point``'s bounds where they improve; True when the upper bound did."""
        if point.lower > self.best_low.lower:
            self.best_low = point
        upper = prior.max_linear(point.kl)
        if upper < self.up_value:
            self.best_up, self.up_value = point, upper
            return True
        return False


def _ascend(oracle, prior: PriorSet, tol: float, max_iter: int) -> _Ascent:
    """Maximise ``phi`` over Lambda from Lambda's feasible point until the certified gap is ``tol``.

    Each step solves the QP ``max g.d - 1/2 d' (mu I - H) d`` over ``lam + d in Lambda``
    and line-searches on phi; at a kink of phi (a degenerate water-fill) where the QP
    finds no ascent, :func:`_resolve_kink` supplies the certifying model and the steepest
    ascent direction. Where the exact-Hessian steps stall short of a face of Lambda,
    :func:`_snap_to_face` moves onto it.
    """
    p = oracle.D.shape[0]
    qp = _StepQP(prior)
    point = oracle(prior.feasible_point())
    run = _Ascent(best_low=point, best_up=point, up_value=prior.max_linear(point.kl))
    quasi_newton = point.hessian is None
    if quasi_newton:
        B = np.eye(p) * max(1.0, float(np.abs(_finite_gradient(point.kl)).max()))
    mu = 1e-8
    while run.gap > tol and p > 1 and run.iterations < max_iter:
        run.iterations += 1
        g = _finite_gradient(point.kl)
        H = -B if quasi_newton else point.hessian
        M = -H + mu * max(1.0, float(np.trace(-H)) / p) * np.eye(p)
        accepted, step = None, 0.0
        for d in qp(point.lam, g, M):
            accepted, step = _line_search(oracle, prior, run, point, d, float(g @ d))
            if accepted is not None:
                break
        history = run.history
        stalled = len(history["gap"]) >= _STALL and run.gap >= history["gap"][-_STALL]
        if (accepted is None or stalled) and point.state.get("kink") and point.state["support"].any():
            d, slope = _resolve_kink(oracle, prior, run, point, tol, max_iter)
            if d is not None and run.gap > tol:
                accepted, step = _line_search(oracle, prior, run, point, d, slope)
                stalled = False
        if (accepted is None or stalled) and not quasi_newton and not point.state.get("kink"):
            snapped = _snap_to_face(oracle, prior, run, point)
            if snapped is not None:
                accepted, step, stalled = snapped, 0.0, False
        history["lower"].append(run.best_low.lower)
        history["upper"].append(run.up_value)
        history["gap"].append(run.gap)
        history["step"].append(step if accepted is not None else 0.0)
        if accepted is None or stalled:
            # No ascent at working precision: the certificate is the final word.
            break
        if quasi_newton:
            B = bfgs_update(B, accepted.lam - point.lam, accepted.kl - point.kl)
            oracle.accept(accepted)
        mu = damping(mu, step, floor=1e-14, cap=1e6)
        point = accepted
    return run


def _snap_to_face(oracle, prior: PriorSet, run: _Ascent, point: _Point) -> _Point | None:
    """The best point, if better than ``point``, among its projections onto nearby faces of Lambda.

    Where ``lam*`` sits on a face on which ``D_lam`` loses outcomes (a vertex ``e_j`` of
    disjoint domains), the Hessian of phi grows like ``1 / lam_k`` towards it: Newton
    steps only shrink the distance geometrically and never land, so the kink there is
    never resolved. The candidates put the ``m`` weights nearest their lower bounds on
    them (``m = 1 .. p - 1``) and hand their mass to the others in proportion to the
    room below the upper bounds; those leaving Lambda are skipped. Every evaluated point
    is offered to the certificate.
    """
    lo, hi = prior.bounds()
    lam = point.lam
    order = np.argsort(lam - lo, kind="stable")
    best = None
    for m in range(1, lam.size):
        drop = order[:m]
        if not (lam[drop] > lo[drop]).any():
            continue
        trial_lam = lam.copy()
        trial_lam[drop] = lo[drop]
        room = np.where(np.isin(np.arange(lam.size), drop), 0.0, hi - trial_lam)
        if not room.sum() > 0:
            continue
        trial_lam += (1.0 - trial_lam.sum()) * room / room.sum()
        if not prior.contains(trial_lam, tol=1e-12):
            continue
        trial = oracle(trial_lam)
        run.evaluations += 1
        run.offer(trial, prior)
        if trial.lower > (point.lower if best is None else best.lower):
            best = trial
    return best


def _line_search(oracle, prior, run: _Ascent, point: _Point, d, slope: float) -> tuple[_Point | None, float]:
    """Backtracking on phi along ``d``; every evaluated point is offered to the certificate."""
    if not slope > -ROUNDING * abs(point.lower):
        return None, 1.0
    floor = point.lower - ROUNDING * abs(point.lower)

    def trial(step):
        point_at = oracle(point.lam + step * d)
        run.evaluations += 1
        return point_at, run.offer(point_at, prior)

    def accept(candidate, step):
        trial_point, better_upper = candidate
        # Near the optimum phi gains O(step^2) (below its rounding at large n)
        # while the upper bound gains O(step): either progress is accepted. With the
        # exact phi of the full family, not a better upper bound bought with a lower phi:
        # on a face where phi is linear in some lam_k the Newton step overshoots, and
        # accepting it zigzags. (The restricted families' phi carries the inner fit's
        # certificate, ~1e-11 of noise, so there the upper bound alone may move on.)
        armijo = trial_point.lower >= floor + ARMIJO * step * max(slope, 0.0)
        return armijo or (better_upper and (point.hessian is None or trial_point.lower >= floor))

    found, step = backtrack(trial, accept, min_step=1e-10)
    return (None if found is None else found[0]), step


def _resolve_kink(oracle, prior, run: _Ascent, point: _Point, tol, max_iter) -> tuple[np.ndarray | None, float]:
    """Certify or leave a kink of phi at ``point`` through the best-response set's sub-problem.

    At a degenerate water-fill the best responses are ``B = {q : q_S = hi_S,
    q_{S^c} in [lo, hi], sum q = mass}`` (``S`` the support of ``D_lam``), and phi's
    directional derivative towards ``lam'`` is ``min_{q in B} lam' . KL(D || q) - phi(lam)``.
    Maximising over ``lam'`` in Lambda is the robust problem on ``S^c`` with offsets
    (:func:`_kink_subproblem`), solved by :func:`_ascend` itself: its model is the member
    of ``B`` with the smallest worst-case objective (it certifies ``lam`` when ``lam`` is
    optimal, by the saddle point), and its least-favourable mixture is the steepest
    feasible ascent direction otherwise.

    Returns the ascent direction (None when there is none) and its directional derivative.
    """
    run.kinks += 1
    off = ~point.state["support"]
    # Where Lambda's own bounds and rows are slack at lam, their multipliers vanish: an
    # optimal lam is then optimal over the whole simplex too, whose sub-problem can
    # leave out the domains with no mass off S (see _kink_subproblem).
    local = prior if prior.is_simplex or not prior.interior_to_extra_constraints(point.lam) else PriorSet(prior.p)
    sub, sub_prior, domains, offsets = _kink_subproblem(oracle, point, local)
    if sub is None:
        # No domain has mass off S: every member of B has the same objective.
        r, sub_value, sub_lam = oracle.model(point)[off], -np.inf, None
    else:
        sub_run = _ascend(sub, sub_prior, 0.5 * tol, max_iter)
        run.evaluations += sub_run.evaluations
        run.kinks += sub_run.kinks
        r, sub_value, sub_lam = sub.model(sub_run.best_up), sub_run.best_low.lower, sub_run.best_low.lam
    q = oracle.model(point).copy()
    q[off] = r
    run.offer(_Point(lam=point.lam, lower=point.lower, kl=oracle.kl_of(q), q=q), prior)
    # Domains left out of the sub-problem (simplex only) have the constant objective
    # c_k: the sub-problem's dual maximum is the larger of theirs and the reduced value.
    dropped = np.setdiff1d(np.arange(point.lam.size), domains)
    fixed_value = float(offsets[dropped].max()) if dropped.size else -np.inf
    direction = np.zeros_like(point.lam)
    if sub_value >= fixed_value:
        direction[domains] = sub_lam
    else:
        direction[dropped[np.argmax(offsets[dropped])]] = 1.0
    slope = max(sub_value, fixed_value) - point.lower
    if not slope > ROUNDING * max(1.0, abs(point.lower)):
        return None, 0.0
    # A direction found on the simplex is shortened to stay in Lambda (phi is concave, so
    # the slope per unit step is unchanged).
    d = direction - point.lam
    reach = prior.reach(point.lam, d)
    return d * reach, slope * reach


def _kink_subproblem(oracle: _FullFamily, point: _Point, prior: PriorSet):
    """The robust problem over the best-response set ``B`` at a kink of phi.

    With ``q = hi`` fixed on ``S = supp(D_lam)``, the objective is
    ``lam' . (c' + K'(r))`` over ``r`` on ``S^c`` with ``lo <= r <= hi`` and
    ``sum r = mass - sum_S hi``, where ``c'_k = c_k + sum_{x in S} D_k log(D_k / hi)``
    and ``K'`` the (unnormalised) relative entropy of ``D_k`` restricted to ``S^c``.
    On the whole simplex the domains without mass on ``S^c`` (those of ``lam``'s support
    among them) only add the constant ``max c'_k`` and are left out; this keeps every
    kink of the sub-problem on a nonempty support, so the recursion shrinks ``S^c``.

    Returns
    -------
    oracle : _FullFamily or None
        The sub-problem (None when no domain is left).
    prior : PriorSet
    domains : ndarray of int
        The parent's domains kept, in order.
    offsets : ndarray (p,)
        ``c'`` for every domain of the parent.
    """
    S = point.state["support"]
    off = ~S
    hi_S = oracle.hi[S]
    offsets = oracle.offsets + rel_entr(oracle.D[:, S], hi_S).sum(axis=1)
    D_off = oracle.D[:, off]
    p = oracle.D.shape[0]
    if prior.is_simplex:
        domains = np.flatnonzero((D_off > 0).any(axis=1))
        sub_prior = PriorSet(domains.size) if domains.size else None
    else:
        domains, sub_prior = np.arange(p), prior
    if not domains.size:
        return None, None, domains, offsets
    sub = _FullFamily(
        np.ascontiguousarray(D_off[domains]),
        oracle.lo[off],
        oracle.hi[off],
        mass=oracle.mass - float(hi_S.sum()),
        offsets=offsets[domains],
    )
    return sub, sub_prior, domains, offsets
