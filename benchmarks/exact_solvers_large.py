"""Benchmark: the dual solver on memory-mapped ``.npy`` inputs larger than a comfortable share of memory.

Writes the instance of :func:`benchmarks.exact_solvers.instance` (domains ``D_k`` uniform
Dirichlet draws, experts ``P_k`` proportional to ``D_k exp(0.5 z)``), generated one row
at a time with one seed per row, as two ``.npy`` files in ``--dir`` (float32 and/or
float64), then solves it in a child process from ``np.load(path, mmap_mode="r")``
(float32 entries are converted and accumulated in float64 block by block) and reports
the child's wall and CPU time, its peak resident memory (``VmHWM``, the page-cache
pages of the mapped files it touched included) and the certificate. The files are
deleted afterwards unless ``--keep``.

Usage: ``python -m benchmarks.exact_solvers_large --dir /scratch [--n 1e8] [--p 8]
[--dtype float32 float64] [--out CSV] [--keep]``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from theory.commandline import EXIT_OK, ArgumentParser, run_main, save_text

DEFAULT_OUT = Path("results/benchmarks/exact_solvers_large.csv")
TOL = 1e-9


def write_instance(directory: Path, n: int, p: int, dtype: str, seed: int = 0) -> tuple[Path, Path]:
    """``D.npy`` and ``P.npy`` of shape (p, n) in ``directory``, written row by row (float64 arithmetic)."""
    directory.mkdir(parents=True, exist_ok=True)
    paths = directory / f"D_{n}_{p}_{dtype}.npy", directory / f"P_{n}_{p}_{dtype}.npy"
    D = np.lib.format.open_memmap(paths[0], mode="w+", dtype=dtype, shape=(p, n))
    P = np.lib.format.open_memmap(paths[1], mode="w+", dtype=dtype, shape=(p, n))
    for k in range(p):
        rng = np.random.default_rng([seed, k])
        d = rng.standard_exponential(n)
        d /= d.sum()
        e = rng.standard_normal(n)
        e *= 0.5
        np.exp(e, out=e)
        e *= d
        e /= e.sum()
        D[k] = d
        P[k] = e
        del d, e
    D.flush()
    P.flush()
    del D, P
    return paths


def _peak_rss_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM"):
                return int(line.split()[1]) * 1024
    return -1


def child(d_path: str, p_path: str) -> dict:
    """Solve from the mapped files in this process; the measurements as a dict."""
    from theory import solve_robust

    start, cpu = time.perf_counter(), time.process_time()
    D = np.load(d_path, mmap_mode="r")
    P = np.load(p_path, mmap_mode="r")
    res = solve_robust(D, P, tol=TOL)
    return dict(seconds=time.perf_counter() - start, cpu_seconds=time.process_time() - cpu, value=res.value,
                gap=res.gap, status=res.status, iterations=res.iterations,
                evaluations=res.info["evaluations"], peak_rss_mb=_peak_rss_bytes() / 1e6)


def main(argv=None) -> int:
    def body() -> int:
        parser = ArgumentParser(prog="python -m benchmarks.exact_solvers_large", description=__doc__.splitlines()[0])
        parser.add_argument("--dir", type=Path, required=True, help="folder for the instance files (deleted after)")
        parser.add_argument("--n", type=float, default=1e8, help="outcomes")
        parser.add_argument("--p", type=int, default=8, help="domains and experts")
        parser.add_argument("--dtype", nargs="+", default=["float32", "float64"], choices=["float32", "float64"])
        parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="CSV path (its folder is created)")
        parser.add_argument("--keep", action="store_true", help="keep the instance files")
        parser.add_argument("--child", nargs=2, help=argparse_hidden())
        args = parser.parse_args(argv)
        if args.child:
            print(json.dumps(child(*args.child)))
            return EXIT_OK
        n, rows = int(args.n), []
        for dtype in args.dtype:
            start = time.perf_counter()
            paths = write_instance(args.dir, n, args.p, dtype)
            written = time.perf_counter() - start
            try:
                out = subprocess.run([sys.executable, "-m", "benchmarks.exact_solvers_large", "--dir", str(args.dir),
                                      "--child", *map(str, paths)], check=True, capture_output=True, text=True)
                row = json.loads(out.stdout.strip().splitlines()[-1])
            finally:
                if not args.keep:
                    for path in paths:
                        path.unlink(missing_ok=True)
            input_mb = 2 * args.p * n * np.dtype(dtype).itemsize / 1e6
            rows.append(dict(n=n, p=args.p, dtype=dtype, input_mb=input_mb, write_seconds=written, **row,
                             load1=os.getloadavg()[0]))
            print(f"n={n:,} p={args.p} {dtype}: {row['seconds']:.1f} s wall, {row['cpu_seconds']:.1f} s CPU, "
                  f"peak RSS {row['peak_rss_mb']:.0f} MB (inputs {input_mb:.0f} MB), gap {row['gap']:.1e}, "
                  f"{row['status']}", file=sys.stderr, flush=True)
        import pandas as pd

        table = pd.DataFrame(rows)
        args.out.parent.mkdir(parents=True, exist_ok=True)
        save_text(args.out, table.to_csv(index=False))
        with pd.option_context("display.width", 200, "display.max_columns", None):
            print(table.to_string(index=False, float_format=lambda x: f"{x:.4g}"))
        return EXIT_OK

    return run_main("python -m benchmarks.exact_solvers_large", body)


def argparse_hidden():
    import argparse

    return argparse.SUPPRESS


if __name__ == "__main__":
    sys.exit(main())
