"""Figure 11 (second half): the exact-solver benchmark table (``python -m benchmarks.exact_solvers``)."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from figures.external import run_module
from figures.pipeline import Caption, Context

ARGS = {"quick": ["--quick"], "full": []}


def run(ctx: Context) -> Caption:
    cfg = {"module": "benchmarks.exact_solvers", "args": ARGS[ctx.profile]}
    (result,) = ctx.sweep("solver_benchmark", run_module, [cfg])
    csvs = {name: text for name, text in result["files"].items() if name.endswith(".csv")}
    if not csvs:
        raise RuntimeError("benchmarks.exact_solvers wrote no CSV table")
    out = ctx.results / "benchmarks"
    out.mkdir(parents=True, exist_ok=True)
    (out / "exact_solvers.txt").write_text(result["stdout"])
    frames = []
    for name, text in sorted(csvs.items()):
        df = pd.read_csv(io.StringIO(text))
        frames.append(df)
        ctx.write_table(Path(name).stem, df, configs=[cfg], results=[result], folder="benchmarks")
    table = frames[0]
    text = f"Exact-solver benchmark: {len(table)} rows over columns {', '.join(map(str, table.columns[:6]))}"
    return Caption(text, None, "solver benchmark")
