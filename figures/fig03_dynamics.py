"""Figure 3: training dynamics of the stochastic primal-dual fit (lam_t, mu_t, Z_t)."""

from __future__ import annotations

import pandas as pd

from figures.pipeline import Caption, Context, rows_frame
from figures.plotting import panels
from synthetic.experiments.dynamics import primal_dual_dynamics

#: Issue 5's acceptance: robust value within 0.02 nats, Z within 1% of one.
VALUE_TOL, Z_TOL = 0.02, 0.01

SETTINGS = {
    "quick": {"V": 5, "T": 4, "noise": 0.05, "contamination": 0.25, "order": 3, "m_expert": 2000, "m": 20000,
              "steps": 2000, "batch_size": 512, "lr": 0.05, "lam_lr": 0.1, "seeds": (0,)},
    "full": {"V": 6, "T": 5, "noise": 0.05, "contamination": 0.25, "order": 3, "m_expert": 20000, "m": 200000,
             "steps": 20000, "batch_size": 2048, "lr": 0.05, "lam_lr": 0.1, "seeds": (0, 1, 2)},
}
ADVERSARIES = ("kl", "nll")


def configs(profile: str) -> list[dict]:
    s = dict(SETTINGS[profile])
    seeds = s.pop("seeds")
    return [{**s, "adversary": adv, "seed": seed} for adv in ADVERSARIES for seed in seeds]


def run(ctx: Context) -> Caption:
    cfgs = configs(ctx.profile)
    results = ctx.sweep("dynamics", primal_dual_dynamics, cfgs)
    df = rows_frame(results)
    final = pd.DataFrame([r["final"] for r in results])
    ctx.write_table("dynamics", df, configs=cfgs, results=results)
    ctx.write_table("dynamics_final", final, configs=cfgs, results=results)

    fig, (ax_lam, ax_mu, ax_z) = panels(3)
    first_seed = df[df.seed == df.seed.min()]
    for i, (adv, d) in enumerate(first_seed.groupby("adversary", sort=False)):
        label = {"kl": "KL game (paper)", "nll": "raw NLL (Group DRO)"}[adv]
        ax_lam.plot(d.step, d.lam0, color=f"C{i}", lw=1, label=label)
        ax_mu.plot(d.step, d.mu, color=f"C{i}", lw=1, label=label)
        ax_z.plot(d.step, d.z, color=f"C{i}", lw=0.5, alpha=0.35)
        ax_z.plot(d.step, d.z_ema, color=f"C{i}", lw=1.2, label=f"{label}, smoothed")
    ax_lam.axhline(final.lam_star0.iloc[0], color="k", ls="--", label="exact lam*_A")
    ax_z.axhline(1.0, color="k", ls="--")
    for ax, name in ((ax_lam, "lam_t (domain A)"), (ax_mu, "mu_t"), (ax_z, "Z_t (minibatch and smoothed)")):
        ax.set_xlabel("step")
        ax.set_title(name)
    ax_lam.legend(fontsize=7)
    ctx.save_figure("dynamics", fig, configs=cfgs, results=results)

    kl_runs = final[final.adversary == "kl"]
    err = (kl_runs.value_fit_population - kl_runs.value_exact).abs().max()
    zerr = (kl_runs.z_population - 1).abs().max()
    lam_err = (kl_runs.lam_fit0 - kl_runs.lam_star0).abs().max()
    held = bool(err <= VALUE_TOL and zerr <= Z_TOL)
    nll = final[final.adversary == "nll"]
    sampling = (kl_runs.value_exact_from_samples - kl_runs.value_exact).abs().max()
    text = (f"Primal-dual (KL game, tabular gate, samples only): population robust KL off the exact value by "
            f"{err:.3f} nats (tolerance {VALUE_TOL}; an exact solver on the same samples is off by {sampling:.3f}), "
            f"|Z-1| = {zerr:.3f}, |lam_A - lam*_A| = {lam_err:.3f}; "
            f"the raw-NLL adversary ends at lam_A = {nll.lam_fit0.mean():.2f} vs lam*_A = "
            f"{nll.lam_star0.mean():.2f}")
    return Caption(text, held, "primal-dual reaches the exact robust gate")
