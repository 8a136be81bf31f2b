"""Gaussian-mixture domains: the exact robust gate on a grid and the primal-dual fit on samples.

Each of p domains is a 1-D Gaussian mixture; each expert is a Gaussian mixture with
fewer components fitted (EM) on samples of its domain, so ``eps_k > 0``. The
monolithic model is one Gaussian mixture with as many components as all experts
together, fitted on the pooled samples at even weights.

- Exact: domains, experts and the monolithic fit are discretised on a fine grid with
  two tail cells (exact cell masses, :func:`synthetic.gaussian.grid_instance`) and the
  robust gate is :func:`theory.solve_robust` on that finite instance.
- Stochastic: :func:`modular.fit_robust_gate` with an MLP gate reading x, on ``m``
  samples of each domain and of each expert (continuous log-densities), with the
  domains' differential entropies (Monte Carlo) so the adversary plays the KL game.
"""

from __future__ import annotations

import numpy as np
import torch

from modular import MLPGate, fit_robust_gate, sample_set
from synthetic.experiments.common import sha256_array, single_thread_torch
from synthetic.gaussian import Grid, discretisation_report, fit_gmm_expert, grid_instance, random_mixture
from theory import kl, solve_robust


def gaussian_mixture_robust(config: dict) -> dict:
    """Exact grid solution and primal-dual fit on samples for 1-D Gaussian-mixture domains.

    config: ``p``, ``components`` (per domain), ``expert_components``, ``spread``,
    ``m_fit`` (samples per domain to fit the experts and the monolithic model), ``m``
    (samples per domain and per expert for the primal-dual), ``m_entropy`` (Monte
    Carlo samples for the entropies), ``grid`` (lo, hi, cells), ``steps``,
    ``batch_size``, ``lr``, ``lam_lr``, ``seed``.
    """
    p, seed = config["p"], config["seed"]
    domains = [random_mixture(1, config["components"], seed=seed * 100 + k, spread=config["spread"], name=f"D{k}")
               for k in range(p)]
    train = [d.sample(config["m_fit"], seed * 100 + 10 + k) for k, d in enumerate(domains)]
    experts = [fit_gmm_expert(x, config["expert_components"], seed=seed, name=f"expert {k}")
               for k, x in enumerate(train)]
    mono = fit_gmm_expert(np.vstack(train), p * config["expert_components"], seed=seed, name="monolithic")
    lo, hi, cells = config["grid"]
    grid = Grid.regular(lo, hi, cells)
    inst = grid_instance(domains, experts, grid)
    exact = solve_robust(inst.D, inst.P, tol=1e-9)
    q_mono = grid_instance(domains, [mono] * p, grid).P[0]
    report = discretisation_report(domains, experts, inst, seed=seed)

    xs = [d.sample(config["m"], seed * 100 + 20 + k) for k, d in enumerate(domains)]
    ys = [e.sample(config["m"], seed * 100 + 30 + k) for k, e in enumerate(experts)]
    H = np.array([-d.logpdf(d.sample(config["m_entropy"], seed * 100 + 40 + k)).mean()
                  for k, d in enumerate(domains)])

    def logp(x):
        return np.column_stack([e.logpdf(x) for e in experts])

    dom_sets = [sample_set(logp(x), x, name=f"domain {k}") for k, x in enumerate(xs)]
    exp_sets = [sample_set(logp(y), y, name=f"expert {k}") for k, y in enumerate(ys)]
    pooled = np.vstack(xs)
    with single_thread_torch():
        torch.manual_seed(seed)
        gate = MLPGate(1, p, hidden=32, depth=2, mean=pooled.mean(0), std=pooled.std(0))
        fit = fit_robust_gate(gate, dom_sets, exp_sets, entropies=H, adversary="kl", steps=config["steps"],
                              batch_size=config["batch_size"], lr=config["lr"], lam_lr=config["lam_lr"], seed=seed)

    centres = grid.centres()[:, 0]
    width = np.diff(grid.edges[0])
    inner = slice(1, -1)  # the grid cells, without the two tail cells
    curves = [{"x": float(x), **{f"domain_{k}": float(domains[k].pdf([x])[0]) for k in range(p)},
               **{f"expert_{k}": float(experts[k].pdf([x])[0]) for k in range(p)},
               "robust_gate": float(qx / w), "monolithic": float(mx / w)}
              for x, qx, mx, w in zip(centres, exact.q[inner], q_mono[inner], width)]
    rows = [{"seed": seed, "domain": k, "eps_grid": float(report.kl_grid[k]),
             "eps_continuous": float(report.kl_continuous[k]),
             "robust_kl_exact_grid": float(exact.kl[k]), "monolithic_kl_grid": float(kl(inst.D[k], q_mono)),
             "robust_kl_primal_dual": float(fit.kl[k]), "lam_star": float(exact.lam[k]), "lam_fit": float(fit.lam[k]),
             "robust_value_exact_grid": exact.value, "robust_value_primal_dual": fit.value, "z_fit": fit.z,
             "z_estimator": fit.z_estimator, "outside_mass": float(report.outside_mass_domain[k])}
            for k in range(p)]
    checks = {f"gmm/s{seed}/train_{k}": sha256_array(x) for k, x in enumerate(train)}
    checks.update({f"gmm/s{seed}/fit_samples_{k}": sha256_array(x) for k, x in enumerate(xs)})
    return {"rows": rows, "curves": curves, "checksums": checks}
