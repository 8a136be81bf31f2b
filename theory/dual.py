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

import os
import time
from dataclasses import dataclass, field

from typing import Callable

import numpy as np
from scipy.linalg import blas
from scipy.special import rel_entr
from threadpoolctl import threadpool_limits

from theory.best_response import family_cells, fit_gate_weights
from theory.blocks import BLOCK, block, buffer, columns, gather, release, spans
from theory.gates import MEMBERSHIP_TOL, constant_gate, gate_from_q, partition_gate, require_nonempty_G1
from theory.newton import ARMIJO, ROUNDING, PolytopeQP, backtrack, bfgs_update, damping, face_step
from theory.options import as_prior, check_family, check_offsets, check_tol
from theory.prior import PriorSet
from theory.result import Certificate, SolverResult
from theory.simplex import BlockBuffers, WaterLevel, restore_mass, top_mass, water_level, write_block, write_model
from theory.simplex import _mass_at as level_pass
from theory.validation import as_instance, floor_row, scan_instance, xlogx_rows

#: Stop when the certified gap has not shrunk over this many steps (rounding floor).
_STALL = 3
#: A Newton step from a point of certified gap ``g`` lands near ``C g^2`` (``C`` up to ~50
#: measured on the benchmark instances): where ``_LAST_STEP g^2 <= tol`` the full step is
#: expected to end the solve, and its point's Hessian (the Gram columns of the passes, few
#: domains) is left to a pass on request, needed only if the gap stays open.
_LAST_STEP = 1e3
#: Mass left over by a water-fill with ``nu = 0`` above which its best response is not
#: unique (a kink of phi); below it every member of the best-response set agrees to rounding.
_KINK_SLACK = 1e-13
#: From this many domains on, the p x p moments dominate the passes: the Gram matrix is
#: a symmetric rank-k update (half the flops of a product) and BLAS may use every core.
LARGE_P = 64
#: Beyond this fraction of the outcomes changing their clipping between the moments' pass
#: and the level, a fresh pass over D is cheaper than correcting the moments column by column.
_MAX_CHANGED = 1 / 64
#: Relative half-width of the window of levels ``t (1 -+ _WINDOW)`` around a moments pass's
#: ``t`` whose outcomes changing clipping that pass lists (:class:`_Window`): level passes
#: inside it read only those. Measured at n = 1e7, p = 8: 4.9e-4 of the outcomes listed,
#: and the level moved at most 1.9e-4 (relative) from an evaluation's first pass.
_WINDOW = 1e-2
#: Outcomes per block of the Gram pass (many domains): long rank-k updates run near BLAS's peak.
GRAM_COLUMNS = 2048
#: ``log`` of the smallest positive double: ``log(max(x, SMALLEST))`` is exact for every
#: ``x > 0``, subnormals included (``log(max(x, tiny))`` is not: it bounds KLs wrongly).
SMALLEST = np.nextafter(0.0, 1.0)
_TINY = np.finfo(float).tiny


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
    size = columns(D.shape[0])
    buf = buffer(*D.shape, size)
    work = np.empty((D.shape[0], min(size, D.shape[1])))
    floor = floor_row(work.shape[1])
    for a, b in spans(D.shape[1], size):
        out += xlogx_rows(block(D, a, b, buf), work[:, : b - a], floor)
    return out


def _kl_rows(D, q, neg_ent) -> np.ndarray:
    """``KL(D_k || q)`` for every row (``+inf`` where ``q`` misses D_k's support)."""
    zero = q <= 0
    kl = neg_ent - D @ np.log(np.maximum(q, SMALLEST))
    if zero.any():
        kl[(D[:, zero] > 0).any(axis=1)] = np.inf
    return kl


def _mirror(gram) -> np.ndarray:
    """The symmetric matrix whose upper triangle ``gram`` holds."""
    return np.triu(gram) + np.triu(gram, 1).T


class _LazyHessianPoint(_Point):
    """A :class:`_Point` whose Hessian is computed on first read (many domains).

    From :data:`LARGE_P` domains on, the p x p Gram matrix of the Hessian costs far more
    than a pass over the data, and the ascent reads the Hessian only of the points it
    steps from (not of rejected trials, nor of the last point), so it is built on request.
    """

    make: Callable[[], np.ndarray] | None = None

    @property
    def hessian(self):
        h = self.__dict__.get("_hessian")
        if h is None and self.make is not None:
            h, self.make = self.make(), None
            self.__dict__["_hessian"] = h
        return h

    @hessian.setter
    def hessian(self, value):
        self.__dict__["_hessian"] = value


class _FullFamily:
    """Dual oracle for the full gate space: water-filling best response, exact Hessian.

    Solves the general core ``min_r max_{lam in Lambda} lam . (c + K(r))`` with
    ``K_k(r) = sum_x D_k log(D_k / r)`` over ``lo <= r <= hi``, ``sum r = mass``: the
    robust problem itself (``c = 0``, mass one) and, at a degenerate best response, the
    smaller problem that picks the certifying member of the best-response set
    (:func:`_kink_subproblem`), whose rows need not sum to one.

    Memory: the hull ``lo, hi`` and one buffer for ``D_lam`` (3 n floats); every pass
    over ``D`` goes block by block (memory-mapped inputs included) with reused block
    buffers, and the models of evaluated points are rewritten from their water level
    rather than kept.

    Passes per evaluation: one over D when the warm-started level lands near the last
    one: ``D_lam = lam @ D``, the water level's first pass and the moments of its
    clipping pattern (``KL``; the Gram matrix for few domains) in one sweep, which also
    lists the outcomes that change clipping within :data:`_WINDOW` of its level
    (:class:`_Window`); the level's later passes read only those, and the moments at the
    level are corrected on the outcomes that changed. Outside the window a level pass
    reads the n-vectors; with too many changes the moments get a fresh pass over D. For
    many domains the Gram matrix gets its own pass on request, and so it does for a
    point that the ascent expects to be its last (``gram=False``).
    """

    def __init__(self, D, lo, hi, *, mass: float = 1.0, offsets=None, neg_ent=None, row_mass=None,
                 v=None, v_lam=None, kernel=None):
        self.D = D
        p, n = D.shape
        self.lo, self.hi = lo, hi
        self.mass = mass
        self.offsets = np.zeros(p) if offsets is None else offsets
        self.neg_ent = _neg_entropies(D) if neg_ent is None else neg_ent
        self.row_mass = D.sum(axis=1) if row_mass is None else row_mass
        self.sums = (float(self.lo.sum()), float(self.hi.sum()))
        self.top = {}
        self.t_warm = None
        self.v = np.empty(n) if v is None else v
        self.v_lam = v_lam
        self.kernel = _Sweep(p, n) if kernel is None else kernel
        # The n-vector passes (water level) use longer blocks than the (p x m) ones.
        self.level_buf = BlockBuffers(n)
        self.ref_buf = BlockBuffers(n)
        self.code_buf, self.ref_code_buf = (np.empty(min(BLOCK, n), dtype=np.int8) for _ in range(2))
        self.ref, self.changes, self.near, self.window = None, {}, None, None
        # (lam, first level pass, moments, S(inf), near outcomes) of a pass made before the first evaluation.
        self.pending = None

    @classmethod
    def of_scan(cls, scan, lam0=None, first=None) -> "_FullFamily":
        """The robust problem itself (from :func:`theory.validation.scan_instance`); its experts give the gate.

        ``lam0``: the mixture whose ``D_lam`` the scan wrote (``scan.v``), if any;
        ``first``: the :class:`_Sweep` that rode along in the scan (:meth:`_Sweep.riding`).
        """
        oracle = cls(scan.D, scan.lo, scan.hi, neg_ent=scan.neg_ent, row_mass=scan.row_mass, v=scan.v,
                     v_lam=None if scan.v is None else lam0, kernel=first)
        oracle.P = scan.P
        if oracle.sums[0] > 1 + MEMBERSHIP_TOL or oracle.sums[1] < 1 - MEMBERSHIP_TOL:
            require_nonempty_G1(np.vstack([scan.lo, scan.hi]))  # raises EmptyGateSpaceError with the remedy
        if first is not None and first.t is not None and scan.v is not None:
            oracle.t_warm = first.t
            oracle.pending = (lam0, (first.total, first.free), first.ref(), first.top, first.near_outcomes())
        return oracle

    @classmethod
    def of_experts(cls, D, P) -> "_FullFamily":
        """The robust problem for validated float64 arrays ``D``, ``P``."""
        return cls.of_scan(scan_instance(D, P, check=False))

    def _sweep(self, v, *, lam=None, t=None, level=None, moments: bool = False, top: bool = False,
               gram: bool = True):
        """One blocked pass over D (:class:`_Sweep`): any of ``D_lam``, the level's mass at ``t``, the moments.

        With ``lam``: ``v = lam @ D`` written block by block (the other quantities are then
        taken of the blocks just written); with ``moments`` they are kept as
        ``self.ref = (t, R, missed)`` (``gram=False``: without the Gram columns).
        Returns ``(S(t), free mass, S(inf))``.
        """
        D, lo, hi, kernel = self.D, self.lo, self.hi, self.kernel
        kernel.start(t, level, moments, gram)
        for a, b in spans(D.shape[1], kernel.size):
            Dc, vc, lc, hc = block(D, a, b, kernel.block), v[a:b], lo[a:b], hi[a:b]
            if lam is not None:
                np.dot(lam, Dc, out=vc)
            if top:
                kernel.top += top_mass(vc, lc, hc)
            kernel.add(a, b, Dc, vc, lc, hc)
            release(D, a, b)
        if moments:
            self.ref, self.near = kernel.ref(), kernel.near_outcomes()
        return kernel.total, kernel.free, kernel.top

    def _tracked_pass(self, v, t) -> tuple[float, float]:
        """The water level's pass at ``t`` over n-vectors, noting the outcomes whose clipping
        code differs from the moments' reference pattern (``self.changes[t]``; None when
        more than :data:`_MAX_CHANGED` of them, when a fresh pass is cheaper). The
        reference codes are those of the pattern of ``t_ref`` (``self.ref``), rewritten
        per block (no n-vector of codes is kept).
        """
        lo, hi, t_ref = self.lo, self.hi, self.ref[0]
        n = v.shape[0]
        limit = int(_MAX_CHANGED * n)
        changed, count = [], 0
        total = free = 0.0
        code, ref_code = self.code_buf, self.ref_code_buf
        for a in range(0, n, BLOCK):
            b = min(a + BLOCK, n)
            m = b - a
            vc, hc = v[a:b], hi[a:b]
            c, f = self.level_buf.clipped(vc, lo[a:b], hc, t)
            w = self.level_buf.w[:m]
            total += float(c.sum())
            np.multiply(c, f, out=w)
            free += float(w.sum())
            if count <= limit:
                at_hi = self.level_buf.m2[:m]
                cc = _codes(c, f, hc, code[:m], at_hi)
                cr, fr = self.ref_buf.clipped(vc, lo[a:b], hc, t_ref)
                rc = _codes(cr, fr, hc, ref_code[:m], self.ref_buf.m2[:m])
                np.not_equal(cc, rc, out=at_hi)
                if at_hi.any():
                    idx = np.flatnonzero(at_hi) + a
                    changed.append(idx)
                    count += idx.size
        self.changes[t] = None if count > limit else (np.concatenate(changed) if changed else np.zeros(0, np.intp))
        return total, free

    def _corrected(self, v, level):
        """The moments at ``level`` from the reference pattern's and the outcomes that changed.

        The moments of a pattern do not depend on ``t`` (:meth:`_sweep`): the changed
        outcomes' contributions are taken out at the reference pattern and put back at
        the level's (a few columns of D).
        None when there is no usable reference.
        """
        ref = self.ref
        if ref is None or ref[0] is None or level.kind != "level":
            return None
        t_ref, R, missed = ref
        idx = np.zeros(0, np.intp) if level.t == t_ref else self.changes.get(level.t)
        if idx is None:
            return None
        if idx.size:
            Dx = gather(self.D, idx)
            if Dx is None:
                return None
            vx, lx, hx = v[idx], self.lo[idx], self.hi[idx]
            width = R.shape[1]
            R = R - self._terms(Dx, vx, lx, hx, t_ref, width) + self._terms(Dx, vx, lx, hx, level.t, width)
        return R, missed

    def _terms(self, Dx, vx, lx, hx, t, width: int) -> np.ndarray:
        """The ``width`` columns of ``R`` (:meth:`_sweep`) of a few outcomes at the pattern of ``t``."""
        c = np.minimum(np.maximum(vx * t, lx), hx)
        f = (c > lx) & (c < hx)
        W = np.empty((width, c.shape[0]))
        W[0] = np.log(np.maximum(np.where(f, vx, c), SMALLEST))
        W[1] = f
        if width > 2:
            W[2:] = Dx * (f / np.maximum(vx, _TINY))
        return Dx @ W.T

    def _v_of(self, lam) -> np.ndarray:
        """``D_lam`` (from the buffer when it holds this ``lam``)."""
        if not (self.v_lam is not None and np.array_equal(self.v_lam, lam)):
            self._sweep(self.v, lam=lam)
            self.v_lam = lam.copy()
        return self.v

    def __call__(self, lam, *, gram: bool = True) -> _Point:
        """phi at ``lam``: its bound, gradient, best response and (few domains) Hessian.

        ``gram=False``: the caller expects not to step from this point (the step to it
        should close the gap), so the Gram matrix is left out of the passes and the
        Hessian is built on request by a pass of its own (:meth:`_gram`), as for many
        domains; the moments that bound and certify are the same.
        """
        support = tuple(lam > 0)
        tsum = float(lam @ self.row_mass)
        t_warm = self.t_warm
        # The level search's start (water_level's rule), so that the mixing pass can do its first pass.
        t0 = t_warm if t_warm is not None else (self.mass / tsum if tsum > 0 else None)
        new_support = support not in self.top
        first, v = None, self.v
        self.ref, self.changes, self.near, self.window = None, {}, None, None
        pending, self.pending = self.pending, None
        if self.v_lam is not None and np.array_equal(self.v_lam, lam):
            known_top = None
            if pending is not None and np.array_equal(pending[0], lam):
                _, first, self.ref, known_top, self.near = pending
            if new_support:
                self.top[support] = top_mass(v, self.lo, self.hi) if known_top is None else known_top
        else:
            # One pass: D_lam, the level's first pass and the moments at its pattern.
            # (S(inf) of the water-filling depends on lam only through its support.)
            total, free, top = self._sweep(v, lam=lam, t=t0, moments=t0 is not None, top=new_support, gram=gram)
            self.v_lam = lam.copy()
            first = None if t0 is None else (total, free)
            if new_support:
                self.top[support] = top
        top = self.top[support]
        if first is not None and self.near is not None and self.ref is not None and self.ref[0] == t0:
            self.window = _Window(t0, first, self.near, v, self.lo, self.hi)
        totals = (*self.sums, tsum, top)
        level = water_level(v, self.lo, self.hi, totals, self.mass, t0=t0, mass_at=self._level_passes(v, t0, first))
        nu = level.nu
        if 0 < nu < np.inf:
            self.t_warm = 1.0 / nu
        corrected = self._corrected(v, level)
        if corrected is None:
            self._sweep(v, t=level.t, level=None if level.kind == "level" else level, moments=True, gram=gram)
            corrected = self.ref[1:]
        self.ref, self.changes, self.near, self.window = None, {}, None, None
        kl, s, gram = self._finish(*corrected, level)
        lower = float(lam @ np.where(lam > 0, kl, 0.0))
        # nu = 0 with mass left over: the support of D_lam sits at hi and the rest of the
        # mass may go anywhere off it, so the best response (and the gradient) is not unique.
        kink = nu == 0.0 and self.mass - top > _KINK_SLACK * max(self.mass, 1.0)
        state = {"kink": kink, "passes": level.passes}
        if kink:
            state["support"] = v > 0
        if gram is not None:
            return _Point(lam=lam, lower=lower, kl=kl, q=None, hessian=_hessian(gram, s, lam), state=state,
                          level=level)
        point = _LazyHessianPoint(lam=lam, lower=lower, kl=kl, q=None, state=state, level=level)
        point.make = lambda: _hessian(self._gram(point), s, lam)
        return point

    def _level_passes(self, v, t0, first):
        """The water level's passes: the first known from the mixing pass, the later ones tracked."""
        known = [first]

        def mass_at(t):
            if known[0] is not None and t == t0:
                out, known[0] = known[0], None
                return out
            if self.window is not None and self.window.covers(t):
                total, free, self.changes[t] = self.window.mass_at(t)
                return total, free
            if self.ref is not None and self.ref[0] is not None:
                return self._tracked_pass(v, t)
            return level_pass(v, self.lo, self.hi, t, self.level_buf)

        return mass_at

    def _finish(self, R, missed, level):
        """``KL(D_k || q)``, ``sum_F D_k`` and the Gram matrix (None for many domains) from a pass."""
        dots = R[:, 0]
        s = R[:, 1].copy()
        if level.kind == "level":
            # On the free outcomes q = scale * t * v: log q = log v + log(t) + log(scale).
            dots = dots + (np.log(level.t) + np.log(level.scale)) * s
        kl = self.offsets + self.neg_ent - dots
        kl[missed] = np.inf
        return kl, s, (R[:, 2:].copy() if R.shape[1] > 2 else None)

    def _gram(self, point: _Point) -> np.ndarray:
        """``sum_F D_k D_j / D_lam`` at ``point``'s level: one pass, symmetric rank-k updates."""
        D, lo, hi, level = self.D, self.lo, self.hi, point.level
        v = self._v_of(point.lam)
        p, n = D.shape
        size = min(n, GRAM_COLUMNS)
        A = np.empty((p, size))
        w = np.empty(size)
        gram = np.zeros((p, p), order="F")
        buf = BlockBuffers(size)
        threads = _gram_threads()
        t, degenerate = level.t, None if level.kind == "level" else level
        for a, b in spans(n, size):
            m = b - a
            Dc, vc = block(D, a, b), v[a:b]
            _, f = _pattern(vc, lo[a:b], hi[a:b], t, degenerate, buf)
            wc = w[:m]
            np.maximum(vc, _TINY, out=wc)
            np.divide(f, wc, out=wc)
            np.sqrt(wc, out=wc)
            Ac = A[:, :m]
            np.multiply(Dc, wc, out=Ac)
            # (A')' A' with A' = Ac' Fortran-ordered: no copy; upper triangle accumulated in place.
            with threadpool_limits(limits=threads, user_api="blas"):
                gram = blas.dsyrk(1.0, Ac.T, c=gram, trans=1, beta=1.0, overwrite_c=1)
            release(D, a, b)
        return _mirror(gram)

    def model(self, point: _Point, out=None) -> np.ndarray:
        """The best response ``q`` of ``point`` (written from its level; a new array unless ``out``)."""
        if point.q is not None:
            return point.q
        v = self._v_of(point.lam)
        out = np.empty_like(v) if out is None else out
        write_model(out, v, self.lo, self.hi, point.level)
        if out is v:
            self.v_lam = None
        return out

    def kl_of(self, q) -> np.ndarray:
        """``c_k + K_k(q)`` for every row, at a model ``q`` of this problem."""
        return self.offsets + _kl_rows(np.asarray(self.D, dtype=np.float64), q, self.neg_ent)

    def gate(self, point: _Point, q) -> Callable[[], np.ndarray]:
        """A gate realising the best response ``q``, built on request (:func:`theory.gates.gate_from_q`)."""
        P = self.P
        return lambda: gate_from_q(q, P)


class _Window:
    """The water level's passes near a moments pass's level ``t0``, from the outcomes listed near it.

    The moments pass at ``t0`` (:class:`_Sweep`) lists the outcomes whose clipping
    changes somewhere in ``[t0 (1 - w), t0 (1 + w)]`` (``w`` = :data:`_WINDOW`); the
    others keep their pattern there, so for ``t`` in the window

    ``S(t) = S(t0) - sum_N c0 + (t / t0 - 1) F + sum_N clip(t v, lo, hi)``,
    ``free(t) = (t / t0) F + sum_{N, free at t} clip(t v, lo, hi)``,

    with ``N`` the listed outcomes, ``c0`` their model at ``t0`` and ``F`` the free
    mass at ``t0`` off ``N`` (free outcomes scale with ``t``). The outcomes whose code
    differs from ``t0``'s are among ``N``: they are the changes that correct the moments.
    """

    def __init__(self, t0: float, first, near: np.ndarray, v, lo, hi):
        self.t0 = t0
        self.lo_t, self.hi_t = t0 * (1.0 - _WINDOW), t0 * (1.0 + _WINDOW)
        self.idx = near
        self.v, self.lo, self.hi = v[near], lo[near], hi[near]
        c0, f0 = self._clip(t0)
        self.code0 = self._code(c0, f0)
        total0, free0 = first
        self.far_free = free0 - float(c0 @ f0)
        self.far_total = total0 - float(c0.sum())

    def _clip(self, t):
        c = np.minimum(np.maximum(self.v * t, self.lo), self.hi)
        return c, ((c > self.lo) & (c < self.hi)).astype(np.float64)

    def _code(self, c, f) -> np.ndarray:
        return (c >= self.hi).astype(np.int8) * 2 + f.astype(np.int8)

    def covers(self, t) -> bool:
        return self.lo_t <= t <= self.hi_t

    def mass_at(self, t) -> tuple[float, float, np.ndarray]:
        """``(S(t), free mass at t, outcomes whose code differs from t0's)``."""
        c, f = self._clip(t)
        scaled = (t / self.t0) * self.far_free
        total = self.far_total - self.far_free + scaled + float(c.sum())
        free = scaled + float(c @ f)
        return total, free, self.idx[self._code(c, f) != self.code0]


class _Sweep:
    """The work on each block of a pass over D at one pattern, with reused block buffers.

    Per block of outcomes (``Dc``, ``v``, ``lo``, ``hi``) at the pattern of ``t``
    (:func:`_pattern`; ``level``: a degenerate level's model): the water level's
    ``S(t)`` and free mass, and with ``moments``
    ``R = D [log c', 1_F, D_k 1_F / v]'`` (``c' = v`` on the free outcomes, ``c``
    elsewhere, so that a pattern's moments do not depend on ``t``; the Gram columns for
    few domains only), the rows with mass where ``c = 0``, and, for a pattern of ``t``,
    the outcomes that change clipping within :data:`_WINDOW` of it (:meth:`_list_near`).
    """

    def __init__(self, p: int, n: int):
        self.size = columns(p)
        # Few domains: the Gram matrix rides along in the moments' one product per block.
        self.p, self.fused = p, p < LARGE_P
        m = min(self.size, n)
        self.n = n
        self.buf = BlockBuffers(m)
        self.rows = np.empty((p + 2 if self.fused else 2, m))
        # The products of a block with and without the Gram columns (contiguous outputs).
        self.prods = {w: np.empty((p, w)) for w in {2, self.rows.shape[0]}}
        self.wbuf = np.empty(m)
        # Floors as arrays (:func:`theory.validation.floor_row`: np.maximum is ~3x slower with a scalar).
        self.floor, self.tiny = floor_row(m), np.full(m, _TINY)
        self.block = buffer(p, n, self.size)
        self.near_bufs = (np.empty(m), np.empty(m), *(np.empty(m, dtype=bool) for _ in range(3)))
        self.start(None, None, False)

    def start(self, t, level, moments: bool, gram: bool = True) -> None:
        self.t, self.level, self.moments = t, level, moments
        self.total = self.free = self.top = 0.0
        self.width = self.rows.shape[0] if gram else 2
        # The outcomes near a breakpoint of the level (a list of index arrays; None: too many).
        self.near, self.near_count = ([] if moments and level is None and t is not None else None), 0
        if moments:
            self.R = np.zeros((self.p, self.width))
            self.missed = np.zeros(self.R.shape[0], dtype=bool)

    def riding(self, t):
        """A per-block callback for a pass made elsewhere (:func:`theory.validation.scan_instance`).

        Besides the moments at ``t`` it sums the water level's ``S(inf)`` (``self.top``,
        :func:`theory.simplex.top_mass`), saving the first evaluation a pass over n-vectors.
        """
        self.start(t, None, True)

        def each(a, b, Dc, vc, lc, hc):
            self.top += top_mass(vc, lc, hc)
            self.add(a, b, Dc, vc, lc, hc)

        return each

    def ref(self):
        """The moments of the pass: ``(t, R, missed)`` (``t`` None for a degenerate level)."""
        return (self.t if self.level is None else None, self.R, self.missed)

    def near_outcomes(self) -> np.ndarray | None:
        """The outcomes whose clipping changes for some level in ``t (1 -+ _WINDOW)`` (None: not listed)."""
        if self.near is None:
            return None
        return np.concatenate(self.near) if self.near else np.zeros(0, np.intp)

    def _list_near(self, a, vc, lc, hc) -> None:
        """List the block's outcomes with a breakpoint ``lo / v`` or ``hi / v`` in the window.

        An outcome's clipping code is a function of ``(t v <= lo, t v >= hi)``, and
        rounding keeps ``fl(t v)`` monotone in ``t``: an outcome whose two tests agree at
        both ends of the window keeps its code at every ``t`` inside it.
        """
        m = vc.shape[0]
        ua, ub, x, y, z = (buf[:m] for buf in self.near_bufs)
        np.multiply(vc, self.t * (1.0 - _WINDOW), out=ua)
        np.multiply(vc, self.t * (1.0 + _WINDOW), out=ub)
        np.less_equal(ua, lc, out=x)
        np.less_equal(ub, lc, out=y)
        np.not_equal(x, y, out=x)  # lo crossed
        np.greater_equal(ua, hc, out=y)
        np.greater_equal(ub, hc, out=z)
        np.not_equal(y, z, out=y)  # hi crossed
        y |= x
        if y.any():
            idx = np.flatnonzero(y) + a
            self.near.append(idx)
            self.near_count += idx.size
            if self.near_count > _MAX_CHANGED * self.n:
                self.near = None

    def add(self, a, b, Dc, vc, lc, hc) -> None:
        if self.t is None and self.level is None:
            return
        m = b - a
        c, f = _pattern(vc, lc, hc, self.t, self.level, self.buf)
        W = self.rows[: self.width, :m]
        self.total += float(c.sum())
        np.copyto(W[1], f)
        self.free += float(np.dot(c, W[1]))
        if not self.moments:
            return
        # log(max(c, SMALLEST)) is exact for c > 0; rows with mass where c = 0 are set to inf.
        # Free outcomes contribute log v (their log q is log v + log(t scale)).
        np.copyto(W[0], c)
        np.copyto(W[0], vc, where=f)
        np.maximum(W[0], self.floor[:m], out=W[0])
        np.log(W[0], out=W[0])
        if self.width > 2:
            w = self.wbuf[:m]
            np.maximum(vc, self.tiny[:m], out=w)
            np.divide(W[1], w, out=w)
            np.multiply(Dc, w, out=W[2:])
        prod = self.prods[self.width]
        np.dot(Dc, W.T, out=prod)
        self.R += prod
        if not c.min() > 0:
            self.missed |= (Dc[:, c <= 0] > 0).any(axis=1)
        if self.near is not None:
            self._list_near(a, vc, lc, hc)


def _codes(c, f, hc, out, at_hi) -> np.ndarray:
    """Clipping code of each outcome of a block: 0 at ``lo``, 1 free, 2 at ``hi`` (int8)."""
    np.greater_equal(c, hc, out=at_hi)
    np.left_shift(at_hi.view(np.int8), 1, out=out)
    out |= f.view(np.int8)
    return out


def _pattern(vc, lc, hc, t, level, buf: BlockBuffers):
    """One block's model before rescaling and its free outcomes ``lo < q < hi`` (buffers' views).

    ``level`` None: ``c = clip(t v, lo, hi)`` (the level's model is ``c`` with the free
    outcomes scaled by ``level.scale``); otherwise the degenerate level's model itself,
    free only where ``v > 0``.
    """
    if level is None:
        return buf.clipped(vc, lc, hc, t)
    m = vc.shape[0]
    c, f, other = buf.c[:m], buf.m1[:m], buf.m2[:m]
    write_block(c, vc, lc, hc, level)
    np.greater(c, lc, out=f)
    np.less(c, hc, out=other)
    f &= other
    np.greater(vc, 0.0, out=other)
    f &= other
    return c, f


def _hessian(gram, s, lam) -> np.ndarray:
    """The Hessian of phi (DESIGN 2.1 water-filling, F = unclipped outcomes).

    ``-[sum_F D_k D_j / D_lam - (sum_F D_k)(sum_F D_j) / sum_F D_lam]``.
    """
    mass_free = float(lam @ s)
    return -(gram - np.outer(s, s) / mass_free) if mass_free > 0 else -gram


class _RestrictedFamily:
    """Dual oracle for constant or partition gates: certified projected-Newton best response."""

    def __init__(self, D, P, labels, n_cells):
        self.D = D
        self.P = P
        self.labels = labels
        self.n_cells = n_cells
        self.neg_ent = _neg_entropies(D)
        self.W = None

    def __call__(self, lam, *, gram: bool = True) -> _Point:
        """phi at ``lam`` from the certified inner fit (``gram``: unused, BFGS keeps the curvature)."""
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
    # The passes over the data are many small BLAS calls on cache-sized blocks; with a
    # multi-threaded BLAS every call pays a thread hand-off, which costs more than it
    # saves (3x slower measured at n = 1e5, p = 32 on two busy cores; 20x for the p x 2
    # products at p = 1024). Only the Gram pass (many domains) shares its rank-k updates
    # between cores (:func:`_gram_threads`).
    with threadpool_limits(limits=1, user_api="blas"):
        return _solve_dual(D, P, prior, family, cells, tol, max_iter, validate, offsets, start)


def _gram_threads() -> int:
    """BLAS threads for the Gram pass: every core, unless the machine is already busy.

    On a machine whose load average exceeds half its cores, extra BLAS threads wait for
    cores taken by other processes (measured: 2 threads 1.5x slower than 1 at load 4.7
    on 2 cores). Threads split the output matrix, not the sums, so the result does not
    depend on their number (checked bit for bit for ``dsyrk``).
    """
    cores = os.cpu_count() or 1
    try:
        busy = os.getloadavg()[0] > cores / 2
    except OSError:
        busy = False
    return 1 if busy else cores


def _solve_dual(D, P, prior, family, cells, tol, max_iter, validate, offsets, start) -> SolverResult:
    tol = check_tol(tol)
    if family == "full":
        # The validating pass also mixes the domains at the ascent's first point (the
        # feasible point of Lambda) when Lambda is known to fit, saving a pass over D.
        p = np.shape(D)[0] if np.ndim(D) == 2 else 0
        fits = p > 0 and (prior is None or (isinstance(prior, PriorSet) and prior.p == p))
        lam0 = as_prior(prior, p).feasible_point() if fits else None
        # With it, the moments at the level's first guess (rows summing to one: t = 1 / sum lam).
        first = _Sweep(p, np.shape(D)[1]) if fits else None
        ride = None if first is None else first.riding(1.0 / float(lam0.sum()))
        scan = scan_instance(D, P, check=validate, mix=lam0, each=ride)
        D, P = scan.D, scan.P
    else:
        D, P = as_instance(D, P, check=validate)
    p, n = D.shape
    check_family(family, cells, n)
    prior = as_prior(prior, p)
    offsets = check_offsets(offsets, p, family)
    if family == "full":
        oracle = _FullFamily.of_scan(scan, lam0, first)
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
        last = _LAST_STEP * run.gap**2 <= tol
        for d in qp(point.lam, g, M):
            accepted, step = _line_search(oracle, prior, run, point, d, float(g @ d), tol, last=last)
            if accepted is not None:
                break
        history = run.history
        stalled = len(history["gap"]) >= _STALL and run.gap >= history["gap"][-_STALL]
        if (accepted is None or stalled) and point.state.get("kink") and point.state["support"].any():
            d, slope = _resolve_kink(oracle, prior, run, point, tol, max_iter)
            if d is not None and run.gap > tol:
                accepted, step = _line_search(oracle, prior, run, point, d, slope, tol)
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


def _line_search(oracle, prior, run: _Ascent, point: _Point, d, slope: float, tol: float,
                 last: bool = False) -> tuple[_Point | None, float]:
    """Backtracking on phi along ``d``; every evaluated point is offered to the certificate.

    A trial that closes the certified gap to ``tol`` ends the search (the certificate
    keeps the best bounds of every point; near the optimum the full step's phi may sit
    below the start's by rounding, and backtracking would only cost passes).
    ``last``: the full step is expected to close the gap, so its point is evaluated
    without the Hessian (built on request if the solve goes on; shorter steps have it).
    """
    if not slope > -ROUNDING * abs(point.lower):
        return None, 1.0
    floor = point.lower - ROUNDING * abs(point.lower)

    def trial(step):
        point_at = oracle(point.lam + step * d, gram=not (last and step == 1.0))
        run.evaluations += 1
        return point_at, run.offer(point_at, prior)

    def accept(candidate, step):
        trial_point, better_upper = candidate
        if run.gap <= tol:
            return True
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
