"""Reference solutions of the gate problems by conic programming (cvxpy + Clarabel)."""

from __future__ import annotations

import math
import time
import warnings

import cvxpy as cp
import numpy as np
import scipy.sparse as sp

from theory.best_response import cell_masses, repair_gate_weights
from theory.certificate import dual_function
from theory.divergences import kl, mixture as mix
from theory.errors import InvalidOptionError, SolverFailedError
from theory.gates import constant_gate, gate_from_q, partition_gate, pointwise_hull, require_nonempty_G1
from theory.options import as_prior, check_family, check_tol
from theory.prior import nearest_in_prior
from theory.result import INACCURATE, OPTIMAL, Certificate, SolverResult
from theory.simplex import project_capped_simplex
from theory.validation import as_instance, as_weights

#: Clarabel settings tried in turn: its defaults (1e-8) leave certified gaps near 1e-7
#: nats, so tighter tolerances come first; when Clarabel stalls on them (it does on some
#: polytope priors) the next, looser setting is tried.
CLARABEL_ATTEMPTS = (
    {"tol_gap_abs": 1e-10, "tol_gap_rel": 1e-10, "tol_feas": 1e-10},
    {"tol_feas": 1e-10},
    {},
)


class _GatedModel:
    """The gated model ``q`` as an affine cvxpy expression of the gate-family variables.

    Full family: ``q = l + (u - l) s`` with ``0 <= s <= 1``, one variable per outcome
    with ``l < u`` instead of the n x p gate of DESIGN 2.3 (every ``q`` of the hull is
    realised by a gate, see :func:`theory.gates.gate_from_q`).
    Constant family: ``q = P^T w`` with ``w`` in the simplex. Partition family:
    ``q(x) = sum_k W[c(x), k] P_k(x)`` with the rows of ``W`` (C x p) in the simplex.
    """

    def __init__(self, P, family, cells):
        p, n = P.shape
        self.P, self.family, self.cells = P, family, cells
        self.constraints = []
        if family == "full":
            lo, hi = pointwise_hull(P)
            self.lo, self.hi = lo, hi
            free = hi > lo
            self.free = np.flatnonzero(free)
            if self.free.size == 0:
                self.var, self.expr = None, cp.Constant(lo)
                return
            # q = l + (u - l) s with s in [0, 1]: boxes as narrow as 1e-9 (near-identical
            # experts) stay well conditioned for the interior-point solver.
            width = (hi - lo)[free]
            self.var = cp.Variable(self.free.size, bounds=[0.0, 1.0])
            scale = sp.csr_matrix((width, (self.free, np.arange(self.free.size))), shape=(n, self.free.size))
            self.expr = scale @ self.var + lo
            self.constraints += [width @ self.var == 1 - lo.sum()]
        elif family == "constant":
            self.var = cp.Variable(p, nonneg=True)
            self.expr = P.T @ self.var
            self.constraints += [cp.sum(self.var) == 1]
        else:
            C = int(cells.max()) + 1
            self.var = cp.Variable((C, p), nonneg=True)
            rows = np.repeat(np.arange(n), p)
            cols = (cells[:, None] * p + np.arange(p)[None, :]).ravel()
            spread = sp.csr_matrix((P.T.ravel(), (rows, cols)), shape=(n, C * p))
            self.expr = spread @ cp.vec(self.var, order="C")
            self.constraints += [cp.sum(self.var, axis=1) == 1, cp.sum(self.expr) == 1]

    def kl_terms(self, target):
        """``sum_x rel_entr(target(x), q(x))`` over the support of ``target``."""
        support = np.flatnonzero(target > 0)
        return cp.sum(cp.rel_entr(target[support], self.expr[support]))

    def solution(self):
        """The numerical ``(q, gate, mass)``: variables pushed back into the family.

        Conic solvers return points feasible to about 1e-10; the full family is projected
        onto the hull cut by ``sum q = 1`` (:func:`project_capped_simplex`), gate weights
        are clipped to be non-negative and renormalised, and a partition gate is moved
        (by ~1e-10) to give mass one exactly (:func:`theory.best_response.repair_gate_weights`).
        ``mass`` is ``sum q`` before that correction (only the partition family can miss one).
        """
        if self.family == "full":
            if self.var is None:
                return self.lo.copy(), gate_from_q(self.lo, self.P), float(self.lo.sum())
            y = np.asarray(self.expr.value, dtype=np.float64)
            q = project_capped_simplex(y, self.lo, self.hi)
            return q, gate_from_q(q, self.P), float(q.sum())
        if self.family == "constant":
            w = np.maximum(np.asarray(self.var.value, dtype=np.float64), 0.0)
            w /= w.sum()
            return w @ self.P, constant_gate(w, self.P.shape[1]), 1.0
        W = np.maximum(np.asarray(self.var.value, dtype=np.float64), 0.0)
        W /= W.sum(axis=1, keepdims=True)
        masses = cell_masses(self.P, self.cells, W.shape[0])
        mass = float((W * masses).sum())
        W = repair_gate_weights(W, masses)
        gate = partition_gate(W, self.cells)
        return np.einsum("nk,kn->n", gate, self.P), gate, mass


def _solve(problem, solver, solver_options):
    """Solve ``problem``, trying the settings in turn; return (cvxpy status, settings used).

    Stops at the first ``optimal`` status; otherwise falls back to the first setting that
    gave ``optimal_inaccurate``, else to the first that stopped at its iteration limit
    (``user_limit``) with a finite point: the certificate of that point then decides the
    status (on subnormal instances Clarabel stalls there while its point is already
    within 1e-3 relative). Raises :class:`SolverFailedError` when none gave a point.
    """
    attempts = (solver_options,) if solver_options is not None else (CLARABEL_ATTEMPTS if solver == "CLARABEL" else ({},))
    failure, inaccurate, limited = "no attempt", None, None
    for options in attempts:
        try:
            with warnings.catch_warnings():
                # Reduced accuracy is reported through the result's status instead.
                warnings.filterwarnings("ignore", message="Solution may be inaccurate")
                problem.solve(solver=solver, **options)
        except cp.SolverError as exc:
            failure = f"failed ({exc})"
            continue
        failure = f"returned status {problem.status!r}"
        if problem.status == cp.OPTIMAL:
            return problem.status, options
        if problem.status == cp.OPTIMAL_INACCURATE and inaccurate is None:
            inaccurate = options
        if problem.status == cp.USER_LIMIT and limited is None and _has_finite_point(problem):
            limited = options
    fallback = inaccurate if inaccurate is not None else limited
    if fallback is None:
        raise SolverFailedError(f"cvxpy/{solver} {failure}; no solution to report")
    if options is not fallback:  # the last attempt's point is not the fallback's: solve it again
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Solution may be inaccurate")
            problem.solve(solver=solver, **fallback)
    return problem.status, fallback


def _has_finite_point(problem) -> bool:
    """Whether every variable of ``problem`` holds a finite value (a stopped solver may leave none)."""
    return all(v.value is not None and np.isfinite(v.value).all() for v in problem.variables())


def solve_cvxpy(
    D,
    P,
    *,
    prior=None,
    family: str = "full",
    cells=None,
    mixture=None,
    solver: str = "CLARABEL",
    validate: bool = True,
    tol: float | None = None,
    solver_options: dict | None = None,
) -> SolverResult:
    """Solve the robust gate problem, or a fixed-mixture one, as one convex program.

    Robust (``mixture=None``): ``min_{q in F} max_{lam in Lambda} sum_k lam_k KL(D_k || q)``
    for the gate family ``F``. Over the simplex this is the epigraph program
    ``min t`` s.t. ``sum_x rel_entr(D_k(x), q(x)) <= t`` for every k. For
    ``Lambda = {lam : lo <= lam <= hi, A lam <= b, 1.lam = 1}`` the inner maximum is a
    linear program whose dual, ``min s + hi.alpha - lo.beta + b.y`` subject to
    ``KL_k <= s + alpha_k - beta_k + (A^T y)_k``, ``alpha, beta, y >= 0``, keeps the whole
    problem one convex program. ``lam*`` is the dual vector of the ``p`` epigraph
    constraints (normalised, and moved into Lambda if the solver left it outside by
    rounding).

    Fixed mixture (``mixture=lam``): ``min_{q in F} KL(D_lam || q)``.

    KLs are recomputed in float64 numpy from the returned ``q``. Certificate:
    ``upper`` = the recomputed objective (= ``value``), ``lower = phi(lam*)``, the exact
    dual function evaluated by the best response; ``gap = upper - lower``.

    Parameters
    ----------
    D, P : array_like (p, n)
        Domains and experts, rows in the simplex.
    prior : PriorSet, optional
        Lambda; the simplex when None.
    family : {"full", "constant", "partition"}
    cells : array_like (n,) of int, optional
        Partition of the outcomes (required by, and only with, ``family="partition"``).
    mixture : array_like (p,), optional
        Solve the fixed-mixture problem for these weights instead.
    solver : str
        cvxpy solver name; Clarabel is the reference (SCS is inaccurate here, ~1e-4).
    validate : bool
        Check the inputs (skip only for inputs already validated).
    tol : float, optional
        When given, a certified gap above it gives status ``"inaccurate"``.
    solver_options : dict, optional
        Passed to the solver; by default Clarabel runs with :data:`CLARABEL_ATTEMPTS`.

    Returns
    -------
    SolverResult
        ``solver="cvxpy"``; ``info`` holds the family, the cvxpy status, the solver
        name and the mass of the gated model before normalisation.

    Raises
    ------
    InputError
        Bad distributions, shapes, options, an empty G1 or an infeasible Lambda.
    SolverFailedError
        The conic solver returned no point: neither an optimal nor an inaccurate-optimal
        status, nor a finite point at its iteration limit.
    """
    start = time.perf_counter()
    if tol is not None:
        tol = check_tol(tol)
    D, P = as_instance(D, P, check=validate)
    p, n = D.shape
    cells = check_family(family, cells, n)
    prior = as_prior(prior, p)
    if family != "constant":
        require_nonempty_G1(P)
    if solver not in cp.installed_solvers():
        raise InvalidOptionError(f"cvxpy solver {solver!r} is not installed; installed: {', '.join(cp.installed_solvers())}")

    model = _GatedModel(P, family, cells)
    constraints = list(model.constraints)
    epigraph = None
    if mixture is not None:
        lam = as_weights(mixture, p, "mixture")
        objective = model.kl_terms(mix(lam, D))
    else:
        kls = cp.hstack([model.kl_terms(D[k]) for k in range(p)])
        if prior.is_simplex:
            t = cp.Variable()
            epigraph = kls <= t
            objective = t
        else:
            lo, hi = prior.bounds()
            s = cp.Variable()
            bound, objective = s * np.ones(p), s
            # Bounds that the simplex already implies (lo = 0, hi = 1) get no multiplier.
            capped, floored = np.flatnonzero(hi < 1), np.flatnonzero(lo > 0)
            if capped.size:
                alpha = cp.Variable(capped.size, nonneg=True)
                bound = bound + sp.csr_matrix((np.ones(capped.size), (capped, np.arange(capped.size))), shape=(p, capped.size)) @ alpha
                objective = objective + hi[capped] @ alpha
            if floored.size:
                beta = cp.Variable(floored.size, nonneg=True)
                bound = bound - sp.csr_matrix((np.ones(floored.size), (floored, np.arange(floored.size))), shape=(p, floored.size)) @ beta
                objective = objective - lo[floored] @ beta
            if prior.A is not None:
                y = cp.Variable(prior.A.shape[0], nonneg=True)
                bound = bound + prior.A.T @ y
                objective = objective + prior.b @ y
            epigraph = kls <= bound
        constraints.append(epigraph)
    problem = cp.Problem(cp.Minimize(objective), constraints)
    if family == "full" and model.free.size == 0:
        # Every expert agrees on every outcome: the hull is one point and nothing is solved.
        status_text, options, iterations, conic_value = "single point", {}, 0, math.nan
    else:
        status_text, options = _solve(problem, solver, solver_options)
        iterations, conic_value = int(problem.solver_stats.num_iters or 0), float(problem.value)

    q, gate, mass = model.solution()
    kls_np = kl(D, q)
    if mixture is None:
        if status_text == "single point":
            lam = prior.argmax_linear(kls_np)
        else:
            lam = np.maximum(np.asarray(epigraph.dual_value, dtype=np.float64), 0.0)
            lam = nearest_in_prior(prior, lam / lam.sum())
        upper = prior.max_linear(kls_np)
        lower = dual_function(D, P, lam, family=family, cells=cells)[0]
    else:
        upper = kl(mix(lam, D), q)
        lower = kl(mix(lam, D), dual_function(D, P, lam, family=family, cells=cells)[1])
    if tol is None:
        # No tolerance asked for: the conic solver's own word is all there is.
        cert = Certificate.of(lower, upper, math.inf, missed=INACCURATE)
        if status_text in (cp.OPTIMAL_INACCURATE, cp.USER_LIMIT) and cert.status == OPTIMAL:
            cert = Certificate(cert.lower, cert.upper, cert.gap, INACCURATE, cert.clamped)
    else:
        # The certificate decides, whatever the conic solver's status text: Clarabel's
        # "optimal_inaccurate" with a certified gap below tol is optimal.
        cert = Certificate.of(lower, upper, tol, missed=INACCURATE)
    return SolverResult.certified(
        cert,
        warn=tol is not None,
        q=q,
        gate=gate,
        value=upper,
        lam=lam,
        kl=kls_np,
        iterations=iterations,
        seconds=time.perf_counter() - start,
        solver="cvxpy",
        tol=math.nan if tol is None else float(tol),
        info={
            "family": family,
            "problem": "robust" if mixture is None else "fixed-mixture",
            "cvxpy_status": status_text,
            "conic_solver": solver,
            "conic_objective": conic_value,
            "solver_options": str(options),
            "mass_before_correction": mass,
        },
    )
