"""Figure 2: the lambda-sweep on the conflict task with domain A contaminated by B (25%, 50%)."""

from __future__ import annotations

import pandas as pd

from figures.fig01_lambda_sweep import configs, plot_sweep, sweep_caption
from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import panels
from synthetic.experiments.lambda_sweep import lambda_sweep

RATES = (0.25, 0.5)


def run(ctx: Context) -> Caption:
    cfgs = [c for rate in RATES for c in configs(ctx.profile, rate)]
    results = ctx.sweep("lambda_sweep", lambda_sweep, cfgs)
    df = rows_frame(results)
    ctx.write_table("contaminated", df, configs=cfgs, results=results)
    summary = pd.DataFrame([{"contamination": c["contamination"], "seed": c["seed"], **r["summary"]}
                            for c, r in zip(cfgs, results)])
    ctx.write_table("contaminated_solutions", summary, configs=cfgs, results=results)
    fig, axes = panels(len(RATES), width=5.0, height=4.0)
    texts, held = [], True
    for ax, rate in zip(axes, RATES):
        d = df[df.contamination == rate]
        plot_sweep(ax, d, f"A contaminated by B at {rate:.0%}")
        text, ok = sweep_caption(d, f"{rate:.0%} contamination")
        texts.append(text)
        held &= ok
    axes[0].legend(fontsize=7, ncol=2)
    ctx.save_figure("contaminated", fig, configs=cfgs, results=results)
    return Caption("; ".join(texts), held, "robust gate has the lowest worst-case KL")
