"""Figure 9: Gaussian-mixture domains, experts, robust gated model and monolithic fit."""

from __future__ import annotations

import pandas as pd

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import panels
from figures.settings import sweep_configs
from synthetic.experiments.gaussian_mixture import gaussian_mixture_robust

#: The primal-dual gate's population robust KL should match the exact grid value this closely (nats).
VALUE_TOL = 0.05

SETTINGS = {
    "quick": {"p": 3, "components": 3, "expert_components": 1, "spread": 3.0, "m_fit": 2000, "m": 20000,
              "m_entropy": 100000, "grid": (-8.0, 8.0, 400), "steps": 1500, "batch_size": 256, "lr": 0.01,
              "lr_schedule": "cosine", "lam_lr": 0.1, "seeds": (0,)},
    "full": {"p": 3, "components": 3, "expert_components": 1, "spread": 3.0, "m_fit": 20000, "m": 50000,
             "m_entropy": 1000000, "grid": (-10.0, 10.0, 4000), "steps": 20000, "batch_size": 1024, "lr": 0.01,
             "lr_schedule": "cosine", "lam_lr": 0.1, "seeds": (0, 1, 2)},
}
# With a constant learning rate the last minibatch iterate missed Z = 1 on its own samples by 3%;
# with m = 4,000 even the exact solver on the binned samples was 0.05 nats off in the population.


def configs(profile: str) -> list[dict]:
    return sweep_configs(SETTINGS, profile, fixed={"grid": list(SETTINGS[profile]["grid"])})


def run(ctx: Context) -> Caption:
    cfgs = configs(ctx.profile)
    results = ctx.sweep("gaussian_mixture", gaussian_mixture_robust, cfgs)
    df = rows_frame(results)
    ctx.write_table("gaussian_mixture", df, configs=cfgs, results=results)
    curves = pd.DataFrame(results[0]["curves"])
    ctx.write_table("gaussian_mixture_densities", curves, configs=cfgs[:1], results=results[:1])
    p = cfgs[0]["p"]

    fig, (ax, ax_bar) = panels(2, width=5.0, height=3.6)
    for k in range(p):
        ax.plot(curves.x, curves[f"domain_{k}"], color=f"C{k}", lw=1, label=f"domain {k}")
        ax.plot(curves.x, curves[f"expert_{k}"], color=f"C{k}", ls="--", lw=0.8)
    ax.plot([], [], color="k", ls="--", lw=0.8, label="expert k (dashed, domain k's colour)")
    ax.plot(curves.x, curves.robust_gate, "k", lw=1.8, label="robust gated model (exact)")
    ax.plot(curves.x, curves.monolithic, color="grey", ls=":", lw=1.5, label="monolithic fit")
    ax.set_xlabel("x")
    ax.set_ylabel("density (experts dashed)")
    ax.legend(fontsize=6)
    first = df[df.seed == df.seed.min()]
    width = 0.27
    ks = first.domain.to_numpy()
    ax_bar.bar(ks - width, first.robust_kl_exact_grid, width, label="robust gate, exact grid")
    ax_bar.bar(ks, first.robust_kl_primal_dual_population, width, label="robust gate, primal-dual (scored on grid)")
    ax_bar.bar(ks + width, first.monolithic_kl_grid, width, label="monolithic fit (grid)")
    ax_bar.set_xticks(ks)
    ax_bar.set_xlabel("domain k")
    ax_bar.set_ylabel(r"$\mathrm{KL}(D_k \,\|\, \mathrm{model})$ (nats)")
    ax_bar.legend(fontsize=6)
    ctx.save_figure("gaussian_mixture", fig, configs=cfgs, results=results)

    per_seed = df.groupby("seed").agg(exact=("robust_value_exact_grid", "first"),
                                      fit=("robust_value_primal_dual_population", "first"),
                                      fit_in_sample=("robust_value_primal_dual", "first"),
                                      from_samples=("robust_value_exact_from_samples", "first"),
                                      mono=("monolithic_kl_grid", "max"), z=("z_fit_population", "first"),
                                      z_own=("z_fit", "first"))
    diff = (per_seed.fit - per_seed.exact).abs().max()
    held = bool(diff <= VALUE_TOL and (per_seed.exact < per_seed.mono).all())
    text = (f"1-D Gaussian mixtures ({p} domains, 1-component experts): exact grid robust KL "
            f"{per_seed.exact.mean():.3f} nats vs the primal-dual gate (fitted on samples) scored on the grid "
            f"{per_seed.fit.mean():.3f} (max gap {diff:.3f}, Z = {per_seed.z.mean():.3f}; on its own samples "
            f"{per_seed.fit_in_sample.mean():.3f}, Z = {per_seed.z_own.mean():.3f}); the exact solver on the same "
            f"samples scores {per_seed.from_samples.mean():.3f}; monolithic fit's worst-case KL "
            f"{per_seed.mono.mean():.3f}")
    return Caption(text, held, "robust gate beats monolithic; primal-dual matches exact")
