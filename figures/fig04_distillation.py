"""Figure 4: structural distillation, routed model vs robust gate vs larger monolithic model."""

from __future__ import annotations

import pandas as pd

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import LAMBDA_A, TEST_KL, error_bar_note, legend, model_styles, panels
from figures.settings import sweep_configs
from synthetic.experiments.distillation import distillation
from synthetic.experiments.labels import BAYES_ROUTER, LEARNED_ROUTER, OPTIMAL_ROUTER, ROBUST, ROUTERS
from synthetic.experiments.labels import kl_gate_to_routed, monolithic, routed

SETTINGS = {
    "quick": {"V": 5, "T": 4, "noise": 0.05, "order": 2, "m": 2000, "n_samples": 4000, "router_steps": 2000,
              "mono_width": 20, "mono_steps": 300, "points": 11, "seeds": (0,)},
    "full": {"V": 8, "T": 5, "noise": 0.05, "order": 2, "m": 20000, "n_samples": 50000, "router_steps": 5000,
             "mono_width": 20, "mono_steps": 3000, "points": 21, "seeds": tuple(range(3))},
}


#: Differences below this (nats) are drawn on a linear scale in the middle panel: the routed
#: models sit 1e-3 to 1e-2 nats from the gate, the monolithic model 1e-1.
GAP_LINTHRESH = 1e-3


def configs(profile: str) -> list[dict]:
    return sweep_configs(SETTINGS, profile)


def run(ctx: Context) -> Caption:
    cfgs = configs(ctx.profile)
    results = ctx.sweep("distillation", distillation, cfgs)
    df = rows_frame(results)
    summary = pd.DataFrame([r["summary"] for r in results])
    ctx.write_table("distillation", df, configs=cfgs, results=results)
    ctx.write_table("distillation_routers", summary, configs=cfgs, results=results)

    fig, (ax, ax_gap, ax_bar) = panels(3, width=4.2, height=3.6)
    mean = df.groupby(["model", "lam0"]).test_kl.mean().reset_index()
    mono = monolithic(cfgs[0]["mono_width"])
    order = [ROBUST, *(routed(r) for r in ROUTERS), mono]
    styles = model_styles(order)
    robust = mean[mean.model == ROBUST].set_index("lam0").test_kl
    for model in order:
        d = mean[mean.model == model]
        ax.plot(d.lam0, d.test_kl, label=model, **styles[model])
        if model != ROBUST:
            ax_gap.plot(d.lam0, d.test_kl.to_numpy() - robust.loc[d.lam0].to_numpy(), label=model, **styles[model])
    ax_gap.axhline(0.0, **styles[ROBUST], label=f"{ROBUST} (zero line)")
    ax.set_xlabel(LAMBDA_A)
    ax.set_ylabel(TEST_KL)
    ax.set_title("test KL over the test mixtures")
    legend(ax, fontsize=6, loc="upper center")
    ax_gap.set_yscale("symlog", linthresh=GAP_LINTHRESH)
    ax_gap.set_xlabel(LAMBDA_A)
    ax_gap.set_ylabel(r"$\mathrm{KL}(\mathrm{model}) - \mathrm{KL}(\mathrm{robust\ gate})$ (nats)")
    ax_gap.set_title("excess over the robust gate (symlog)")
    legend(ax_gap, fontsize=6)
    cols = [kl_gate_to_routed(r) for r in ROUTERS]
    n_seeds = len(summary)
    ax_bar.bar(range(len(cols)), summary[cols].mean(), yerr=summary[cols].std() if n_seeds > 1 else None,
               capsize=3, color=[styles[routed(r)]["color"] for r in ROUTERS])
    ax_bar.set_xticks(range(len(cols)))
    ax_bar.set_xticklabels(ROUTERS, fontsize=7)
    ax_bar.set_ylabel(r"$\mathrm{KL}(\pi_g \,\|\, \mathrm{routed\ model})$ (nats)")
    ax_bar.set_title("distillation error of each router")
    fig.tight_layout()
    ctx.save_figure("distillation", fig, configs=cfgs, results=results)

    worst = df.groupby(["model", "seed"]).test_kl.max().groupby("model").mean()
    learned = worst[routed(LEARNED_ROUTER)]
    held = bool(learned < worst[mono])
    s = summary.mean(numeric_only=True)
    gaps = {r: float((mean[mean.model == routed(r)].set_index("lam0").test_kl - robust).abs().max()) for r in ROUTERS}
    text = (f"Worst-case exact KL: robust gate {worst[ROBUST]:.3f}, routed with the learned router "
            f"{learned:.3f}, with the Bayes router {worst[routed(BAYES_ROUTER)]:.3f}, with the optimal router "
            f"{worst[routed(OPTIMAL_ROUTER)]:.3f}, larger monolithic ({mono}) {worst[mono]:.3f} nats; the routed "
            f"models stay within {gaps[BAYES_ROUTER]:.4f} (Bayes), {gaps[OPTIMAL_ROUTER]:.4f} (optimal) and "
            f"{gaps[LEARNED_ROUTER]:.4f} (learned) nats of the robust gate's test KL at every mixture, hence the "
            f"coinciding curves on the left (middle panel: the differences); "
            f"KL(pi_g || routed) learned {s[kl_gate_to_routed(LEARNED_ROUTER)]:.4f}, "
            f"Bayes {s[kl_gate_to_routed(BAYES_ROUTER)]:.4f}, optimal {s[kl_gate_to_routed(OPTIMAL_ROUTER)]:.4f} "
            f"({error_bar_note(n_seeds)}); learned vs Bayes router: summed KL {s['router_kl_learned_vs_bayes']:.4f}, "
            f"mean TV {s['router_tv_learned_vs_bayes']:.3f}")
    return Caption(text, held, "routed model keeps the gate's advantage over the monolithic model")
