"""The front door: one call per problem, dispatching to the exact solvers."""

from __future__ import annotations

import time

import numpy as np

from theory.divergences import kl, mixture as mix
from theory.errors import InvalidOptionError
from theory.gates import constant_gate, gate_from_q, pointwise_hull, require_nonempty_G1
from theory.options import FAMILIES, check_family, check_tol
from theory.result import Certificate, SolverResult
from theory.validation import as_instance, as_weights

#: Solvers of the robust problem.
ROBUST_SOLVERS = ("dual", "cvxpy", "fixed-point")
#: Solvers of the fixed-mixture problem.
MIXTURE_SOLVERS = ("water-fill", "cvxpy")


def _check_choice(kind: str, value: str, allowed) -> None:
    if value not in allowed:
        raise InvalidOptionError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")


def solve_robust(
    D,
    P,
    *,
    solver: str = "dual",
    family: str = "full",
    cells=None,
    prior=None,
    tol: float = 1e-9,
    **options,
) -> SolverResult:
    """Solve ``min_{g in F} max_{lam in Lambda} KL(D_lam || pi_g)`` through its linearisation.

    The value is ``min_q max_{lam in Lambda} sum_k lam_k KL(D_k || q)`` over the models
    ``q`` of the gate family ``F`` (the two games have the same value over the simplex);
    ``res.lam`` is the least-favourable mixture ``lam*`` and ``res.q`` the robust gated
    model.

    Parameters
    ----------
    D, P : array_like (p, n)
        Domains and experts, rows in the simplex.
    solver : {"dual", "cvxpy", "fixed-point"}
        ``"dual"``: concave maximisation of ``phi(lam)`` with water-filling best responses
        (:func:`theory.dual.solve_dual`); ``"cvxpy"``: the conic epigraph program
        (:func:`theory.cvx.solve_cvxpy`); ``"fixed-point"``: the paper's Algorithm 1
        (:func:`theory.fixed_point.solve_fixed_point`, full family only).
    family : {"full", "constant", "partition"}
    cells : array_like (n,) of int, optional
        The partition, required by ``family="partition"``.
    prior : PriorSet, optional
        Lambda; the simplex when None.
    tol : float
        Certified gap (nats) below which the result is ``"optimal"``.
    **options
        Passed to the solver (e.g. ``max_iter``; ``offsets`` for the dual solver's game
        shifted by per-domain constants, :func:`theory.dual.solve_dual`).

    Returns
    -------
    SolverResult
    """
    _check_choice("solver", solver, ROBUST_SOLVERS)
    _check_choice("gate family", family, FAMILIES)
    if solver == "dual":
        from theory.dual import solve_dual

        return solve_dual(D, P, prior=prior, family=family, cells=cells, tol=tol, **options)
    if solver == "cvxpy":
        from theory.cvx import solve_cvxpy

        return solve_cvxpy(D, P, prior=prior, family=family, cells=cells, tol=tol, **options)
    if family != "full":
        raise InvalidOptionError(f"solver 'fixed-point' handles the gate family 'full' only, not {family!r}")
    from theory.fixed_point import solve_fixed_point

    return solve_fixed_point(D, P, prior=prior, tol=tol, **options)


def solve_fixed_mixture(
    D,
    P,
    lam,
    *,
    solver: str = "water-fill",
    family: str = "full",
    cells=None,
    tol: float = 1e-9,
) -> SolverResult:
    """Solve ``min_{g in F} KL(D_lam || pi_g)`` for a given mixture ``lam``.

    ``"water-fill"``: for the full family the best response ``q = clip(D_lam / nu, l, u)``
    of DESIGN 2.1 (:func:`theory.best_response.water_fill`), exact; ``lower`` is the
    Lagrangian dual bound at the water level ``nu``, so the gap is rounding only. For the
    constant family the best response over static weights
    (:func:`theory.best_response.fit_gate_weights`), certified by its Frank-Wolfe gap;
    the gate is the fit's weights. The partition family needs ``"cvxpy"``, which solves
    the conic program (:func:`theory.cvx.solve_cvxpy` with ``mixture=lam``).

    Parameters
    ----------
    tol : float
        Certified gap (nats) below which the result is ``"optimal"``; above it the
        status is ``"not_converged"`` (``"inaccurate"`` for cvxpy) with a
        :class:`~theory.result.ConvergenceWarning`.

    Returns
    -------
    SolverResult
        ``value = KL(D_lam || q)`` and ``lam`` the given mixture.
    """
    _check_choice("fixed-mixture solver", solver, MIXTURE_SOLVERS)
    _check_choice("gate family", family, FAMILIES)
    if solver == "cvxpy":
        from theory.cvx import solve_cvxpy

        return solve_cvxpy(D, P, family=family, cells=cells, mixture=lam, tol=tol)
    if family == "partition":
        raise InvalidOptionError("solver 'water-fill' handles the gate families 'full' and 'constant'; use solver='cvxpy' for 'partition'")
    from theory.best_response import fit_gate_weights
    from theory.simplex import water_fill

    start = time.perf_counter()
    tol = check_tol(tol)
    D, P = as_instance(D, P)
    p, n = D.shape
    check_family(family, cells, n)
    lam = as_weights(lam, p, "mixture")
    target = mix(lam, D)
    if family == "full":
        require_nonempty_G1(P)
        lo, hi = pointwise_hull(P)
        q, nu = water_fill(target, lo, hi)
        value = kl(target, q)
        # The Lagrangian of the mass constraint at the water level nu is minimised by the
        # water-fill itself, so the dual bound differs from the value by nu (sum q - 1) only.
        # When the hull is a single point nu is arbitrary and q is the only feasible point.
        lower = value + nu * (q.sum() - 1.0) if (hi > lo).any() else value
        gate = gate_from_q(q, P)
    else:
        fit = fit_gate_weights(target, P, np.zeros(n, dtype=np.intp), 1)
        q = fit.q
        value = kl(target, q)
        # Frank-Wolfe gap of min_w KL(target || P^T w) over the simplex: the gradient is
        # -r with r_k = sum_x target(x) P_k(x) / q(x), and w . r = 1 at q = P^T w.
        ratio = np.divide(target, q, out=np.zeros_like(q), where=target > 0)
        lower = value - (float((P @ ratio).max()) - 1.0)
        gate = constant_gate(fit.W[0], n)
    return SolverResult.certified(
        Certificate.of(lower, value, tol),
        q=q,
        gate=gate,
        value=value,
        lam=lam,
        kl=kl(D, q),
        iterations=1,
        seconds=time.perf_counter() - start,
        solver="water-fill",
        tol=tol,
        info={"family": family, "problem": "fixed-mixture"},
    )
