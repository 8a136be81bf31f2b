"""Figure 2: the lambda-sweep on the conflict task with domain A contaminated by B (25%, 50%)."""

from __future__ import annotations

import pandas as pd

from figures.fig01_lambda_sweep import configs, plot_sweep, size_note, sweep_caption
from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import legend, panel_grid
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
    fig, rows = panel_grid(len(RATES), 2, width=5.2, height=4.0)
    texts, held = [], True
    for (ax, ax_gap), rate in zip(rows, RATES):
        d = df[df.contamination == rate]
        plot_sweep(ax, ax_gap, d, f"A contaminated by B at {rate:.0%}")
        cfg = next(c for c in cfgs if c["contamination"] == rate)
        text, ok = sweep_caption(d, f"{rate:.0%} contamination", cfg)
        texts.append(text)
        held &= ok
    legend(rows[0][0], ncol=2, loc="upper center")
    legend(rows[0][1], fontsize=6)
    fig.tight_layout()
    ctx.save_figure("contaminated", fig, configs=cfgs, results=results)
    return Caption(f"{'; '.join(texts)}. {size_note(df, cfgs[0])}", held, "robust gate has the lowest worst-case KL")
