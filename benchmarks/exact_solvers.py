"""Benchmark: the certified dual solver against cvxpy/Clarabel on the robust gate problem.

Problem: ``min_q max_k KL(D_k || q)`` over the pointwise hull ``min_k P_k <= q <= max_k P_k``,
``sum q = 1`` (the full gate space G1, DESIGN 2.1), on random instances with overlapping
experts: ``D_k`` uniform Dirichlet draws and ``P_k`` a log-normal perturbation of ``D_k``
(``P_k ~ D_k exp(0.5 z)``, renormalised), one seed per (n, p).

The cvxpy baseline is the project's reference, :func:`theory.cvx.solve_cvxpy`: the epigraph
problem over ``q`` in the hull (``sum rel_entr(D_k, q) <= t``), Clarabel with the tightened
tolerances of :data:`theory.cvx.CLARABEL_ATTEMPTS`, KLs recomputed in numpy at its ``q``,
and a certified gap from the exact dual function at its ``lam*``. Its time includes that
certificate and the gate. The program has one variable per outcome, fewer than the
gate-variable form of DESIGN 2.3 (n x p variables).

Peak memory is measured with ``tracemalloc`` (which sees numpy's buffers) in a separate
run of the dual solver: the peak of traced memory during the solve, inputs included.
Clarabel allocates in Rust, outside tracemalloc, so no memory figure is given for cvxpy.

Usage: ``python -m benchmarks.exact_solvers [--quick] [--out CSV]``.
"""

from __future__ import annotations

import os
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from theory.commandline import EXIT_OK, ArgumentParser, run_main, save_text
from theory.cvx import solve_cvxpy
from theory.dual import solve_dual
from theory.errors import SolverFailedError

DEFAULT_OUT = Path("results/benchmarks/exact_solvers.csv")
FULL_GRID = [(n, p) for n in (1_000, 10_000, 100_000) for p in (2, 8, 32)] + [(1_000_000, 8), (10_000_000, 8)]
QUICK_GRID = [(n, p) for n in (1_000, 10_000) for p in (2, 8)] + [(100_000, 8)]
#: cvxpy runs only where n * p is at most this (n = 1e5, p = 8 took 380 s on two busy cores).
FULL_CVXPY_WORK = 320_000
QUICK_CVXPY_WORK = 10_000
TOL = 1e-8


def instance(n: int, p: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Domains D_k ~ Dirichlet(1) and experts P_k proportional to D_k exp(0.5 z), z ~ N(0, 1)."""
    rng = np.random.default_rng(seed)
    D = rng.standard_exponential((p, n))
    D /= D.sum(axis=1, keepdims=True)
    P = rng.standard_normal((p, n))
    P *= 0.5
    np.exp(P, out=P)
    P *= D
    P /= P.sum(axis=1, keepdims=True)
    return D, P


def cvxpy_row(D, P) -> dict:
    """Timing and certificate of the cvxpy/Clarabel reference (NaN values if Clarabel fails)."""
    start = time.perf_counter()
    try:
        res = solve_cvxpy(D, P, tol=TOL)
    except SolverFailedError as exc:
        return dict(solver="cvxpy/clarabel", seconds=time.perf_counter() - start, value=np.nan, gap=np.nan,
                    status=f"failed: {exc}", iterations=np.nan)
    return dict(solver="cvxpy/clarabel", seconds=time.perf_counter() - start, value=res.value, gap=res.gap,
                status=res.status, iterations=res.iterations)


def dual_peak_mb(D, P) -> float:
    """Peak traced memory (MB, inputs included) of one dual solve."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        solve_dual(D, P, tol=TOL)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return (peak - base + D.nbytes + P.nbytes) / 1e6


def run(grid, cvxpy_work: int, progress=sys.stderr) -> pd.DataFrame:
    rows = []
    for n, p in grid:
        D, P = instance(n, p, seed=1000 * p + int(np.log10(n)))
        input_mb = (D.nbytes + P.nbytes) / 1e6
        start = time.perf_counter()
        res = solve_dual(D, P, tol=TOL)
        seconds = time.perf_counter() - start
        dual = dict(
            n=n, p=p, solver="dual", seconds=seconds, value=res.value, gap=res.gap, status=res.status,
            iterations=res.iterations, peak_mb=dual_peak_mb(D, P), input_mb=input_mb,
        )
        reference = np.nan
        if n * p <= cvxpy_work:
            cvx = cvxpy_row(D, P)
            reference = cvx["value"]
            rows.append(dict(n=n, p=p, **cvx, peak_mb=np.nan, input_mb=input_mb))
        dual["abs_diff_vs_cvxpy"] = abs(res.value - reference)
        rows.append(dual)
        print(f"n={n:>9,} p={p:>2}: dual {seconds:.3f} s, gap {res.gap:.1e}", file=progress, flush=True)
        del D, P
    table = pd.DataFrame(rows)
    cvx = table[table.solver == "cvxpy/clarabel"].set_index(["n", "p"]).seconds
    table["speedup_vs_cvxpy"] = [
        cvx.get((r.n, r.p), np.nan) / r.seconds if r.solver == "dual" else np.nan for r in table.itertuples()
    ]
    table["load1"] = os.getloadavg()[0]
    columns = ["n", "p", "solver", "seconds", "speedup_vs_cvxpy", "value", "abs_diff_vs_cvxpy", "gap", "status",
               "iterations", "peak_mb", "input_mb", "load1"]
    return table[columns]


def main(argv=None) -> int:
    """Run the grid and write the CSV; exit status by :mod:`theory.commandline`."""

    def body() -> int:
        parser = ArgumentParser(prog="python -m benchmarks.exact_solvers", description=__doc__.splitlines()[0])
        parser.add_argument("--quick", action="store_true", help="small grid (well under a minute)")
        parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV path (its folder is created)")
        args = parser.parse_args(argv)
        grid, work = (QUICK_GRID, QUICK_CVXPY_WORK) if args.quick else (FULL_GRID, FULL_CVXPY_WORK)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        table = run(grid, work)
        save_text(args.out, table.to_csv(index=False))
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        print(f"\nwrote {args.out} (peak memory: tracemalloc, inputs included; tolerance {TOL:g} nats)")
        return EXIT_OK

    return run_main("python -m benchmarks.exact_solvers", body)


if __name__ == "__main__":
    sys.exit(main())
