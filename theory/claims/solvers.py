"""The suite's solvers, imported when first used.

The claims only consume solver results (value, least-favourable mixture, gated model
and certified gap); importing lazily keeps :mod:`theory.claims` importable on its own.
"""

from __future__ import annotations

import importlib

#: Tolerance requested from the exact solvers (certified gap, nats).
SOLVER_TOL = 1e-10


def robust(D, P, **options):
    """``theory.solve_robust(D, P, **options)`` at :data:`SOLVER_TOL` (dual solver by default)."""
    options.setdefault("tol", SOLVER_TOL)
    return importlib.import_module("theory").solve_robust(D, P, **options)


def best_response(D, P, lam, **options):
    """``theory.best_response``: the gated model minimising ``KL(D_lam || q)`` over G1."""
    return importlib.import_module("theory").best_response(D, P, lam, **options)


def fixed_point(D, P, **options):
    """``theory.fixed_point.solve_fixed_point``: the paper's Algorithm 1 with its history."""
    return importlib.import_module("theory.fixed_point").solve_fixed_point(D, P, **options)
