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

The fit's own ``kl`` is measured on its training samples (in-sample NLL minus the
Monte Carlo entropy). For a like-for-like comparison with the exact grid value the
fitted gate is also scored on the grid (:func:`gate_on_grid`: the gate read at each
cell's centre, the tail cells at the grid's ends), and the sampling error of the
primal-dual's finite sample sets is measured by the exact solver on the same samples:
the robust gate of the binned empirical domains, scored on the population.
"""

from __future__ import annotations

import numpy as np
import torch

from modular import MLPGate, fit_robust_gate, sample_set
from synthetic.experiments.common import EXACT_TOL, seed_streams, sha256_array, single_thread_torch
from synthetic.gaussian import Grid, discretisation_report, fit_gmm_expert, grid_instance, random_mixture
from theory import gated_model, kl, solve_robust

#: The gate's MLP on x: the best gate is a smooth function of x with a few transitions
#: between the components, which two hidden layers of 32 units represent.
GATE_HIDDEN, GATE_DEPTH = 32, 2


def gaussian_mixture_robust(config: dict) -> dict:
    """Exact grid solution and primal-dual fit on samples for 1-D Gaussian-mixture domains.

    config: ``p``, ``components`` (per domain), ``expert_components``, ``spread``,
    ``m_fit`` (samples per domain to fit the experts and the monolithic model), ``m``
    (samples per domain and per expert for the primal-dual), ``m_entropy`` (Monte
    Carlo samples for the entropies), ``grid`` (lo, hi, cells), ``steps``,
    ``batch_size``, ``lr``, ``lr_schedule``, ``lam_lr``, ``seed``.
    """
    p, seed = config["p"], config["seed"]
    domain_seeds, train_seeds, fit_seeds, expert_seeds, entropy_seeds = seed_streams(seed, p, p, p, p, p)
    domains = [random_mixture(1, config["components"], seed=s, spread=config["spread"], name=f"D{k}")
               for k, s in enumerate(domain_seeds)]
    train = [d.sample(config["m_fit"], s) for d, s in zip(domains, train_seeds)]
    experts = [fit_gmm_expert(x, config["expert_components"], seed=seed, name=f"expert {k}")
               for k, x in enumerate(train)]
    mono = fit_gmm_expert(np.vstack(train), p * config["expert_components"], seed=seed, name="monolithic")
    lo, hi, cells = config["grid"]
    grid = Grid.regular(lo, hi, cells)
    inst = grid_instance(domains, experts, grid)
    exact = solve_robust(inst.D, inst.P, tol=EXACT_TOL)
    q_mono = grid_instance(domains, [mono] * p, grid).P[0]
    report = discretisation_report(domains, experts, inst, seed=seed)

    xs = [d.sample(config["m"], s) for d, s in zip(domains, fit_seeds)]
    ys = [e.sample(config["m"], s) for e, s in zip(experts, expert_seeds)]
    H = np.array([-d.logpdf(d.sample(config["m_entropy"], s)).mean() for d, s in zip(domains, entropy_seeds)])

    def logp(x):
        return np.column_stack([e.logpdf(x) for e in experts])

    dom_sets = [sample_set(logp(x), x, name=f"domain {k}") for k, x in enumerate(xs)]
    exp_sets = [sample_set(logp(y), y, name=f"expert {k}") for k, y in enumerate(ys)]
    pooled = np.vstack(xs)
    with single_thread_torch():
        torch.manual_seed(seed)
        gate = MLPGate(1, p, hidden=GATE_HIDDEN, depth=GATE_DEPTH, mean=pooled.mean(0), std=pooled.std(0))
        fit = fit_robust_gate(gate, dom_sets, exp_sets, entropies=H, adversary="kl", steps=config["steps"],
                              batch_size=config["batch_size"], lr=config["lr"], lr_schedule=config["lr_schedule"],
                              lam_lr=config["lam_lr"], seed=seed)
    q_fit = gate_on_grid(gate, inst)
    z_pop = float(q_fit.sum())
    kl_fit_pop = kl(inst.D, q_fit / z_pop)
    empirical = np.stack([np.bincount(grid_cells(x, grid), minlength=inst.D.shape[1]) for x in xs]) / config["m"]
    from_samples = float(kl(inst.D, solve_robust(empirical, inst.P, tol=EXACT_TOL).q).max())

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
             "robust_kl_primal_dual_population": float(kl_fit_pop[k]),
             "robust_value_primal_dual_population": float(kl_fit_pop.max()), "z_fit_population": z_pop,
             "robust_value_exact_from_samples": from_samples,
             "z_estimator": fit.z_estimator, "outside_mass": float(report.outside_mass_domain[k])}
            for k in range(p)]
    checks = {f"gmm/s{seed}/train_{k}": sha256_array(x) for k, x in enumerate(train)}
    checks.update({f"gmm/s{seed}/fit_samples_{k}": sha256_array(x) for k, x in enumerate(xs)})
    return {"rows": rows, "curves": curves, "checksums": checks}


def grid_cells(x, grid: Grid) -> np.ndarray:
    """Cell index of each 1-D point in a tailed grid instance (0: low tail, last: high tail)."""
    return np.searchsorted(grid.edges[0], np.asarray(x, dtype=np.float64).reshape(-1), side="right")


def gate_on_grid(gate: torch.nn.Module, inst) -> np.ndarray:
    """Cell masses ``sum_k g(c, k) P_k(cell)`` of the gated model, the gate read at each cell's centre ``c``.

    ``inst`` is a 1-D tailed grid instance; the two tail cells read the gate at the grid's ends.
    The masses are not renormalised: their sum is the gated model's Z on the grid.
    """
    edges = inst.grid.edges[0]
    points = np.concatenate([edges[:1], (edges[1:] + edges[:-1]) / 2, edges[-1:]])
    param = next(gate.parameters())
    with torch.no_grad():
        g = torch.softmax(gate(torch.as_tensor(points[:, None], dtype=param.dtype, device=param.device)), dim=1)
    return gated_model(g.double().cpu().numpy(), inst.P)
