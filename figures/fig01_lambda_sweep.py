"""Figure 1: the lambda-sweep on the conflict task (robust gate against the baselines)."""

from __future__ import annotations

import pandas as pd

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import panels
from synthetic.experiments.lambda_sweep import ORACLE, ROBUST, STATIC, lambda_sweep

SETTINGS = {
    "quick": {"V": 5, "T": 4, "noise": 0.05, "m": 2000, "steps": 300, "expert_width": 8, "mono_width": 16,
              "large_width": 20, "points": 9, "oracle_points": 5, "seeds": (0,)},
    "full": {"V": 8, "T": 5, "noise": 0.05, "m": 20000, "steps": 3000, "expert_width": 8, "mono_width": 16,
             "large_width": 20, "points": 21, "oracle_points": 11, "seeds": tuple(range(5))},
}


def configs(profile: str, contamination: float) -> list[dict]:
    s = dict(SETTINGS[profile])
    seeds = s.pop("seeds")
    return [{**s, "contamination": contamination, "seed": seed} for seed in seeds]


def worst_case(df: pd.DataFrame) -> pd.Series:
    """Per model: the worst test KL over the mixtures, averaged over seeds (Oracle: over its points)."""
    return df.groupby(["model", "seed"]).test_kl.max().groupby("model").mean().sort_values()


def plot_sweep(ax, df: pd.DataFrame, title: str) -> None:
    shown = df[~df.model.str.endswith("alone")]
    mean = shown.groupby(["model", "lam0"]).test_kl.mean().reset_index()
    for i, (model, d) in enumerate(mean.groupby("model", sort=False)):
        if model == ORACLE:
            ax.plot(d.lam0, d.test_kl, "k*", ms=8, label=model)
        else:
            style = {ROBUST: dict(color="k", lw=2.2), STATIC: dict(color="k", ls="--", lw=1.2)}.get(
                model, dict(color=f"C{i % 10}", lw=1, alpha=0.8))
            ax.plot(d.lam0, d.test_kl, label=model, **style)
    ax.set_xlabel("test mixture lambda_A")
    ax.set_ylabel("exact KL(D_lam || model) (nats)")
    ax.set_title(title)


def sweep_caption(df: pd.DataFrame, task: str) -> tuple[str, bool]:
    worst = worst_case(df)
    baselines = worst.drop([ROBUST, ORACLE], errors="ignore")
    best = baselines.idxmin()
    held = bool(worst[ROBUST] <= baselines.min())
    text = (f"{task}: worst-case exact KL of the robust gate {worst[ROBUST]:.3f} nats vs the best other "
            f"non-Oracle model ({best}) {baselines.min():.3f} and the same-size monolithic "
            f"{worst[[m for m in worst.index if m.startswith('monolithic')]].min():.3f}; the Oracle (one model "
            f"per test mixture) reaches {worst.get(ORACLE, float('nan')):.3f}")
    return text, held


def run(ctx: Context) -> Caption:
    cfgs = configs(ctx.profile, 0.0)
    results = ctx.sweep("lambda_sweep", lambda_sweep, cfgs)
    df = rows_frame(results)
    ctx.write_table("lambda_sweep", df, configs=cfgs, results=results)
    summary = pd.DataFrame([{"seed": c["seed"], **r["summary"]} for c, r in zip(cfgs, results)])
    ctx.write_table("lambda_sweep_solutions", summary, configs=cfgs, results=results)
    fig, (ax,) = panels(1, width=6.0, height=4.0)
    plot_sweep(ax, df, "conflict task")
    ax.legend(fontsize=7, ncol=2)
    ctx.save_figure("lambda_sweep", fig, configs=cfgs, results=results)
    text, held = sweep_caption(df, "Conflict task")
    return Caption(text, held, "robust gate has the lowest worst-case KL")
