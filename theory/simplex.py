"""The capped simplex ``{q : lo <= q <= hi, sum q = mass}`` and its water-filling.

The gate player's best response over the full gate space (DESIGN 2.1) and the KL
projection onto a box-constrained prior set both minimise ``-sum_x target(x) log q(x)``
over a capped simplex; the minimiser is ``q = clip(target / nu, lo, hi)`` with one
scalar level ``nu``. This module finds that level in passes over blocks of outcomes
(each pass reads ``target``, ``lo`` and ``hi`` once and keeps its temporaries in
cache) and writes the model on request, so that repeated solves on the same bounds
(the dual solver) allocate nothing of length n.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.blocks import BLOCK
from theory.errors import EmptyGateSpaceError, ShapeMismatchError

#: Relative accuracy at which the level is accepted as exact. The level solves a
#: piecewise-linear equation, so once Newton lands on the right piece the residual is
#: pure rounding.
RTOL = 1e-13
#: Passes allowed for the level search. Newton from a warm start typically needs 1-4;
#: a bracket shrinking by at least half every other pass bounds the rest.
MAX_PASSES = 200


@dataclass(frozen=True)
class WaterLevel:
    """The solution of a water-filling in closed form: how to write ``q`` block by block.

    ``kind``: ``"level"``: ``q = clip(t target, lo, hi)`` with the free outcomes
    (``lo < q < hi``) multiplied by ``scale``, so ``q_F = target_F / nu`` exactly;
    ``"lower"``: ``q = lo`` (the only feasible point); ``"fill"``: the target's support
    at ``hi`` and the zero-target outcomes at ``lo + fill (hi - lo)`` (a degenerate
    level ``nu = 0``, every such split is a minimiser).
    """

    kind: str
    nu: float
    t: float = 0.0
    scale: float = 1.0
    fill: float = 0.0
    passes: int = 0


def capped_simplex_totals(target, lo, hi) -> tuple[float, float, float, float]:
    """``sum lo``, ``sum hi``, ``sum target`` and ``S(inf) = sum_{target>0} hi + sum_{target=0} lo``."""
    out = np.zeros(4)
    for a in range(0, target.shape[0], BLOCK):
        tc, lc, hc = target[a : a + BLOCK], lo[a : a + BLOCK], hi[a : a + BLOCK]
        out += (lc.sum(), hc.sum(), tc.sum(), np.where(tc > 0, hc, lc).sum())
    return tuple(float(x) for x in out)


def top_mass(target, lo, hi) -> float:
    """``S(inf) = sum_{target > 0} hi + sum_{target = 0} lo``: the most the level can reach."""
    total = 0.0
    for a in range(0, target.shape[0], BLOCK):
        tc, hc = target[a : a + BLOCK], hi[a : a + BLOCK]
        # A block with every target positive sums hi alone (the same sum, no temporary).
        total += float(hc.sum() if tc.min() > 0 else np.where(tc > 0, hc, lo[a : a + BLOCK]).sum())
    return total


class BlockBuffers:
    """Reusable block buffers for the passes of one water-filling."""

    def __init__(self, n: int):
        m = min(BLOCK, n)
        self.c = np.empty(m)
        self.w = np.empty(m)
        self.m1 = np.empty(m, dtype=bool)
        self.m2 = np.empty(m, dtype=bool)

    def clipped(self, tc, lc, hc, t):
        """``clip(t target, lo, hi)`` on one block and its free mask (views of the buffers)."""
        m = tc.shape[0]
        c, m1, m2 = self.c[:m], self.m1[:m], self.m2[:m]
        np.multiply(tc, t, out=c)
        np.maximum(c, lc, out=c)
        np.minimum(c, hc, out=c)
        np.greater(c, lc, out=m1)
        np.less(c, hc, out=m2)
        m1 &= m2
        return c, m1


def _mass_at(target, lo, hi, t, buf: BlockBuffers) -> tuple[float, float]:
    """One pass: ``S(t) = sum clip(t target, lo, hi)`` and the mass of the free outcomes."""
    total = free = 0.0
    for a in range(0, target.shape[0], BLOCK):
        c, m1 = buf.clipped(target[a : a + BLOCK], lo[a : a + BLOCK], hi[a : a + BLOCK], t)
        total += float(c.sum())
        # Multiplying by the mask is much faster than a masked sum (sum(where=...)).
        w = buf.w[: c.shape[0]]
        np.multiply(c, m1, out=w)
        free += float(w.sum())
    return total, free


def water_level(target, lo, hi, totals, mass: float = 1.0, *, t0: float | None = None, mass_at=None) -> WaterLevel:
    """The level of ``min -sum target log q`` over ``lo <= q <= hi``, ``sum q = mass``.

    ``totals`` are :func:`capped_simplex_totals` (repeated solves on the same bounds
    know them without a pass). With ``t = 1 / nu`` the mass ``S(t)`` is piecewise linear
    and nondecreasing, with slope the target mass of the free outcomes: a Newton step is
    exact once it lands on the right piece. Steps outside the bracket ``[lo_t, hi_t]``
    fall back to false position on the bracket, and every third such step to bisection,
    so the bracket at least halves every few passes.

    ``mass_at(t) -> (S(t), free target mass at t)`` replaces the pass over the blocks
    (:func:`_mass_at`): a caller may fuse other work into the passes or know the first.
    """
    lo_sum, hi_sum, tsum, top = totals
    slack = RTOL * max(mass, 1.0)
    if lo_sum > mass + slack:
        raise EmptyGateSpaceError(f"water_fill: the lower bounds sum to {lo_sum:.12g} > mass {mass:.12g}")
    if hi_sum < mass - slack:
        raise EmptyGateSpaceError(f"water_fill: the upper bounds sum to {hi_sum:.12g} < mass {mass:.12g}")
    if lo_sum >= mass - slack:
        return WaterLevel("lower", float("inf"))
    if top <= mass + slack:
        room = hi_sum - top if hi_sum > top else 0.0
        return WaterLevel("fill", 0.0, fill=_fill_fraction(mass, top, room))

    if mass_at is None:
        buf = BlockBuffers(target.shape[0])

        def mass_at(t):
            return _mass_at(target, lo, hi, t, buf)

    lo_t, hi_t = 0.0, float("inf")
    s_lo, s_hi = lo_sum, float("inf")
    t = t0 if (t0 is not None and np.isfinite(t0) and t0 > 0) else mass / tsum
    fallbacks = 0
    for passes in range(1, MAX_PASSES + 1):
        total, free_mass = mass_at(t)
        if abs(total - mass) <= slack and free_mass > 0:
            break
        if total < mass:
            lo_t, s_lo = t, total
        else:
            hi_t, s_hi = t, total
        # On the current linear piece S(s) = clipped + s * (free target mass).
        step = t * (mass - (total - free_mass)) / free_mass if free_mass > 0 else -1.0
        if lo_t < step < hi_t:
            t = step
        elif np.isfinite(hi_t):
            fallbacks += 1
            secant = lo_t + (mass - s_lo) * (hi_t - lo_t) / (s_hi - s_lo) if s_hi > s_lo else -1.0
            t = secant if (fallbacks % 3 and lo_t < secant < hi_t) else 0.5 * (lo_t + hi_t)
        else:
            t = 2.0 * t
    else:
        raise RuntimeError(f"water_fill: no level found in {MAX_PASSES} passes (mass {total!r} vs {mass!r})")
    # Rescale the free outcomes so the mass is exact: q_F = target_F / nu.
    scale = (mass - (total - free_mass)) / free_mass
    return WaterLevel("level", 1.0 / (t * scale), t=t, scale=scale, passes=passes)


def _fill_fraction(mass, top, room) -> float:
    """Common fraction of ``hi - lo`` off the support in a degenerate water-fill.

    Confined to [0, 1]: ``top`` may exceed ``mass`` by the rounding slack, and a negative
    fraction would push ``q`` below ``lo`` (below zero where ``lo = 0``).
    """
    return min(max((mass - top) / room, 0.0), 1.0) if room > 0 else 0.0


def write_block(out, tc, lc, hc, level: WaterLevel, buf: BlockBuffers | None = None) -> np.ndarray:
    """Write the model ``q`` of ``level`` on one block (``out`` may alias ``tc``)."""
    if level.kind == "lower":
        np.copyto(out, lc)
    elif level.kind == "fill":
        np.copyto(out, np.where(tc > 0, hc, lc + (hc - lc) * level.fill))
    else:
        buf = buf or BlockBuffers(tc.shape[0])
        c, m1 = buf.clipped(tc, lc, hc, level.t)
        # Multiply by 1 + (scale - 1) * free: exactly scale on the free outcomes and 1
        # elsewhere (scale - 1 is exact), several times faster than a masked multiply.
        w = buf.w[: c.shape[0]]
        np.multiply(m1, level.scale - 1.0, out=w)
        w += 1.0
        np.multiply(c, w, out=out)
    return out


def write_model(out, target, lo, hi, level: WaterLevel) -> np.ndarray:
    """Write the model ``q`` of ``level`` into ``out`` (length n; may be ``target`` itself)."""
    buf = BlockBuffers(target.shape[0])
    for a in range(0, target.shape[0], BLOCK):
        s = slice(a, a + BLOCK)
        write_block(out[s], target[s], lo[s], hi[s], level, buf)
    return out


def water_fill(target, lo, hi, mass: float = 1.0, *, t0: float | None = None) -> tuple[np.ndarray, float]:
    """Minimise ``-sum_x target(x) log q(x)`` over ``lo <= q <= hi``, ``sum q = mass``.

    The minimiser is ``q = clip(target / nu, lo, hi)`` with the scalar level ``nu > 0``
    fixed by the mass (:func:`water_level`); the free outcomes satisfy
    ``q = target / nu`` exactly.

    Parameters
    ----------
    target : array (n,)
        Nonnegative weights (e.g. the mixture ``D_lam``). Outcomes with zero target sit
        at their lower bound.
    lo, hi : array (n,)
        Bounds with ``0 <= lo <= hi``.
    mass : float
        Required total mass.
    t0 : float, optional
        Warm start for ``t = 1 / nu`` (e.g. the level of a nearby problem).

    Returns
    -------
    q : ndarray (n,)
    nu : float
        The level. ``nu = inf`` when ``sum lo == mass`` (only ``q = lo`` is feasible);
        ``nu = 0`` in the degenerate case where even ``q = hi`` on the target's support
        does not reach the mass: the target's support then sits at ``hi`` and the rest of
        the mass fills the zero-target outcomes by a common fraction of ``hi - lo``
        (every such split is a minimiser).

    Raises
    ------
    EmptyGateSpaceError
        If ``sum lo > mass`` or ``sum hi < mass``.
    """
    target = np.asarray(target, dtype=np.float64)
    lo = np.asarray(lo, dtype=np.float64)
    hi = np.asarray(hi, dtype=np.float64)
    if target.ndim != 1 or lo.shape != target.shape or hi.shape != target.shape:
        raise ShapeMismatchError(
            f"water_fill needs 1-D target, lo and hi of one length; got {target.shape}, {lo.shape}, {hi.shape}"
        )
    level = water_level(target, lo, hi, capped_simplex_totals(target, lo, hi), mass, t0=t0)
    return write_model(np.empty_like(target), target, lo, hi, level), level.nu


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
    # Imported here: scipy.optimize costs ~0.3 s, and the water-filling does not need it.
    from scipy.optimize import brentq

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


def restore_mass(x, lo, hi, mass: float = 1.0) -> np.ndarray:
    """A point of ``{q : lo <= q <= hi, sum q = mass}`` near ``x``: clip, then share the excess.

    ``x`` is clipped to the box and every coordinate then moves towards the bound that
    restores the mass by a common fraction of its room (``x - lo`` when the sum is too
    large, ``hi - x`` when too small): ``q = x - (sum x - mass) room / sum room``. Used to
    remove an interior-point solver's feasibility error (a move of that error's size) and,
    from ``x = lo``, for a point of the set: ``lo + t (hi - lo)`` with one fraction ``t``.
    """
    x = np.clip(x, lo, hi)
    excess = x.sum() - mass
    room = (x - lo) if excess > 0 else (hi - x)
    if excess != 0 and room.sum() > 0:
        x = x - excess * room / room.sum()
    return x
