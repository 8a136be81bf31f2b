"""Generalisation of a gate learned from samples (Theorem 9), by sample size and gate complexity.

A finite instance (``theory.claims.instances``) with p domains on n outcomes; from ``m``
samples per domain, the robust gate of the class of partition gates with ``c`` cells
(the gate is constant on each cell of a fixed random partition of the outcomes) is
solved exactly on the empirical domains (:func:`theory.solve_robust`,
``family="partition"``). Its population and empirical cross-entropies are compared
with Theorem 9's bound ``2 sqrt2 C e^M R_k(G) + M sqrt(log(p/delta) / (2 m))`` per
domain, with the Rademacher complexity ``R_k`` of the class estimated by Monte Carlo
on domain k's sample (:mod:`theory.bounds`).
"""

from __future__ import annotations

import numpy as np

from synthetic.experiments.common import EXACT_TOL, sha256_array
from theory import cross_entropy, solve_robust
from theory.bounds import expert_constants, generalisation_bound, partition_rademacher
from theory.claims.instances import make_instance


def generalisation_point(config: dict) -> dict:
    """Empirical and population cross-entropy of the learned gate, and the bound, per domain.

    config: ``regime``, ``p``, ``n``, ``quality`` (instance, drawn with ``instance_seed``),
    ``m`` (samples per domain), ``cells``, ``draws`` (Rademacher Monte Carlo), ``delta``,
    ``seed`` (samples, partition and signs).
    """
    inst = make_instance(config["regime"], config["p"], config["n"], config["quality"],
                         np.random.default_rng(config["instance_seed"]))
    rng = np.random.default_rng(config["seed"])
    p, n, m, c = inst.p, inst.n, config["m"], config["cells"]
    cells = rng.permutation(np.arange(n) % c)
    samples = np.stack([rng.choice(n, size=m, p=inst.D[k]) for k in range(p)])
    empirical = np.stack([np.bincount(s, minlength=n) for s in samples]) / m
    res = solve_robust(empirical, inst.P, family="partition", cells=cells, tol=EXACT_TOL)
    emp, pop = cross_entropy(empirical, res.q), cross_entropy(inst.D, res.q)
    M, C = expert_constants(inst.P)
    R = np.array([partition_rademacher(cells[samples[k]], c, p, config["draws"], rng) for k in range(p)])
    bound = generalisation_bound(R, np.full(p, m), M, C, p, config["delta"])
    rows = [{"m": m, "cells": c, "seed": config["seed"], "domain": k, "empirical_ce": float(emp[k]),
             "population_ce": float(pop[k]), "gap": float(pop[k] - emp[k]), "bound": float(bound[k]),
             "rademacher": float(R[k]), "M": M, "C": C, "lam_hat": float(res.lam[k]),
             "solver_status": res.status} for k in range(p)]
    return {"rows": rows, "checksums": {
        f"generalisation/instance{config['instance_seed']}": sha256_array(np.vstack([inst.D, inst.P])),
        f"generalisation/m{m}/c{c}/s{config['seed']}/samples": sha256_array(samples)}}
