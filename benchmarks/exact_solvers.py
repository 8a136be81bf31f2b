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

Old against new: ``--compare REV`` loads the dual solver of git revision REV (default
the commit before this solver's rewrite) from ``git show`` into a temporary package and
times it against today's, alternating A and B in one run (medians of ``--repeats``),
reporting the ratio, the agreement of the values, the passes over the (p x n) data per
solve and the one-pass time of this machine (``D.sum()`` over the p x n array: the
memory-bandwidth floor of a pass), so the ratio to the floor is visible wherever it runs.

Usage: ``python -m benchmarks.exact_solvers [--quick] [--out CSV] [--compare [REV]]`` (the comparison
is written to ``results/benchmarks/exact_solvers_compare.csv`` unless ``--out`` says otherwise).
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from theory.commandline import EXIT_OK, ArgumentParser, add_out_argument, check_output_path, positive, run_main, save_text
from theory.cvx import solve_cvxpy
from theory.dual import solve_dual
from theory.errors import SolverFailedError

DEFAULT_OUT = Path("results/benchmarks/exact_solvers.csv")
COMPARE_OUT = Path("results/benchmarks/exact_solvers_compare.csv")
FULL_GRID = [(n, p) for n in (1_000, 10_000, 100_000) for p in (2, 8, 32)] + [(1_000_000, 8), (10_000_000, 8)]
QUICK_GRID = [(n, p) for n in (1_000, 10_000) for p in (2, 8)] + [(100_000, 8)]
#: cvxpy runs only where n * p is at most this (n = 1e5, p = 8 took 380 s on two busy cores).
FULL_CVXPY_WORK = 320_000
QUICK_CVXPY_WORK = 10_000
TOL = 1e-8
#: The last commit with the previous dual solver (dense gate, n-length temporaries).
BASE_REV = "c3f5dcd"
COMPARE_GRID = [(1_000_000, 8), (10_000_000, 8), (100_000, 1024)]


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


def load_base_theory(rev: str = BASE_REV):
    """The ``theory`` package of git revision ``rev`` as a temporary package ``theory_base``.

    Only for this comparison: every ``theory`` module of ``rev`` is written, with its
    imports renamed, into a temporary directory put on ``sys.path``.
    """
    root = Path(__file__).resolve().parents[1]
    names = subprocess.run(["git", "ls-tree", "-r", "--name-only", rev, "theory/"], cwd=root, check=True,
                           capture_output=True, text=True).stdout.split()
    target = Path(tempfile.mkdtemp(prefix="theory_base_"))
    for name in names:
        if not name.endswith(".py"):
            continue
        text = subprocess.run(["git", "show", f"{rev}:{name}"], cwd=root, check=True, capture_output=True,
                              text=True).stdout
        text = text.replace("from theory.", "from theory_base.").replace("import theory.", "import theory_base.")
        text = text.replace("from theory import", "from theory_base import")
        path = target / name.replace("theory/", "theory_base/", 1)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    sys.path.insert(0, str(target))
    return importlib.import_module("theory_base.dual")


class _PassCounter:
    """Counts the passes of one solve: over (p x n) arrays, and water-level passes over n-vectors.

    ``data``: columns of (p x n) arrays read block by block (:func:`theory.blocks.block`,
    the validating pass reads two arrays) divided by n; ``level``: passes of the
    water-level search that read the n-vectors (``v``, ``lo``, ``hi``); its steps inside
    a moments pass's window read only the outcomes listed near the level
    (:class:`theory.dual._Window`) and are not passes.
    """

    def __init__(self):
        import theory.dual as dual
        import theory.validation as validation

        self.dual, self.validation = dual, validation
        self.columns, self.level = 0, 0

    def __enter__(self):
        dual, validation = self.dual, self.validation
        self.saved = dual.block, validation.block, dual.level_pass, dual._FullFamily._tracked_pass
        block, level_pass, tracked = self.saved[0], self.saved[2], self.saved[3]

        def counted_block(X, a, b, out=None):
            self.columns += b - a
            return block(X, a, b, out)

        def counted_level(*args):
            self.level += 1
            return level_pass(*args)

        def counted_tracked(oracle, v, t):
            self.level += 1
            return tracked(oracle, v, t)

        dual.block = validation.block = counted_block
        dual.level_pass = counted_level
        dual._FullFamily._tracked_pass = counted_tracked
        return self

    def __exit__(self, *exc):
        dual, validation = self.dual, self.validation
        dual.block, validation.block, dual.level_pass, dual._FullFamily._tracked_pass = self.saved

    def data_passes(self, n: int) -> float:
        return self.columns / n


def one_pass_seconds(D, repeats: int = 5) -> float:
    """Median time of ``D.sum()``: one read of the p x n array (the floor of a pass)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        D.sum()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def compare(grid, rev: str, repeats: int, progress=sys.stderr) -> pd.DataFrame:
    """Old (``rev``) against new dual solver, alternating, on the same instances."""
    from threadpoolctl import threadpool_limits

    base = load_base_theory(rev)
    rows = []
    for n, p in grid:
        D, P = instance(n, p, seed=1000 * p + int(np.log10(n)))
        times = {"old": [], "new": []}
        cpu = {"old": [], "new": []}
        values = {}
        for _ in range(repeats):
            for name, solve in (("old", base.solve_dual), ("new", solve_dual)):
                start, start_cpu = time.perf_counter(), time.process_time()
                res = solve(D, P, tol=1e-9)
                if name == "old" and rev == BASE_REV:
                    res.gate.shape  # the old solver built its dense gate inside the solve
                times[name].append(time.perf_counter() - start)
                cpu[name].append(time.process_time() - start_cpu)
                values[name] = res
                del res
        with _PassCounter() as counter:
            solve_dual(D, P, tol=1e-9)
        passes, level_passes = counter.data_passes(n), counter.level
        with threadpool_limits(limits=1, user_api="blas"):
            floor = one_pass_seconds(D)
        old, new = np.median(times["old"]), np.median(times["new"])
        old_cpu, new_cpu = np.median(cpu["old"]), np.median(cpu["new"])
        rows.append(dict(
            n=n, p=p, old_seconds=old, new_seconds=new, speedup=old / new,
            old_cpu_seconds=old_cpu, new_cpu_seconds=new_cpu, cpu_speedup=old_cpu / new_cpu,
            value_diff=abs(values["old"].value - values["new"].value), new_gap=values["new"].gap,
            passes=passes, level_passes=level_passes, one_pass_seconds=floor, new_over_floor=new / floor,
            evaluations=values["new"].info["evaluations"], load1=os.getloadavg()[0],
        ))
        print(f"n={n:>10,} p={p:>4}: old {old:.3f} s, new {new:.3f} s ({old / new:.2f}x; CPU {old_cpu:.3f} / "
              f"{new_cpu:.3f} s, {old_cpu / new_cpu:.2f}x), "
              f"{passes:.1f} passes over p x n arrays + {level_passes} water-level passes, one pass {floor * 1e3:.1f} ms", file=progress, flush=True)
        del D, P, values
    return pd.DataFrame(rows)


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(prog="python -m benchmarks.exact_solvers", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small grid (well under a minute)")
    add_out_argument(parser, "the CSV table", creates_folder=True, type=Path, default=DEFAULT_OUT)
    parser.add_argument("--compare", nargs="?", const=BASE_REV, metavar="REV",
                        help=f"time the dual solver of git revision REV (default {BASE_REV}) against today's")
    parser.add_argument("--repeats", type=positive(int), default=5, help="alternating runs per instance for --compare")
    return parser


def main(argv=None) -> int:
    """Run the grid (or the comparison) and write the CSV; exit status by :mod:`theory.commandline`."""

    def body() -> int:
        args = build_parser().parse_args(argv)
        if args.compare:
            table = compare(COMPARE_GRID[:1] if args.quick else COMPARE_GRID, args.compare, args.repeats)
            out = args.out if args.out != DEFAULT_OUT else COMPARE_OUT
            out.parent.mkdir(parents=True, exist_ok=True)
            table.insert(0, "old_rev", args.compare)
            save_text(out, table.to_csv(index=False))
            with pd.option_context("display.width", 200, "display.max_columns", None):
                print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
            print(f"\nwrote {out} (medians of {args.repeats} alternating runs; CPU: time.process_time)")
            return EXIT_OK
        grid, work = (QUICK_GRID, QUICK_CVXPY_WORK) if args.quick else (FULL_GRID, FULL_CVXPY_WORK)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        check_output_path(args.out)  # before the grid runs, not after
        table = run(grid, work)
        save_text(args.out, table.to_csv(index=False))
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        print(f"\nwrote {args.out} (peak memory: tracemalloc, inputs included; tolerance {TOL:g} nats)")
        return EXIT_OK

    return run_main("python -m benchmarks.exact_solvers", body)


if __name__ == "__main__":
    sys.exit(main())
