"""The suite's solvers, imported when first used.

The claims only consume solver results (value, least-favourable mixture, gated model
and certified gap); importing lazily keeps :mod:`theory.claims` importable on its own.
"""

from __future__ import annotations

import importlib
import warnings

from theory.result import ConvergenceWarning

#: Tolerance requested from the exact solvers (certified gap, nats).
SOLVER_TOL = 1e-9


def robust(D, P, **options):
    """``theory.solve.solve_robust(D, P, **options)`` at :data:`SOLVER_TOL` (dual solver by default).

    When the solver misses its tolerance the conic reference (``solver="cvxpy"``) is
    tried as well and the answer with the smaller certified gap is kept. Every check
    adds that gap to its tolerance, so tolerance warnings are not repeated here.
    """
    options.setdefault("tol", SOLVER_TOL)
    solve = importlib.import_module("theory.solve").solve_robust
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        res = solve(D, P, **options)
        if not res.converged and options.get("solver", "dual") != "cvxpy":
            # cvxpy's own accuracy warning is redundant: the reference reports its certified gap
            warnings.simplefilter("ignore", UserWarning)
            reference = solve(D, P, **{**options, "solver": "cvxpy"})
            res = reference if reference.gap < res.gap else res
    return res


def fixed_mixture(D, P, lam, **options):
    """``theory.solve.solve_fixed_mixture``: ``min_{g} KL(D_lam || pi_g)`` over a gate family, certified."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return importlib.import_module("theory.solve").solve_fixed_mixture(D, P, lam, **options)


def best_response(D, P, lam, **options):
    """``theory.best_response.best_response``: the gated model minimising ``KL(D_lam || q)`` over G1."""
    return importlib.import_module("theory.best_response").best_response(D, P, lam, **options)


def fixed_point(D, P, **options):
    """``theory.fixed_point.solve_fixed_point``: the paper's Algorithm 1 with its history.

    The claims read its certified gap (a fixed horizon is the point of a rate check), so
    a missed tolerance is not warned about here.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return importlib.import_module("theory.fixed_point").solve_fixed_point(D, P, **options)
