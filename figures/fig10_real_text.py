"""Figure 10: real text, NLL per byte of experts, monolithic models and the robust gate (Tables 1-2)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import panels
from synthetic.experiments.real_text import text_nll

DOMAINS = ("docs", "code", "notes")
MIXTURES = ([1, 0, 0], [0, 1, 0], [0, 0, 1], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0], [0.2, 0.2, 0.6])
SETTINGS = {
    "quick": {"order": 3, "T": 32, "max_train_bytes": 300_000, "train_fraction": 0.7, "m_val": 1000, "m_test": 1000,
              "m_expert": 1000, "steps": 1500, "batch_size": 256, "lr": 0.05, "lam_lr": 0.1, "seeds": (0, 1, 2)},
    "full": {"order": 5, "T": 64, "max_train_bytes": 5_000_000, "train_fraction": 0.7, "m_val": 5000,
             "m_test": 5000, "m_expert": 5000, "steps": 10000, "batch_size": 512, "lr": 0.05, "lam_lr": 0.1,
             "seeds": tuple(range(5))},
}


def configs(profile: str) -> list[dict]:
    s = dict(SETTINGS[profile])
    seeds = s.pop("seeds")
    return [{**s, "domains": list(DOMAINS), "mixtures": [list(m) for m in MIXTURES], "seed": seed} for seed in seeds]


def run(ctx: Context) -> Caption:
    cfgs = configs(ctx.profile)
    results = ctx.sweep("real_text", text_nll, cfgs)
    df = rows_frame(results)
    ctx.write_table("real_text_runs", df, configs=cfgs, results=results)
    table = df.groupby(["model", "mixture"], sort=False).nll_per_byte.agg(["mean", "std"]).reset_index()
    ctx.write_table("real_text", table, configs=cfgs, results=results)
    gates = pd.DataFrame([{"seed": c["seed"], **{f"lam_{d}": l for d, l in zip(DOMAINS, r["lam"])}, "z": r["z"],
                           "z_estimator": r["z_estimator"]} for c, r in zip(cfgs, results)])
    ctx.write_table("real_text_gates", gates, configs=cfgs, results=results)

    mixtures = list(dict.fromkeys(table.mixture))
    models = list(dict.fromkeys(table.model))
    fig, (ax,) = panels(1, width=9.0, height=3.8)
    width = 0.8 / len(models)
    x = np.arange(len(mixtures))
    for i, model in enumerate(models):
        d = table[table.model == model].set_index("mixture").loc[mixtures]
        ax.bar(x + i * width, d["mean"], width, yerr=d["std"], label=model, capsize=2)
    ax.set_xticks(x + 0.4 - width / 2)
    ax.set_xticklabels([f"{m}\n({','.join(DOMAINS)})" if i == 0 else m for i, m in enumerate(mixtures)], fontsize=7)
    ax.set_ylabel("test NLL (nats per byte)")
    ax.set_ylim(bottom=0.9 * table["mean"].min())
    ax.legend(fontsize=6, ncol=4)
    ctx.save_figure("real_text", fig, configs=cfgs, results=results)

    worst = df.groupby(["model", "seed"]).nll_per_byte.max().groupby("model").agg(["mean", "std"])
    same = f"monolithic {cfgs[0]['order']}-gram"
    held = bool(worst.loc["robust gate", "mean"] < worst.loc[same, "mean"])
    best = worst["mean"].idxmin()
    text = (f"Real text ({', '.join(DOMAINS)}; {len(cfgs)} seeds): worst-case NLL over {len(mixtures)} test "
            f"mixtures {worst.loc['robust gate', 'mean']:.3f} +- {worst.loc['robust gate', 'std']:.3f} nats/byte "
            f"for the robust gate vs {worst.loc[same, 'mean']:.3f} for the same-order monolithic n-gram and "
            f"{worst.loc['uniform static gate', 'mean']:.3f} for the uniform static gate; lowest: {best} "
            f"({worst.loc[best, 'mean']:.3f})")
    excess = worst_excess(df)
    text += (f"; worst-case excess over the domain's own expert (the gate's training objective): robust gate "
             f"{excess['robust gate']:.3f}, uniform static gate {excess['uniform static gate']:.3f}, same-order "
             f"monolithic {excess[same]:.3f}")
    return Caption(text, held, "robust gate beats the same-size monolithic model on held-out mixtures")


def worst_excess(df: pd.DataFrame) -> pd.Series:
    """Per model: ``max_k NLL_k(model) - NLL_k(expert k)`` on the single-domain test sets, mean over seeds."""
    rows = []
    for k, domain in enumerate(DOMAINS):
        label = ";".join("1" if j == k else "0" for j in range(len(DOMAINS)))
        d = df[df.mixture == label]
        own = d[d.model == f"expert {domain}"].set_index("seed").nll_per_byte
        rows.append(d.assign(excess=d.nll_per_byte.to_numpy() - own.loc[d.seed].to_numpy()))
    ex = pd.concat(rows)
    return ex.groupby(["model", "seed"]).excess.max().groupby("model").mean()
