"""Figure 11 (second half): the exact-solver benchmark table (``python -m benchmarks.exact_solvers``)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from figures.external import run_module
from figures.pipeline import Caption, Context

ARGS = {"quick": ["--quick"], "full": []}
OUTPUT = "benchmarks/exact_solvers.csv"


def run(ctx: Context) -> Caption:
    cfg = {"module": "benchmarks.exact_solvers", "args": ARGS[ctx.profile]}
    (result,) = ctx.sweep("solver_benchmark", run_module, [cfg])
    csvs = {name: text for name, text in result["files"].items() if name.endswith(".csv")}
    if not csvs:
        raise RuntimeError("benchmarks.exact_solvers wrote no CSV table")
    out = ctx.results / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    ctx.write_text("benchmarks/exact_solvers.txt", result["stdout"])
    frames = []
    for name, text in sorted(csvs.items()):
        df = pd.read_csv(io.StringIO(text))
        frames.append(df)
        ctx.write_table(Path(name).stem, df, configs=[cfg], results=[result], folder="benchmarks")
    table = pd.concat(frames, ignore_index=True)
    return benchmark_caption(table)


def benchmark_caption(table: pd.DataFrame) -> Caption:
    """Agreement with the cvxpy/Clarabel reference and speed-up of the other solvers, from the table."""
    if not {"abs_diff_vs_cvxpy", "speedup_vs_cvxpy", "status"} <= set(table.columns):
        return Caption(f"Exact-solver benchmark: {len(table)} rows (columns {', '.join(map(str, table.columns))})",
                       output=OUTPUT)
    compared = table.dropna(subset=["abs_diff_vs_cvxpy"])
    worst = float(compared.abs_diff_vs_cvxpy.max())
    held = bool(worst <= 1e-6 and (table.status == "optimal").all())
    text = (f"Exact solvers: the certified dual solver matches cvxpy/Clarabel to {worst:.1e} nats at "
            f"{len(compared)} sizes, {compared.speedup_vs_cvxpy.min():.0f}-{compared.speedup_vs_cvxpy.max():.0f}x "
            f"faster{_load_note(table)}, up to n = {int(table.n.max())} outcomes; "
            f"{int((table.status == 'optimal').sum())}/{len(table)} runs optimal")
    return Caption(text, held, "dual solver agrees with cvxpy and is faster", output=OUTPUT)


def _load_note(table: pd.DataFrame) -> str:
    """The machine's 1-minute load average during the run, which timings depend on."""
    if "load1" not in table.columns or table.load1.isna().all():
        return ""
    return f" (1-minute load average {float(table.load1.max()):.1f} during the run)"
