"""Figure 4: structural distillation, routed model vs robust gate vs larger monolithic model."""

from __future__ import annotations

import pandas as pd

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import panels
from synthetic.experiments.distillation import distillation

SETTINGS = {
    "quick": {"V": 5, "T": 4, "noise": 0.05, "order": 2, "m": 2000, "n_samples": 4000, "router_steps": 2000,
              "mono_width": 20, "mono_steps": 300, "points": 11, "seeds": (0,)},
    "full": {"V": 8, "T": 5, "noise": 0.05, "order": 2, "m": 20000, "n_samples": 50000, "router_steps": 5000,
             "mono_width": 20, "mono_steps": 3000, "points": 21, "seeds": tuple(range(3))},
}


def configs(profile: str) -> list[dict]:
    s = dict(SETTINGS[profile])
    seeds = s.pop("seeds")
    return [{**s, "seed": seed} for seed in seeds]


def run(ctx: Context) -> Caption:
    cfgs = configs(ctx.profile)
    results = ctx.sweep("distillation", distillation, cfgs)
    df = rows_frame(results)
    summary = pd.DataFrame([r["summary"] for r in results])
    ctx.write_table("distillation", df, configs=cfgs, results=results)
    ctx.write_table("distillation_routers", summary, configs=cfgs, results=results)

    fig, (ax, ax_bar) = panels(2, width=4.8, height=3.6)
    mean = df.groupby(["model", "lam0"]).test_kl.mean().reset_index()
    for model, d in mean.groupby("model"):
        style = {"robust gate": dict(color="k", lw=2.2)}.get(model, dict(lw=1))
        ax.plot(d.lam0, d.test_kl, label=model, **style)
    ax.set_xlabel("test mixture lambda_A")
    ax.set_ylabel("exact KL(D_lam || model) (nats)")
    ax.legend(fontsize=6)
    cols = [c for c in summary.columns if c.startswith("kl_gate_to_routed")]
    ax_bar.bar(range(len(cols)), summary[cols].mean(), yerr=summary[cols].std().fillna(0), capsize=3)
    ax_bar.set_xticks(range(len(cols)))
    ax_bar.set_xticklabels([c.split("(")[1].rstrip(")") for c in cols], fontsize=7)
    ax_bar.set_ylabel("KL(pi_g || routed model) (nats)")
    ctx.save_figure("distillation", fig, configs=cfgs, results=results)

    worst = df.groupby(["model", "seed"]).test_kl.max().groupby("model").mean()
    mono = [m for m in worst.index if m.startswith("monolithic")][0]
    learned = worst["routed (learned router)"]
    held = bool(learned < worst[mono])
    s = summary.mean(numeric_only=True)
    text = (f"Worst-case exact KL: robust gate {worst['robust gate']:.3f}, routed with the learned router "
            f"{learned:.3f}, with the Bayes router {worst['routed (Bayes router)']:.3f}, larger monolithic "
            f"{worst[mono]:.3f} nats; KL(pi_g || routed) learned {s['kl_gate_to_routed (learned router)']:.4f}, "
            f"Bayes {s['kl_gate_to_routed (Bayes router)']:.4f}, optimal {s['kl_gate_to_routed (optimal router)']:.4f}; "
            f"learned vs Bayes router: summed KL {s['router_kl_learned_vs_bayes']:.4f}, mean TV "
            f"{s['router_tv_learned_vs_bayes']:.3f}")
    return Caption(text, held, "routed model keeps the gate's advantage over the monolithic model")
