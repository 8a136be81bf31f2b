"""Algorithm 1's convergence rate: measured certificate gap against ``sqrt(log p / T)``."""

from __future__ import annotations

import numpy as np

from theory.bounds import algorithm1_rate
from theory.claims import solvers
from theory.claims.instances import Instance
from theory.claims.record import UPPER, Check

#: A fitted log-log slope up to this much above -1/2 still counts as the claimed rate.
SLOPE_TOL = 0.1
#: The slope is fitted on the last part of the run, from this fraction of T onwards.
FIT_FROM = 0.01


def fitted_slope(steps, gaps) -> float:
    """Least-squares slope of ``log gap`` against ``log T`` (positive gaps only)."""
    steps = np.asarray(steps, dtype=np.float64)
    gaps = np.asarray(gaps, dtype=np.float64)
    keep = gaps > 0
    return float(np.polyfit(np.log(steps[keep]), np.log(gaps[keep]), 1)[0])


def check_alg1_rate(inst: Instance, iterations: int) -> list[Check]:
    """Algorithm 1: does the certified gap of its averaged iterates decay like ``T^(-1/2)``?

    Runs ``theory.fixed_point.solve_fixed_point`` for ``iterations`` steps and reads its
    history (gap per recorded step). The slope of ``log gap`` against ``log T`` over the
    last part of the run must be at most ``-1/2 + SLOPE_TOL``; the constant
    ``max_T gap_T / sqrt(log p / T)`` is recorded.
    """
    res = solvers.fixed_point(inst.D, inst.P, iterations=iterations, tol=0.0)
    history = res.history
    gaps = np.asarray(history["gap"], dtype=np.float64)
    steps = np.asarray(history.get("iteration", np.arange(1, gaps.size + 1)), dtype=np.float64)
    late = steps >= FIT_FROM * steps.max()
    slope = fitted_slope(steps[late], gaps[late])
    constant = float(np.max(gaps[late] / algorithm1_rate(inst.p, steps[late])))
    return [Check("log-log slope of the gap <= -1/2", UPPER, -0.5 + SLOPE_TOL, slope,
                  quantities={"slope": slope, "constant": constant, "final_gap": float(gaps[-1]),
                              "iterations": int(steps.max()), "p": inst.p, "n": inst.n})]
