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

For each instance, with ``V*``, ``lam*`` the exact solution of the population problem
(:func:`theory.solve_robust`):

- ``exact-on-samples``: the exact solution of the *empirical* problem, the game the fit
  plays on the samples (histograms, the true entropies: :func:`modular.tabular_exact.
  solve_tabular_exact`); its population errors are the *sampling error* of the problem;
- ``new``: the defaults (inv-sqrt steps for gate, lam and mu; polynomial-decay averaging
  of gate and lam; the ``importance`` Z estimator; 20% of every expert set held out to
  measure Z, and the training constraint's target moved by the measured optimism);
- ``new/no-holdout`` (m >= 1e4): the defaults without the hold-out (``z_holdout=0``): Z
  constrained, and measured, on all expert samples;
- ``new/expert-samples`` (m >= 1e4): the same (hold-out included) with the ``expert-samples``
  Z estimator;
- ``old@equal-time``: the old defaults (constant steps, uniform average of lam over the
  second half, last gate, ``expert-samples`` Z) run for as many steps as fit in the CPU
  time that ``new`` took (their cost per step measured by a 200-step probe run).

Columns. On the population: ``value_err = max_k KL(D_k || pi_g) - V*``,
``lam_l1 = L1(lam - lam*)``, ``lam_dual_gap = V* - phi(lam)`` with
``phi(lam) = min_q sum_k lam_k KL(D_k || q)`` (:func:`theory.certificate.dual_function`):
zero exactly on the *set* of optimal mixtures, the distance that stays meaningful where
``lam*`` is ill-conditioned (identical experts: the gate cannot matter, ``phi`` is linear,
``lam*`` is the vertex of the largest ``KL(D_k || pbar)``, and the KLs differ by less than
their sampling error), and ``z_err = |Z - 1|``, Z of the fitted gate computed exactly
from the experts (not estimated). On the samples (the fit against the exact empirical
solution): ``emp_value_err`` (the fit's max_k a_k minus the empirical optimum),
``emp_lam_l1`` (L1 to the empirical ``lam``), ``zhat_err`` (|Z - target| by the
fit's estimator on its training samples, against the target it held them to: the constraint
the fit actually meets), ``z_holdout`` with ``z_holdout_se`` (Z on the held-out expert
samples and its standard error; empty without a hold-out) and the fit's certified ``gap``.
``cpu_seconds`` is the process CPU time of the fit.

Targets (issue 9, for m >= 1e4): ``|value_err| <= 0.02 + |value_err of
exact-on-samples|``, ``lam_l1 <= 0.1`` (for identical experts: ``lam_dual_gap <= 0.02``),
``z_err <= 0.01``, ``cpu_seconds < 30``; column ``meets``.

The default run adds the CLI's default gate on the first instance: a linear gate on
one-hot features (``gate = linear-onehot``), for which there is no exact row.

Usage: ``python -m benchmarks.modular_fit_defaults [--full] [--jobs J] [--out CSV] [--steps N]
[--kinds K,..] [--ns N,..] [--ps P,..] [--ms M,..] [--merge]``; the filters pick instances of
the full family, ``--merge`` replaces their rows in an existing ``--out`` CSV and keeps the others.
The default run (4 instances of the family plus the linear gate on the first) takes a few
minutes on a loaded 2-core machine; ``--full`` runs all 54 instances (about an hour of CPU).
One torch thread per process; ``--jobs`` runs instances in parallel processes.
"""

from __future__ import annotations

import itertools
import os
import sys
import time
import warnings
from concurrent.futures import ProcessPoolExecutor, as_completed

import numpy as np
import pandas as pd
import torch

from modular import LinearGate, TabularGate, fit_robust_gate, sample_set
from modular.tabular_exact import solve_tabular_exact
from theory import solve_robust
from theory.commandline import EXIT_OK, ArgumentParser, add_out_argument, positive, run_main, save_text
from theory.certificate import dual_function
from theory.divergences import entropy, kl
from theory.errors import InputError

OLD = dict(lr_schedule="constant", lam_iterate="average", gate_iterate="last", z_estimator="expert-samples")
NEW: dict = {}
#: The new steps and averaging with the old Z estimator: what the estimator alone changes.
NEW_EXPERT_SAMPLES = dict(z_estimator="expert-samples", z_holdout=0.2)
#: The defaults without the held-out expert samples: what the hold-out (and its Z correction) changes.
NEW_NO_HOLDOUT = dict(z_holdout=0)
#: Steps of the old defaults' probe run that measures their CPU cost per step.
PROBE_STEPS = 200
KINDS = ("overlapping", "near-disjoint", "identical")
#: Issue 9's targets (m >= 1e4).
TARGET_VALUE, TARGET_L1, TARGET_Z, TARGET_CPU = 0.02, 0.1, 0.01, 30.0


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
    """Value error, L1(lam - lam*), V* - phi(lam) and the exact |Z - 1| of a tabular gate on the population."""
    g = np.exp(logits - logits.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    q = np.einsum("nk,kn->n", g, P)
    return dict(value_err=float(kl(D, q).max() - exact.value), lam_l1=float(np.abs(lam - exact.lam).sum()),
                lam_dual_gap=float(exact.value - dual_function(D, P, lam)[0]), z_err=float(abs(q.sum() - 1)))


def sample_errors(res, emp) -> dict:
    """The fit against the exact solution of the empirical problem, and its own residuals on the samples."""
    out = dict(zhat_err=float(abs(res.z - res.z_target)), gap=float(res.gap), z_target=float(res.z_target),
               z_holdout=np.nan if res.z_holdout is None else float(res.z_holdout),
               z_holdout_se=np.nan if res.z_holdout_se is None else float(res.z_holdout_se))
    if emp is not None:
        out.update(emp_value_err=float(res.value - emp.info["empirical_value"]),
                   emp_lam_l1=float(np.abs(res.lam - emp.lam).sum()))
    return out


def _outcome_logits(gate, n: int, onehot: bool) -> np.ndarray:
    with torch.no_grad():
        feats = torch.eye(n, dtype=torch.float64) if onehot else torch.arange(n)
        return gate.cpu()(feats).double().numpy()


def run_instance(kind: str, n: int, p: int, m: int, seed: int, steps: int, gate: str = "tabular") -> list[dict]:
    torch.set_num_threads(1)
    warnings.simplefilter("ignore", UserWarning)
    D, P = family_instance(kind, n, p, seed)
    exact = solve_robust(D, P)
    onehot = gate == "linear-onehot"
    domains, experts = draw_sets(D, P, m, seed, onehot=onehot)
    H = np.asarray(entropy(D), dtype=np.float64)
    base = dict(kind=kind, n=n, p=p, m=m, seed=seed, gate=gate, exact_value=exact.value)
    rows, emp = [], None
    if not onehot:
        c0 = time.process_time()
        emp = solve_tabular_exact(domains, experts, n_outcomes=n, entropies=H)
        rows.append(dict(base, method="exact-on-samples", steps=emp.steps, seconds=emp.seconds,
                         cpu_seconds=time.process_time() - c0, status=emp.status,
                         **population_errors(emp.gate_state["logits"].numpy(), emp.lam, D, P, exact),
                         zhat_err=float(abs(emp.z - 1)), gap=float(emp.gap)))
    if onehot:  # standardised as the CLI does (statistics of the domain samples' features)
        flat = torch.cat([d.features for d in domains])
        make = lambda: LinearGate(n, p, mean=flat.mean(0), std=flat.std(0))  # noqa: E731
    else:
        make = lambda: TabularGate(n, p)  # noqa: E731
    for opts in (NEW, OLD):  # warm-up (first calls, allocations): kept out of the timings
        fit_robust_gate(make(), domains, experts, entropies=H, steps=5, seed=seed, device="cpu", **opts)
    cpu = {}
    plan = [("new", NEW, steps), ("old-probe", OLD, PROBE_STEPS), ("old@equal-time", OLD, None)]
    if m >= 10_000:  # where the targets apply: what the Z estimator alone changes
        plan.insert(1, ("new/expert-samples", NEW_EXPERT_SAMPLES, steps))
        plan.insert(1, ("new/no-holdout", NEW_NO_HOLDOUT, steps))
    for name, opts, budget in plan:
        if budget is None:  # as many old steps as fit in the new defaults' CPU time (per-step cost of the probe)
            budget = max(1, round(PROBE_STEPS * cpu["new"] / cpu["old-probe"]))
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            g = make()
        c0 = time.process_time()
        res = fit_robust_gate(g, domains, experts, entropies=H, steps=budget, seed=seed, device="cpu", **opts)
        cpu[name] = time.process_time() - c0
        if name == "old-probe":
            continue
        rows.append(dict(base, method=name, steps=budget, seconds=res.seconds, cpu_seconds=cpu[name],
                         status=res.status,
                         **population_errors(_outcome_logits(res.gate, n, onehot), res.lam, D, P, exact),
                         **sample_errors(res, emp)))
    sampling = rows[0]["value_err"] if emp is not None else 0.0
    for r in rows:
        lam_ok = (r["lam_dual_gap"] <= TARGET_VALUE) if kind == "identical" else (r["lam_l1"] <= TARGET_L1)
        r["meets"] = bool(abs(r["value_err"]) <= TARGET_VALUE + abs(sampling) and lam_ok
                          and r["z_err"] <= TARGET_Z and r["cpu_seconds"] < TARGET_CPU)
    return rows


PROG = "python -m benchmarks.modular_fit_defaults"
COLUMNS = ["kind", "n", "p", "m", "method", "steps", "cpu_seconds", "status", "value_err", "lam_l1", "lam_dual_gap",
           "z_err", "emp_value_err", "emp_lam_l1", "zhat_err", "z_holdout", "z_holdout_se", "gap", "meets"]


def summarise(table: pd.DataFrame) -> pd.DataFrame:
    """Worst case over the instances with m >= 1e4, per gate and method: L1(lam - lam*) over
    the instances where lam* is well conditioned, V* - phi(lam) over the identical-experts ones;
    ``worst_zhold_err`` is |Z - 1| on the held-out expert samples, ``silent_misses`` the rows
    that say converged and miss a target."""
    big = table[table.m >= 10_000].assign(
        l1_not_identical=lambda t: t.lam_l1.where(t.kind != "identical"),
        dual_gap_identical=lambda t: t.lam_dual_gap.where(t.kind == "identical"),
        zhold_err=lambda t: (t.z_holdout - 1).abs() if "z_holdout" in t else np.nan,
        silent_miss=lambda t: (t.status == "converged") & ~t.meets.astype(bool))
    return big.groupby(["gate", "method"]).agg(
        worst_value_err=("value_err", lambda v: np.abs(v).max()), worst_lam_l1=("l1_not_identical", "max"),
        worst_dual_gap_identical=("dual_gap_identical", "max"), worst_z_err=("z_err", "max"),
        worst_zhat_err=("zhat_err", "max"), worst_zhold_err=("zhold_err", "max"), median_cpu=("cpu_seconds", "median"),
        max_cpu=("cpu_seconds", "max"), meets=("meets", "sum"), silent_misses=("silent_miss", "sum"),
        rows=("meets", "size"))


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog=PROG, description=__doc__.splitlines()[0])
    parser.add_argument("--full", action="store_true", help="the whole family (54 instances)")
    parser.add_argument("--steps", type=positive(int), default=2000, help="step budget of the fits (the CLI default)")
    parser.add_argument("--jobs", type=positive(int), default=1, help="instances run in parallel processes")
    add_out_argument(parser, "the CSV table", creates_folder=True,
                     default=os.path.join("results", "benchmarks", "modular_fit_defaults.csv"))
    for flag, kind, what in (("--kinds", str, "kinds of experts"), ("--ns", int, "numbers of outcomes"),
                             ("--ps", int, "numbers of domains"), ("--ms", int, "samples per set")):
        parser.add_argument(flag, type=lambda text, kind=kind: [kind(v) for v in text.split(",")],
                            help=f"only these {what} of the full family (comma-separated; implies --full)")
    parser.add_argument("--merge", action="store_true",
                        help="replace the rows of the instances run in the existing --out CSV, keep the others")
    parser.add_argument("--summarise", action="store_true",
                        help="only print the summary of an existing --out CSV (e.g. of a stopped run)")
    return parser


def main(argv=None) -> int:
    """Run the family and write the CSV; exit status by :mod:`theory.commandline`."""
    return run_main(PROG, lambda: _main(argv))


def _main(argv) -> int:
    args = build_parser().parse_args(argv)
    torch.set_num_threads(1)
    if args.summarise:
        table = pd.read_csv(args.out)
        print(f"{table[['kind', 'n', 'p', 'm', 'gate']].drop_duplicates().shape[0]} instances in {args.out}")
        print(summarise(table).to_string(float_format="{:.4g}".format))
        return EXIT_OK
    filters = dict(kind=args.kinds, n=args.ns, p=args.ps, m=args.ms)
    if args.full or any(v is not None for v in filters.values()):
        # The instances with targets (m >= 1e4) first, the costly p = 8 ones early.
        cases = [(kind, n, p, m, 0, "tabular") for m, p, kind, n in
                 itertools.product((10_000, 100_000, 1_000), (8, 3, 2), KINDS, (300, 30))
                 if all(v is None or x in v for x, v in zip((kind, n, p, m), filters.values()))]
        if not cases:
            raise InputError("no instance of the family passes --kinds/--ns/--ps/--ms")
    else:
        cases = [("overlapping", 30, 3, 20_000, 0, "linear-onehot"), ("overlapping", 30, 3, 20_000, 0, "tabular"),
                 ("overlapping", 30, 2, 10_000, 1, "tabular"), ("near-disjoint", 30, 8, 10_000, 0, "tabular"),
                 ("identical", 300, 3, 10_000, 0, "tabular")]
    t0 = time.perf_counter()
    rows = []
    kept = None
    if args.merge:
        if not os.path.exists(args.out):
            raise InputError(f"--merge: {args.out} does not exist")
        kept = pd.read_csv(args.out)
        run = {case[:4] + (case[5],) for case in cases}
        kept = kept[[(r.kind, r.n, r.p, r.m, r.gate) not in run for r in kept.itertuples()]]
    partial = args.out + ".partial.csv" if args.merge else args.out
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        futures = [pool.submit(run_instance, *case[:5], steps=args.steps, gate=case[5]) for case in cases]
        for fut in as_completed(futures):
            new_rows = fut.result()
            print(pd.DataFrame(new_rows).reindex(columns=COLUMNS).to_string(
                index=False, header=not rows, float_format="{:.4g}".format), flush=True)
            rows.extend(new_rows)
            # Written after every instance, so that a stopped run keeps what it measured.
            pd.DataFrame(rows).to_csv(partial, index=False)
    order = {case[:4] + (case[5],): i for i, case in enumerate(cases)}
    table = pd.DataFrame(rows)
    table["_order"] = [order[(r.kind, r.n, r.p, r.m, r.gate)] for r in table.itertuples()]
    table = table.sort_values("_order", kind="stable").drop(columns="_order")
    if kept is not None:  # the family's order: instances as the full run lists them, methods as they ran
        full = {c: i for i, c in enumerate(itertools.product((10_000, 100_000, 1_000), (8, 3, 2), KINDS, (300, 30)))}
        table = pd.concat([kept, table], ignore_index=True)
        rank = [full.get((r.m, r.p, r.kind, r.n), len(full)) for r in table.itertuples()]
        table = table.assign(_rank=rank).sort_values("_rank", kind="stable").drop(columns="_rank")
        os.remove(partial)
    save_text(args.out, table.to_csv(index=False))
    n_big = table[table.m >= 10_000][["kind", "n", "p", "m", "gate"]].drop_duplicates().shape[0]
    print(f"\nworst case over the {n_big} instances with m >= 1e4 (population errors; wall "
          f"{time.perf_counter() - t0:.0f} s, {args.jobs} job(s), load {os.getloadavg()[0]:.1f}):")
    print(summarise(table).to_string(float_format="{:.4g}".format))
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
