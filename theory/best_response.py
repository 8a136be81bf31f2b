"""Exact best responses of the gate player to a fixed mixture of the domains.

For a fixed mixture ``lam`` the gate player minimises ``sum_k lam_k KL(D_k || q)``,
which equals ``KL(D_lam || q)`` plus a constant, over the models ``q`` that the gate
family can produce:

* ``full``: any ``q`` of the pointwise hull ``l <= q <= u`` with ``sum q = 1``
  (DESIGN 2.1); the minimiser is the water-filling ``q = clip(D_lam / nu, l, u)``.
* ``constant``: ``q = sum_k w_k P_k`` with ``w`` in the simplex (maximum-likelihood
  mixture weights).
* ``partition``: the gate is constant on the cells of a partition of the outcomes,
  ``g(x, .) = W[cell(x)]``, and the model must have total mass one.

The restricted families are solved by projected Newton steps on the gate weights with
a Frank-Wolfe duality gap as the certified stopping rule (see :func:`fit_gate_weights`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from theory.errors import InvalidOptionError
from theory.gates import pointwise_hull, require_nonempty_G1
from theory.newton import ARMIJO, ROUNDING, PolytopeQP, backtrack, damping, face_step_simplices
from theory.options import check_family, check_tol
from theory.result import Certificate, warn_if_missed
from theory.simplex import water_fill
from theory.validation import as_instance, as_weights

#: Below this relative Frank-Wolfe gap a stalled Newton iteration has reached its rounding floor.
_STALL_GAP = 1e-8


def best_response(D, P, lam, *, family: str = "full", cells=None, tol: float = 1e-8) -> np.ndarray:
    """The gate player's best response ``argmin_q sum_k lam_k KL(D_k || q)`` in a family.

    Parameters
    ----------
    D, P : array (p, n)
        Domains and experts (rows are distributions).
    lam : array (p,)
        Mixture weights in the simplex.
    family : {"full", "constant", "partition"}
        The gate family: all of G1, static gates, or gates constant on ``cells``.
    cells : array (n,) of int, optional
        Cell of each outcome (required for ``family="partition"``).
    tol : float
        Certified suboptimality (nats) accepted from the restricted fit; above it a
        :class:`~theory.result.ConvergenceWarning` is emitted. The fit itself aims at
        1e-12 (:func:`fit_gate_weights`).

    Returns
    -------
    q : ndarray (n,)
        The gated model. For ``full`` it is exact up to rounding; for the restricted
        families its objective is certified within ``fit_gate_weights``'s Frank-Wolfe
        gap of the minimum (1e-12 nats, or the gap's rounding floor, ~1e-11).
    """
    D, P = as_instance(D, P)
    lam = as_weights(lam, D.shape[0])
    v = lam @ D
    if family == "full":
        require_nonempty_G1(P)
        lo, hi = pointwise_hull(P)
        return water_fill(v, lo, hi)[0]
    tol = check_tol(tol)
    labels, n_cells = family_cells(family, cells, D.shape[1])
    fit = fit_gate_weights(v, P, labels, n_cells)
    cert = Certificate.of(fit.objective - fit.fw_gap, fit.objective, tol)
    warn_if_missed(f"restricted best response ({family})", cert.status, cert.gap, tol, fit.iterations)
    return fit.q


def family_cells(family: str, cells, n: int) -> tuple[np.ndarray, int]:
    """Cell labels and count of a restricted gate family (one cell for ``constant``)."""
    if family == "constant":
        return np.zeros(n, dtype=np.intp), 1
    labels = check_family(family, cells, n)
    if labels is None:
        raise InvalidOptionError(f"gate family {family!r} is not a restricted family; expected 'constant' or 'partition'")
    return labels, int(labels.max()) + 1


@dataclass
class GateWeightsFit:
    """Certified solution of the restricted best response (see :func:`fit_gate_weights`).

    ``objective - fw_gap <= min <= objective``; ``objective`` is
    ``-sum_x v(x) log q(x)`` at the returned weights ``W`` (C x p; a constant gate's
    weights are ``W[0]``). ``status`` is ``"optimal"`` when ``fw_gap <= tol``
    (:class:`theory.result.Certificate`).
    """

    W: np.ndarray
    q: np.ndarray
    objective: float
    fw_gap: float
    iterations: int
    status: str
    tol: float


class _CellStructure:
    """Per-cell index sets and expert masses ``m_ck = P_k(cell c)`` of a partition."""

    def __init__(self, P, labels, n_cells):
        from scipy import sparse  # imported on use: theory's start-up stays cheap

        self.P = P
        self.labels = labels
        self.n_cells = n_cells
        p, n = P.shape
        self.indicator = sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(n_cells, n))
        self.masses = cell_masses(P, labels, n_cells)
        order = np.argsort(labels, kind="stable")
        bounds = np.searchsorted(labels[order], np.arange(n_cells + 1))
        self.members = [order[bounds[c] : bounds[c + 1]] for c in range(n_cells)]
        self.mass_constrained = mass_is_constrained(self.masses)

    def polytope(self) -> PolytopeQP:
        """The step QP over the gate weights: rows in the simplex, mass one when constrained."""
        from scipy import sparse

        C, p = self.masses.shape
        eq = [sparse.kron(sparse.eye(C), np.ones((1, p)))]
        if self.mass_constrained:
            eq.append(sparse.csr_matrix(self.masses.reshape(1, -1)))
        A_eq = sparse.vstack(eq)
        return PolytopeQP(A_eq, np.ones(A_eq.shape[0]), np.zeros(C * p))

    def model(self, W) -> np.ndarray:
        return np.einsum("kn,nk->n", self.P, W[self.labels])

    def cell_sums(self, values) -> np.ndarray:
        """``sum_{x in c} values[k, x]`` for each cell c and row k, as (C x p)."""
        return np.asarray(self.indicator @ values.T)


def _objective(v, q) -> float:
    """``-sum_x v(x) log q(x)``; ``+inf`` when ``q`` misses the support of ``v``."""
    on = v > 0
    if (q[on] <= 0).any():
        return float("inf")
    return float(-(v[on] @ np.log(q[on])))


def cell_masses(P, labels, n_cells) -> np.ndarray:
    """Expert masses of the cells of a partition: ``m_ck = P_k(cell c)`` as (C x p)."""
    from scipy import sparse  # imported on use: theory's start-up stays cheap

    n = P.shape[1]
    indicator = sparse.csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(n_cells, n))
    return np.asarray(indicator @ P.T)


def mass_is_constrained(masses) -> bool:
    """Whether ``sum_ck W_ck m_ck = 1`` constrains partition weights beyond their row sums.

    It is implied by the row sums when ``m_ck`` does not depend on k (one cell, or experts
    that agree on every cell's mass); a nearly redundant constraint would only add
    rounding noise (``m_ck`` are sums of n terms) and make its repair ill posed.
    """
    return masses.shape[0] > 1 and bool(np.ptp(masses, axis=1).max() > 1e-12)


def repair_gate_weights(W, masses) -> np.ndarray:
    """Map nearly feasible partition weights onto the polytope: rows in the simplex, mass one.

    Clips and renormalises the rows of ``W`` (C x p), then restores the mass
    ``sum_ck W_ck m_ck = 1`` exactly by mixing with the gate that puts each cell's weight
    on its heaviest expert (mass too low) or lightest (too high):
    ``sum_c max_k m_ck >= 1 >= sum_c min_k m_ck``, so the mixing weight lies in [0, 1] and
    is of the order of the feasibility error of the solver that produced ``W``.
    """
    W = np.clip(W, 0.0, None)
    # A row with no positive entry (a QP answer off by more than its tolerance) would divide 0 by 0
    # and make every later iterate NaN; it carries no direction, so it restarts at the uniform row.
    W[W.sum(axis=1) <= 0] = 1.0
    W /= W.sum(axis=1, keepdims=True)
    if not mass_is_constrained(masses):
        return W
    rows = np.arange(W.shape[0])
    mass = float((W * masses).sum())
    extreme = np.zeros_like(W)
    pick = masses.argmin(axis=1) if mass > 1 else masses.argmax(axis=1)
    extreme[rows, pick] = 1.0
    m_ext = float((extreme * masses).sum())
    if mass != 1.0 and m_ext != mass:
        s = min(max((mass - 1.0) / (mass - m_ext), 0.0), 1.0)
        W = (1 - s) * W + s * extreme
    return W


def _fw_gap(G, W, cs: _CellStructure) -> float:
    """Frank-Wolfe gap ``<G, W> - min_S <G, S>`` over the gate polytope (certifies W).

    With the mass constraint, ``min_S <G, S>`` is bounded below by the Lagrangian dual
    ``h(mu) = mu + sum_c min_k (G_ck - mu m_ck)`` for every ``mu`` (weak duality), so
    the gap returned is an upper bound whatever the accuracy of ``mu``. ``h`` is concave
    and piecewise linear with slope ``1 - sum_c m_{c, k_c(mu)}``; bisection on the sign
    of the slope finds its maximiser to machine precision.
    """
    value = float((G * W).sum())
    if not cs.mass_constrained:
        return value - float(G.min(axis=1).sum())
    m = cs.masses
    rows = np.arange(G.shape[0])

    def slope(mu):
        return 1.0 - float(m[rows, (G - mu * m).argmin(axis=1)].sum())

    def h(mu):
        return mu + float((G - mu * m).min(axis=1).sum())

    a, b = -1.0, 1.0
    while slope(a) < 0 and a > -1e300:
        a *= 2.0
    while slope(b) > 0 and b < 1e300:
        b *= 2.0
    for _ in range(2100):
        mid = 0.5 * (a + b)
        if mid in (a, b):
            break
        if slope(mid) > 0:
            a = mid
        else:
            b = mid
    return value - max(h(a), h(b))


def _newton_qp(qp: PolytopeQP, G, blocks, W, mu, cs: _CellStructure) -> np.ndarray:
    """Minimise ``<G, S - W> + 1/2 (S - W)' (H + mu I) (S - W)`` over the gate polytope."""
    from scipy import sparse

    C, p = G.shape
    Hm = sparse.block_diag(blocks, format="csc") + mu * sparse.eye(C * p, format="csc")
    return repair_gate_weights(qp.solve(Hm, G.ravel() - Hm @ W.ravel()).reshape(C, p), cs.masses)


def _descend(v, cs: _CellStructure, W, f: float, G, d):
    """Backtracking (Armijo) search for ``min_t -sum_x v log q_{W + t d}`` from ``t = 1``.

    Returns ``(W + t d, q, objective, t)`` for the first accepted ``t``, or None.
    """
    if d is None:
        return None
    slope = float((G * d).sum())
    # A slope of rounding size (e.g. a step that only restores the mass) is tried too.
    if not slope < ROUNDING * abs(f):
        return None

    def trial(step):
        W_try = W + step * d
        q_try = cs.model(W_try)
        return W_try, q_try, _objective(v, q_try)

    def accept(candidate, step):
        # Near the optimum the Newton decrease (~ gap^2) falls below the rounding of the
        # objective: a step that does not increase it beyond rounding is accepted, and
        # the Frank-Wolfe gap at the new point decides whether it helped.
        return candidate[2] <= f + ARMIJO * step * min(slope, 0.0) + ROUNDING * abs(f)

    found, step = backtrack(trial, accept, min_step=1e-12)
    return None if found is None else (*found, step)


#: Share of the uniform weights mixed into a warm start of :func:`fit_gate_weights`.
_INTERIOR = 1e-3


def fit_gate_weights(v, P, labels, n_cells, *, W0=None, tol: float = 1e-12, max_iter: int = 100) -> GateWeightsFit:
    """Minimise ``-sum_x v(x) log q_W(x)``, ``q_W(x) = sum_k W[cell(x), k] P_k(x)``.

    Over gate weights ``W`` (C x p) with rows in the simplex and model mass
    ``sum_c sum_k W_ck P_k(cell c) = 1`` (implied when ``C = 1``). This is the restricted
    best response for ``v = D_lam``: it equals ``min KL(D_lam || q_W)`` up to the
    constant ``-H(D_lam)``.

    Method: projected Newton. The Hessian is block diagonal over cells,
    ``H_c = sum_{x in c} v(x) / q(x)^2 P(x) P(x)'``; each step solves the QP
    ``min <G, d> + 1/2 d' (H + mu I) d`` over the polytope with Clarabel, followed by a
    backtracking (Armijo) line search, with a Levenberg-Marquardt ``mu`` adapted to the
    step's success; the Newton step is polished on the face the QP picks, and the QP's
    own step is taken when the polished one makes no strict progress. It stops when the
    Frank-Wolfe gap ``<G, W> - min_S <G, S>`` (an upper bound on the suboptimality, by
    convexity) is at most ``tol``, or when three
    steps have not shrunk it (its rounding floor; typically 1e-13..1e-11 nats).

    Returns
    -------
    GateWeightsFit
        ``status`` other than ``"optimal"``: the iteration limit or the rounding floor
        of the gap was reached first.
    """
    cs = _CellStructure(P, labels, n_cells)
    qp = cs.polytope()
    p = P.shape[0]
    if W0 is None:
        W = np.full((n_cells, p), 1.0 / p)
    else:
        # A warm start is pulled slightly into the interior: a weight at exactly zero where v now has
        # mass (the previous lam left that domain out) makes q tiny there, the Hessian v / q^2 huge,
        # and the Newton steps stall with a Frank-Wolfe gap of 1e20 (seen on the excess instance of
        # cached text windows, experts e^50 apart on single windows).
        W = repair_gate_weights((1 - _INTERIOR) * np.asarray(W0, dtype=np.float64) + _INTERIOR / p, cs.masses)
    q = cs.model(W)
    f = _objective(v, q)
    if not np.isfinite(f):
        W = np.full((n_cells, p), 1.0 / p)
        q = cs.model(W)
        f = _objective(v, q)
    mu = 1e-10
    gap = float("inf")
    gaps = []
    it = 0
    for it in range(1, max_iter + 1):
        r = np.divide(v, q, out=np.zeros_like(v), where=v > 0)
        G = -cs.cell_sums(P * r)
        gap = _fw_gap(G, W, cs)
        gaps.append(gap)
        # Stop at the tolerance, or at the rounding floor: three steps that did not shrink an
        # already tiny gap. Far from the optimum the Frank-Wolfe gap is not monotone along
        # Newton steps, so a stall there is no reason to stop.
        stalled = len(gaps) > 3 and gap >= gaps[-4] and gap <= _STALL_GAP * max(1.0, abs(f))
        if gap <= tol or stalled:
            break
        weight = np.divide(r, q, out=np.zeros_like(v), where=v > 0)
        blocks = [(P[:, idx] * weight[idx]) @ P[:, idx].T for idx in cs.members]
        S = _newton_qp(qp, G, blocks, W, mu * max(1.0, max(np.trace(b) for b in blocks)), cs)
        trial = _descend(v, cs, W, f, G, face_step_simplices(G, blocks, W, S, cs.masses, cs.mass_constrained))
        if trial is None or trial[2] > f - ROUNDING * abs(f):
            # The polished step made no strict progress: its face can be wrong when the QP
            # raises a weight from zero by less than the active threshold (near-disjoint
            # experts, where that weight is all a domain's outcomes have). The QP's own step
            # then moves it; it is kept only when it does strictly better.
            plain = _descend(v, cs, W, f, G, S - W)
            if plain is not None and (trial is None or plain[2] < trial[2] - ROUNDING * abs(f)):
                trial = plain
        if trial is None:
            # No descent left at working precision: the Frank-Wolfe gap is the final word.
            break
        W_try, q_try, f_try, step = trial
        W, q, f = W_try, q_try, f_try
        mu = damping(mu, step)
    else:
        r = np.divide(v, q, out=np.zeros_like(v), where=v > 0)
        gap = _fw_gap(-cs.cell_sums(P * r), W, cs)
    status = Certificate.of(f - gap, f, tol).status
    return GateWeightsFit(W=W, q=q, objective=f, fw_gap=gap, iterations=it, status=status, tol=tol)
