"""Benchmark: the stochastic fit's old and new defaults on samples, against the exact solution.

Problem: ``min_g max_lam sum_k lam_k KL(D_k || pi_g)`` s.t. ``Z = 1`` with a tabular gate,
fitted from ``m`` samples of every domain and every expert (the CLI's DATA.npz situation).
The family: p in {2, 3, 8} domains, n in {30, 300} outcomes, three kinds of experts

- ``overlapping``: domain k concentrated on its block of outcomes plus a floor; expert k
  blurs its domain and mixes in a shared distribution (weight 0.5);
- ``near-disjoint``: domains on disjoint blocks with a 1e-3 floor; experts leak 10% of
  their mass to the other blocks;
- ``identical``: every expert is the domains' average (the gate cannot matter; lam* is
  the worst vertex),

and m in {1e3, 1e4, 1e5} samples per set.

For each instance: the exact robust value ``V*`` and ``lam*`` of the population problem
(:func:`theory.solve_robust`); the *sampling error* of the empirical problem (the exact
solve on the samples' histograms, :func:`modular.tabular_exact.solve_tabular_exact`,
evaluated on the population); and, on the population, the value error
``max_k KL(D_k || pi_g) - V*``, ``L1(lam - lam*)`` and ``|Z - 1|`` of

- ``old``: constant steps, uniform average of lam over the second half, last gate;
- ``new``: the defaults (inv-sqrt steps for gate, lam and mu; polynomial-decay averaging
  of gate and lam);
- ``old@equal-time``: the old defaults run for as long (wall time) as ``new`` took.

The default run adds the CLI's default gate on the first instance: a linear gate on
one-hot features (``gate = linear-onehot``), for which there is no exact row.

Usage: ``python -m benchmarks.modular_fit_defaults [--full] [--out CSV] [--steps N]``. The
default run (4 instances of the family, m = 1e4-2e4, plus the linear gate on the first) takes a few minutes on a loaded
2-core machine; ``--full`` runs all 54. One torch thread; timings depend on load.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
import warnings

import numpy as np
import pandas as pd
import torch

from modular import LinearGate, TabularGate, fit_robust_gate, sample_set
from modular.tabular_exact import solve_tabular_exact
from theory import solve_robust
from theory.commandline import EXIT_OK, ArgumentParser, add_out_argument, positive, run_main, save_text
from theory.divergences import entropy, kl

OLD = dict(lr_schedule="constant", lam_iterate="average", gate_iterate="last")
NEW: dict = {}
KINDS = ("overlapping", "near-disjoint", "identical")


def family_instance(kind: str, n: int, p: int, seed: int):
    """Domains D and experts P (p x n) of one kind of the family (module docstring)."""
    rng = np.random.default_rng(seed)
    blocks = np.array_split(np.arange(n), p)
    floor = 1e-3 if kind == "near-disjoint" else 0.02
    D = np.full((p, n), floor)
    for k, b in enumerate(blocks):
        D[k, b] += rng.dirichlet(np.ones(len(b))) * 3
    D /= D.sum(axis=1, keepdims=True)
    if kind == "overlapping":
        shared = rng.dirichlet(np.ones(n))
        P = 0.5 * (0.7 * D + 0.3 * rng.dirichlet(np.ones(n), size=p)) + 0.5 * shared
    elif kind == "near-disjoint":
        P = 0.9 * D + 0.1 * (D.sum(axis=0) - D) / (p - 1)
    else:
        P = np.tile(D.mean(axis=0), (p, 1))
    return D, P / P.sum(axis=1, keepdims=True)


def draw_sets(D, P, m: int, seed: int, onehot: bool = False):
    """m samples of every domain and every expert as SampleSets with outcome-id (or one-hot) features."""
    rng = np.random.default_rng(seed + 1000)
    logp = np.log(P)
    p, n = D.shape
    feat = (lambda x: np.eye(n)[x]) if onehot else (lambda x: x)
    domains = [sample_set(logp[:, x].T, feat(x)) for x in (rng.choice(n, size=m, p=D[k]) for k in range(p))]
    experts = [sample_set(logp[:, y].T, feat(y)) for y in (rng.choice(n, size=m, p=P[k]) for k in range(p))]
    return domains, experts


def population_errors(logits: np.ndarray, lam: np.ndarray, D, P, exact) -> dict:
    """Value error, L1(lam - lam*), |Z - 1| of a tabular gate on the population."""
    g = np.exp(logits - logits.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    q = np.einsum("nk,kn->n", g, P)
    return dict(value_err=float(kl(D, q).max() - exact.value), lam_l1=float(np.abs(lam - exact.lam).sum()),
                z_err=float(abs(q.sum() - 1)))


def _outcome_logits(gate, n: int, onehot: bool) -> np.ndarray:
    with torch.no_grad():
        feats = torch.eye(n, dtype=torch.float64) if onehot else torch.arange(n)
        return gate.cpu()(feats).double().numpy()


def run_instance(kind: str, n: int, p: int, m: int, seed: int, steps: int, gate: str = "tabular") -> list[dict]:
    D, P = family_instance(kind, n, p, seed)
    exact = solve_robust(D, P)
    onehot = gate == "linear-onehot"
    domains, experts = draw_sets(D, P, m, seed, onehot=onehot)
    H = np.asarray(entropy(D), dtype=np.float64)
    base = dict(kind=kind, n=n, p=p, m=m, seed=seed, gate=gate, exact_value=exact.value)
    rows = []
    if not onehot:
        emp = solve_tabular_exact(domains, experts, n_outcomes=n, entropies=H)
        rows.append(dict(base, method="exact-on-samples", steps=emp.steps, seconds=emp.seconds, status=emp.status,
                         **population_errors(emp.gate_state["logits"].numpy(), emp.lam, D, P, exact)))
    if onehot:  # standardised as the CLI does (statistics of the domain samples' features)
        flat = torch.cat([d.features for d in domains])
        make = lambda: LinearGate(n, p, mean=flat.mean(0), std=flat.std(0))  # noqa: E731
    else:
        make = lambda: TabularGate(n, p)  # noqa: E731
    timing = {}
    for name, opts, budget in (("new", NEW, steps), ("old", OLD, steps), ("old@equal-time", OLD, None)):
        if budget is None:  # as many old steps as fit in the new defaults' wall time
            budget = max(1, round(steps * timing["new"] / timing["old"]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            g = make()
        res = fit_robust_gate(g, domains, experts, entropies=H, steps=budget, seed=seed, device="cpu", **opts)
        timing[name] = res.seconds
        rows.append(dict(base, method=name, steps=budget, seconds=res.seconds, status=res.status,
                         **population_errors(_outcome_logits(res.gate, n, onehot), res.lam, D, P, exact)))
    return rows


PROG = "python -m benchmarks.modular_fit_defaults"


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the whole family (54 instances)")
    parser.add_argument("--steps", type=positive(int), default=2000, help="step budget of the fits (the CLI default)")
    add_out_argument(parser, "the CSV table", creates_folder=True,
                     default=os.path.join("results", "benchmarks", "modular_fit_defaults.csv"))
    return parser


def main(argv=None) -> int:
    """Run the family and write the CSV; exit status by :mod:`theory.commandline`."""
    return run_main(PROG, lambda: _main(argv))


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    if args.full:
        cases = [(kind, n, p, m, 0) for kind, n, p, m in
                 itertools.product(KINDS, (30, 300), (2, 3, 8), (1_000, 10_000, 100_000))]
    else:
        cases = [("overlapping", 30, 3, 20_000, 0, "linear-onehot"), ("overlapping", 30, 3, 20_000, 0),
                 ("overlapping", 30, 2, 10_000, 1), ("near-disjoint", 30, 8, 10_000, 0),
                 ("identical", 300, 3, 10_000, 0)]
    t0 = time.perf_counter()
    rows = []
    for case in cases:
        new_rows = run_instance(*case[:5], steps=args.steps, gate=case[5] if len(case) > 5 else "tabular")
        print(pd.DataFrame(new_rows).drop(columns=["seed"]).to_string(index=False, header=not rows,
                                                                       float_format="{:.4g}".format), flush=True)
        rows.extend(new_rows)
    table = pd.DataFrame(rows)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_text(args.out, table.to_csv(index=False))
    big = table[table.m >= 10_000]
    summary = big.groupby(["gate", "method"]).agg(
        worst_value_err=("value_err", lambda v: np.abs(v).max()), worst_lam_l1=("lam_l1", "max"),
        worst_z_err=("z_err", "max"), median_seconds=("seconds", "median"))
    print(f"\nworst case over the {big[['kind', 'n', 'p', 'm']].drop_duplicates().shape[0]} instances with m >= 1e4 "
          f"(population errors; total {time.perf_counter() - t0:.0f} s, load {os.getloadavg()[0]:.1f}):")
    print(summary.to_string(float_format="{:.4g}".format))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
