"""Thm 9, generalisation of a gate learned from samples, with partition gate classes."""

from __future__ import annotations

import numpy as np

from theory.bounds import expert_constants, generalisation_bound, partition_rademacher
from theory.claims import solvers
from theory.claims.instances import Instance
from theory.claims.record import UPPER, Check
from theory.divergences import cross_entropy

#: Confidence parameter of the bound (it holds with probability at least 1 - delta).
DELTA = 0.05
#: Monte-Carlo draws of the Rademacher signs per sample.
RADEMACHER_DRAWS = 200


def random_partition(n: int, c: int, rng) -> np.ndarray:
    """A partition of n outcomes into c non-empty cells (random, balanced)."""
    return rng.permutation(np.arange(n) % c)


def check_thm9(inst: Instance, m: int, cells, rng, *, delta: float = DELTA,
               draws: int = RADEMACHER_DRAWS) -> list[Check]:
    """Thm 9: population minus empirical cross-entropy of a learned gate, against the bound.

    Draws ``m`` samples per domain, learns the robust gate of the partition class on the
    empirical domains (``solve_robust(family="partition")``), and compares, per domain,
    ``CE(D_k, pi_g) - CE(Dhat_k, pi_g)`` with
    ``2 sqrt2 C e^M R_k(G) + M sqrt(log(p/delta) / (2m))``; R_k is the empirical
    Rademacher complexity of the class on domain k's sample (exact sup per sign draw).
    The theorem holds with probability ``1 - delta`` simultaneously for all k; the check
    records the worst domain.
    """
    p, n = inst.p, inst.n
    cells = np.asarray(cells, dtype=np.intp)
    n_cells = int(cells.max()) + 1
    samples = np.stack([rng.choice(n, size=m, p=inst.D[k]) for k in range(p)])
    counts = np.stack([np.bincount(samples[k], minlength=n) for k in range(p)])
    empirical = counts / m
    res = solvers.robust(empirical, inst.P, family="partition", cells=cells)
    gap = cross_entropy(inst.D, res.q) - cross_entropy(empirical, res.q)
    M, C = expert_constants(inst.P)
    R = np.array([partition_rademacher(cells[samples[k]], n_cells, p, draws, rng) for k in range(p)])
    bound = generalisation_bound(R, np.full(p, m), M, C, p, delta)
    k = int(np.argmin(bound - gap))
    q = {"m": m, "cells": n_cells, "gap": gap, "bound": bound, "rademacher": R, "M": M, "C": C,
         "lam_hat": res.lam, "gap_lam_hat": float(res.lam @ gap), "bound_lam_hat": float(res.lam @ bound),
         "solver_gap": res.gap}
    return [Check("population - empirical CE <= Thm 9 bound (worst domain)", UPPER, bound[k], gap[k], quantities=q)]
