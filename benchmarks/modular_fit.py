"""Benchmark of the stochastic primal-dual fit (modular.fit_robust_gate).

Two tables, on the CPU and, when present, on CUDA:

- accuracy: on random finite instances (n outcomes, p experts; tabular gate, exact
  population objective, adversary "kl"), the wall time and step count until the fit's
  robust KL is within 0.02 nats of the exact value and ``|Z - 1| < 0.01`` (checked at every
  logged step from the full-batch history, which is exact);
- throughput: samples processed per second (minibatch rows of all 2p sample sets per
  step, forward and backward) against the number of cached samples per domain m and p,
  with a linear gate on the experts' log-probabilities.

Usage: ``python -m benchmarks.modular_fit [--quick] [--out DIR] [--threads N]``; CSVs go to
``results/benchmarks/`` by default. Timings are wall-clock and depend on machine load.
"""

from __future__ import annotations

import os
import sys
import warnings

import numpy as np
import pandas as pd
import torch

from modular import LinearGate, TabularGate, fit_robust_gate, sample_set
from theory.commandline import EXIT_OK, ArgumentParser, add_out_argument, positive, run_main, save_text
from theory.divergences import entropy
from theory.errors import SolverFailedError
from theory.solve import solve_robust

TARGET_NATS = 0.02


def random_instance(n: int, p: int, seed: int):
    """Domains concentrated on their own blocks of outcomes; experts that blur them and overlap."""
    rng = np.random.default_rng(seed)
    D = np.full((p, n), 0.05 / n)
    for k, block in enumerate(np.array_split(np.arange(n), p)):
        D[k, block] += rng.dirichlet(np.ones(len(block)))
    D /= D.sum(axis=1, keepdims=True)
    P = 0.6 * D + 0.4 * rng.dirichlet(np.ones(n), size=p)
    return D, P / P.sum(axis=1, keepdims=True)


#: Certified accuracy of the exact reference (nats), far below TARGET_NATS.
EXACT_TOL = 1e-9


def exact_value(D, P) -> float:
    """Exact robust value ``min_q max_k KL(D_k || q)`` over G1 (theory's dual solver), certified to EXACT_TOL."""
    res = solve_robust(D, P, tol=EXACT_TOL)
    if not res.converged:
        raise SolverFailedError(f"exact reference not certified: gap {res.gap:.3g} nats > {EXACT_TOL:g}")
    return float(res.value)


def time_to_target(n: int, p: int, device: str, steps: int, seed: int = 0) -> dict:
    D, P = random_instance(n, p, seed)
    ref = exact_value(D, P)
    H = np.asarray(entropy(D))
    logp, ids = np.log(P).T, np.arange(n)
    domains = [sample_set(logp, ids, D[k]) for k in range(p)]
    experts = [sample_set(logp, ids, P[k]) for k in range(p)]
    reached: dict = {}

    def watch(step, rec):
        value = max(rec["nll"][k] - H[k] for k in range(p))
        if not reached and abs(value - ref) < TARGET_NATS and abs(rec["z"] - 1) < 0.01:
            reached.update(step=step, seconds=rec["seconds"])

    res = fit_robust_gate(TabularGate(n, p), domains, experts, entropies=H, batch_size=None, steps=steps,
                          device=device, seed=seed, callback=watch)
    return dict(device=device, n=n, p=p, exact_value=ref, final_gap=abs(res.value - ref), final_z=res.z,
                steps_to_target=reached.get("step"), seconds_to_target=reached.get("seconds"),
                total_steps=steps, total_seconds=res.seconds)


def throughput(m: int, p: int, batch: int, device: str, steps: int, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)

    def cached(k):
        logits = rng.normal(size=(m, p)) + 2.0 * (np.arange(p) == k)
        return logits - np.logaddexp.reduce(logits, axis=1, keepdims=True) - 5.0

    domains = [sample_set(cached(k)) for k in range(p)]
    experts = [sample_set(cached(k)) for k in range(p)]
    run = dict(batch_size=batch, device=device, seed=seed, adversary="nll", log_every=max(steps, 1))
    fit_robust_gate(LinearGate(p, p), domains, experts, steps=5, **run)  # warm-up (allocator, kernels)
    res = fit_robust_gate(LinearGate(p, p), domains, experts, steps=steps, **run)
    rows = min(batch, m) * 2 * p  # a set no larger than the batch enters each step whole
    return dict(device=device, m=m, p=p, batch=batch, steps=steps, seconds=res.seconds,
                samples_per_s=rows * steps / res.seconds)


PROG = "python -m benchmarks.modular_fit"


def main(argv=None) -> int:
    """Run the benchmark; exit status by :mod:`theory.commandline`."""
    return run_main(PROG, lambda: _main(argv))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, finishes in under a minute")
    add_out_argument(parser, "modular_fit_accuracy.csv and modular_fit_throughput.csv", folder=True,
                     default=os.path.join("results", "benchmarks"))
    parser.add_argument("--threads", type=positive(int), default=1,
                        help="torch CPU threads (1: small steps gain nothing from more, and a shared "
                             "machine punishes oversubscription)")
    return parser


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(args.threads)
    devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if args.quick:
        acc_sizes, acc_steps = [(50, 2), (200, 3)], 1000
        tp_sizes, tp_steps, batches = [(1_000, 2), (10_000, 2), (10_000, 8)], 50, [256]
    else:
        acc_sizes, acc_steps = [(50, 2), (200, 3), (1000, 4), (5000, 5)], 3000
        tp_sizes = [(m, p) for m in (1_000, 10_000, 100_000) for p in (2, 4, 8)]
        tp_steps, batches = 200, [256, 4096]
    warnings.simplefilter("ignore", UserWarning)
    acc = pd.DataFrame([time_to_target(n, p, dev, acc_steps) for dev in devices for n, p in acc_sizes])
    tp = pd.DataFrame([throughput(m, p, b, dev, tp_steps) for dev in devices for m, p in tp_sizes for b in batches])
    os.makedirs(args.out, exist_ok=True)
    save_text(os.path.join(args.out, "modular_fit_accuracy.csv"), acc.to_csv(index=False))
    save_text(os.path.join(args.out, "modular_fit_throughput.csv"), tp.to_csv(index=False))
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.4g}".format):
        print(f"Time to reach {TARGET_NATS} nats of the exact robust value (tabular gate, exact objective)")
        print(acc.to_string(index=False))
        print("\nThroughput (linear gate on expert log-probs; samples = rows of all 2p sets per step)")
        print(tp.to_string(index=False))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
