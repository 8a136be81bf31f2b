"""Thm 9, generalisation of a gate learned from samples, with partition gate classes."""

from __future__ import annotations

import numpy as np

from theory.bounds import concentration_term, expert_constants, generalisation_bound, partition_rademacher
from theory.claims import solvers
from theory.claims.instances import Instance
from theory.claims.record import UPPER, Check
from theory.divergences import cross_entropy

#: Confidence parameter of the bound (it holds with probability at least 1 - delta).
DELTA = 0.05
#: Monte-Carlo draws of the Rademacher signs per sample.
RADEMACHER_DRAWS = 200
#: Points per edge of the simplex lattice searched for the worst gate of a cell.
LATTICE = {2: 400, 3: 60}
#: The false variant of the bound: the gate-complexity (Rademacher) term dropped.
NO_RADEMACHER = "Rademacher (gate-complexity) term dropped"


def random_partition(n: int, c: int, rng) -> np.ndarray:
    """A partition of n outcomes into c non-empty cells (random, balanced)."""
    return rng.permutation(np.arange(n) % c)


def wide_hull_instance(p: int, n: int, floor: float, rng) -> Instance:
    """Experts on disjoint blocks with a uniform floor: a wide pointwise hull at a given M.

    ``pi_j = (1 - floor) U(block j) + floor U(all)``, so ``min_j pi_j = floor / n`` and
    ``M = log(n / floor)``, while ``max_j pi_j / min_j pi_j`` is about ``p / floor``:
    gates can move log q by nearly ``M - log(n / p)`` on every outcome. Domains are
    broad Dirichlet draws, so m samples leave most outcomes unseen when m << n.
    """
    block = np.minimum((np.arange(n) * p) // n, p - 1)
    own = (block[None, :] == np.arange(p)[:, None]).astype(np.float64)
    P = (1 - floor) * own / own.sum(axis=1, keepdims=True) + floor / n
    D = rng.dirichlet(np.full(n, 5.0), size=p)
    return Instance(D=D, P=P / P.sum(axis=1, keepdims=True), regime="wide-hull",
                    params={"floor": float(floor)})


def simplex_lattice(p: int, points: int) -> np.ndarray:
    """All weight vectors ``i / points`` on the p-simplex (vertices included)."""
    if p == 1:
        return np.ones((1, 1))
    grids = np.stack(np.meshgrid(*[np.arange(points + 1)] * (p - 1), indexing="ij"), -1).reshape(-1, p - 1)
    grids = grids[grids.sum(axis=1) <= points]
    return np.hstack([grids, points - grids.sum(axis=1, keepdims=True)]) / points


def worst_partition_gap(diff, cells, P, lattice) -> float:
    """``sup_W sum_x diff(x) (-log q_W(x))`` over partition gates, ``q_W(x) = sum_j W[c(x), j] pi_j(x)``.

    ``diff = D - Dhat``, so the objective is population minus empirical cross-entropy.
    It is invariant to rescaling q (``sum diff = 0``), so the mass constraint does not
    bind and the class is the one whose Rademacher complexity
    :func:`theory.bounds.partition_rademacher` measures. The objective separates over
    cells; each cell's maximum is searched on a simplex lattice, so the value is a
    lower estimate of the sup, attained by an actual gate of the class.
    """
    total = 0.0
    for c in np.unique(cells):
        x = cells == c
        logs = np.log(lattice @ P[:, x])
        total += float((-(logs @ diff[x])).max())
    return total


def check_thm9(inst: Instance, m: int, cells, rng, *, delta: float = DELTA,
               draws: int = RADEMACHER_DRAWS, learned: bool = True) -> list[Check]:
    """Thm 9: population minus empirical cross-entropy of gates of a partition class, against the bound.

    Draws ``m`` samples per domain and compares, per domain,
    ``CE(D_k, pi_g) - CE(Dhat_k, pi_g)`` with
    ``2 sqrt2 C e^M R_k(G) + M sqrt(log(p/delta) / (2m))``; R_k is the empirical
    Rademacher complexity of the class on domain k's sample (exact sup per sign draw).
    Two gates: the robust gate learned on the empirical domains
    (``solve_robust(family="partition")``, when ``learned``) and the worst gate of the
    class for each domain (:func:`worst_partition_gap`), which the uniform bound must
    cover too. The theorem holds with probability ``1 - delta`` simultaneously for all
    k; each check records the worst domain. The false variant drops the gate-complexity
    term: where it is rejected, that term is what makes the bound hold.
    """
    p, n = inst.p, inst.n
    cells = np.asarray(cells, dtype=np.intp)
    n_cells = int(cells.max()) + 1
    samples = np.stack([rng.choice(n, size=m, p=inst.D[k]) for k in range(p)])
    counts = np.stack([np.bincount(samples[k], minlength=n) for k in range(p)])
    empirical = counts / m
    M, C = expert_constants(inst.P)
    R = np.array([partition_rademacher(cells[samples[k]], n_cells, p, draws, rng) for k in range(p)])
    bound = generalisation_bound(R, np.full(p, m), M, C, p, delta)
    conc = concentration_term(np.full(p, m), M, p, delta)
    lattice = simplex_lattice(p, LATTICE.get(p, 20))
    worst = np.array([worst_partition_gap(inst.D[k] - empirical[k], cells, inst.P, lattice) for k in range(p)])
    base = {"m": m, "cells": n_cells, "bound": bound, "concentration": conc, "rademacher": R, "M": M, "C": C,
            "worst_gap": worst, "regime": inst.regime}
    out = []
    if learned:
        res = solvers.robust(empirical, inst.P, family="partition", cells=cells)
        gap = cross_entropy(inst.D, res.q) - cross_entropy(empirical, res.q)
        out.append(_check("learned robust gate: population - empirical CE <= Thm 9 bound (worst domain)", gap,
                          bound, conc, {**base, "gap": gap, "lam_hat": res.lam, "gap_lam_hat": float(res.lam @ gap),
                                        "solver_gap": res.gap}))
    out.append(_check("worst gate of the class: population - empirical CE <= Thm 9 bound (worst domain)", worst,
                      bound, conc, base))
    return out


def _check(part, gap, bound, conc, q) -> Check:
    k = int(np.argmin(bound - gap))
    j = int(np.argmin(conc - gap))
    return Check(part, UPPER, bound[k], gap[k], quantities=q, variant=NO_RADEMACHER, variant_bound=conc[j],
                 variant_truth=gap[j])
