"""Algorithm 1's convergence rate: measured certificate gap against ``sqrt(log p / T)``."""

from __future__ import annotations

import numpy as np

from theory.bounds import algorithm1_rate
from theory.claims import solvers
from theory.claims.instances import Instance
from theory.claims.record import UPPER, Check

#: A fitted log-log slope up to this much above -1/2 still counts as the claimed rate.
SLOPE_TOL = 0.1
#: A tolerance no certificate reaches after finitely many steps (the smallest positive
#: float; a zero tolerance is refused): every run takes its whole horizon T.
RUN_ALL = float(np.finfo(float).tiny)


def fitted_slope(steps, gaps) -> float:
    """Least-squares slope of ``log gap`` against ``log T`` (positive gaps only)."""
    steps = np.asarray(steps, dtype=np.float64)
    gaps = np.asarray(gaps, dtype=np.float64)
    keep = gaps > 0
    return float(np.polyfit(np.log(steps[keep]), np.log(gaps[keep]), 1)[0])


def check_alg1_rate(inst: Instance, horizons) -> list[Check]:
    """Algorithm 1: does the certified gap of its averaged iterates decay like ``T^(-1/2)``?

    One run of ``theory.fixed_point.solve_fixed_point`` per horizon T (its default step
    sizes are tuned to T, as in the theorem); the gap is the certificate of the averaged
    iterates after T steps, ``max_k KL(D_k || q_bar) - phi(lam_bar)``. The slope of
    ``log gap`` against ``log T`` must be at most ``-1/2 + SLOPE_TOL``; the constant
    ``max_T gap_T / sqrt(log p / T)`` is recorded.
    """
    horizons = np.asarray(horizons, dtype=np.int64)
    gaps = np.array([
        solvers.fixed_point(inst.D, inst.P, max_iter=int(T), record_every=int(T), tol=RUN_ALL).history["gap"][-1]
        for T in horizons
    ])
    slope = fitted_slope(horizons, gaps)
    constant = float(np.max(gaps / algorithm1_rate(inst.p, horizons)))
    return [Check("log-log slope of the gap <= -1/2", UPPER, -0.5 + SLOPE_TOL, slope,
                  variant="rate O(1/T): slope <= -1", variant_bound=-1.0 + SLOPE_TOL,
                  quantities={"slope": slope, "constant": constant, "horizons": horizons, "gaps": gaps,
                              "p": inst.p, "n": inst.n})]
